"""svc-mailbox's async side (``services.mailbox.box``): long polls, group commit, quotas."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ipc import oap
from ipc.proto import mailbox as proto
from services.mailbox.box import Job, Mailboxes, apply_batch
from services.mailbox.store import Effects, MailDb, Policy


def open_db(tmp_path: Path, **policy: object) -> MailDb:
    db = MailDb(tmp_path / "mb", Policy(**policy))  # type: ignore[arg-type]
    db.open()
    return db


async def test_a_long_poll_is_woken_by_the_send_not_by_its_deadline(tmp_path: Path) -> None:
    box = Mailboxes(open_db(tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(box.run)

        async def later() -> None:
            await trio.sleep(0.05)
            await box.send("q", False, [proto.Outgoing(b"hi")])

        nursery.start_soon(later)
        start = trio.current_time()
        got = await box.receive("q", 1, None, 20.0)
        assert [m.body for m in got.messages] == [b"hi"]
        assert trio.current_time() - start < 10  # woken, not timed out (the wait was 20 s)
        nursery.cancel_scope.cancel()


async def test_a_long_poll_is_woken_when_a_hidden_message_becomes_visible(
    tmp_path: Path,
) -> None:
    box = Mailboxes(open_db(tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(box.run)
        await box.send("q", False, [proto.Outgoing(b"hi")])
        (first,) = (await box.receive("q", 1, 0.2, 0.0)).messages
        start = trio.current_time()
        (again,) = (await box.receive("q", 1, None, 20.0)).messages
        assert again.msg_id == first.msg_id and again.deliveries == 2
        assert trio.current_time() - start < 10
        nursery.cancel_scope.cancel()


async def test_long_polls_that_time_out_leave_nothing_behind(tmp_path: Path) -> None:
    box = Mailboxes(open_db(tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(box.run)
        async with trio.open_nursery() as polls:
            for n in range(50):
                polls.start_soon(box.receive, f"empty{n}", 1, None, 0.05)
        assert box._waiting == {}  # bounded: one entry per mailbox being waited on, no more
        nursery.cancel_scope.cancel()


def test_a_refused_operation_undoes_only_itself_in_its_batch(tmp_path: Path) -> None:
    db = open_db(tmp_path, mailbox_max_messages=3)
    jobs = [
        Job(lambda fx, now: db.send(fx, "q", False, [proto.Outgoing(b"a")], now)),
        Job(lambda fx, now: db.send(fx, "q", False, [proto.Outgoing(b"x")] * 3, now)),  # over
        Job(lambda fx, now: db.send(fx, "q", False, [proto.Outgoing(b"b")], now)),
    ]
    apply_batch(db, jobs, Effects(), lambda: 1000.0)
    assert jobs[0].error is None and jobs[2].error is None
    assert isinstance(jobs[1].error, oap.OapError)
    assert jobs[1].error.reason == "insufficient_storage" and jobs[1].error.code == 507
    assert db.usage["q"][:2] == [2, 2]
    db.close()
    reopened = open_db(tmp_path, mailbox_max_messages=3)  # what was committed, and only that
    assert reopened.usage["q"][:2] == [2, 2]
    reopened.close()


def test_a_failed_transaction_moves_the_usage_back(tmp_path: Path) -> None:
    db = open_db(tmp_path)

    def broken(fx: Effects, now: float) -> None:
        raise RuntimeError("the disk went away")

    jobs = [
        Job(lambda fx, now: db.send(fx, "q", False, [proto.Outgoing(b"abc")], now)),
        Job(broken),
    ]
    with pytest.raises(RuntimeError):
        apply_batch(db, jobs, Effects(), lambda: 1000.0)
    assert db.usage == {} and db.total == [0, 0]
    assert db.w.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    db.close()
