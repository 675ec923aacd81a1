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


def test_retention_ends_messages_dead_letters_outbox_entries_and_keys(tmp_path: Path) -> None:
    db = open_db(tmp_path, retention=100.0, dedup_window=10.0, max_deliver=1)
    remote = "inbox@node:" + "ab" * 32

    def run(fn: object, now: float) -> object:
        job = Job(fn)  # type: ignore[arg-type]
        apply_batch(db, [job], Effects(), lambda: now)
        assert job.error is None, job.error
        return job.result

    run(lambda fx, now: db.send(fx, "q", False, [proto.Outgoing(b"old", key="k")], now), 1000.0)
    run(lambda fx, now: db.send(fx, remote, True, [proto.Outgoing(b"far")], now), 1000.0)
    run(lambda fx, now: db.receive(fx, "q", 1, 0.0, now), 1001.0)
    run(lambda fx, now: db.receive(fx, "q", 1, 0.0, now), 1002.0)  # max_deliver 1: now dead
    assert db.usage["q"][2] == 1 and db.outbox_depth() == 1
    run(lambda fx, now: db.send(fx, "q", False, [proto.Outgoing(b"new")], now), 1090.0)
    # the key ended with its window: the same key stores a new message
    again = run(
        lambda fx, now: db.send(fx, "q", False, [proto.Outgoing(b"k2", key="k")], now), 1095.0
    )
    assert again.results[0].created  # type: ignore[attr-defined]
    gone = run(db.purge, 1101.0)  # past the retention of the first two, not of the others
    assert gone == 2
    assert db.usage["q"][:3] == [2, 5, 0] and db.outbox_depth() == 0
    (sent_id,) = [r[0] for r in db.w.execute("SELECT msg_id FROM sent").fetchall()]
    assert db.receipt(sent_id).state == "expired"
    db.close()


async def test_forwarded_ids_are_scoped_to_their_origin_and_never_pre_empted(
    tmp_path: Path,
) -> None:
    """A forwarded message's id is deduplicated per origin node and mailbox: another sender's
    message under the same id (in this mailbox or another) neither swallows it nor gets the
    whole batch refused; the same origin's repeat is a duplicate, as before."""
    from services.mailbox.checks import check_send

    box = Mailboxes(open_db(tmp_path))
    x = "0" * 31 + "1"
    async with trio.open_nursery() as nursery:
        await nursery.start(box.run)
        forged = await box.send("inbox", False, [proto.Outgoing(b"FORGED", msg_id=x)], "node:m")
        elsewhere = await box.send("other", False, [proto.Outgoing(b"o", msg_id=x)], "node:m")
        real = await box.send("inbox", False, [proto.Outgoing(b"real", msg_id=x)], "node:a")
        again = await box.send("inbox", False, [proto.Outgoing(b"real", msg_id=x)], "node:a")
        assert forged.results[0].created and elsewhere.results[0].created
        assert real.results[0].created and real.results[0].msg_id != x  # x was taken: fresh
        assert again.results[0] == proto.SentOne(msg_id=real.results[0].msg_id, created=False)
        got = await box.receive("inbox", 10, None, 0.0)
        assert sorted(m.body for m in got.messages) == [b"FORGED", b"real"]
        nursery.cancel_scope.cancel()
    with pytest.raises(oap.OapError, match="forwarding node") as err:
        check_send("inbox", [proto.Outgoing(b"b", msg_id=x)], "node:me")  # no origin: a client
    assert err.value.code == 422


def test_one_owner_cannot_fill_the_node_with_mailboxes(tmp_path: Path) -> None:
    """One token made 10,000 mailboxes in 20 s; now its share is bounded, and so is the total."""
    db = open_db(tmp_path, max_mailboxes=5, mailboxes_per_owner=3)

    def send(box: str, owner: str) -> None:
        job = Job(lambda fx, now: db.send(fx, box, False, [proto.Outgoing(b"m")], now, None, owner))
        apply_batch(db, [job], Effects(), lambda: 1000.0)
        if job.error is not None:
            raise job.error

    for n in range(3):
        send(f"a{n}", "token:aa")
    with pytest.raises(oap.OapError, match="made 3 mailboxes") as err:
        send("a3", "token:aa")
    assert err.value.code == 507
    send("a0", "token:aa")  # an existing one takes more
    send("b0", "tenant:7")
    send("b1", "tenant:7")
    with pytest.raises(oap.OapError, match="5 mailboxes"):
        send("c0", "token:cc")
    assert len(db.usage) == 5


async def test_a_receipt_naming_a_huge_sequence_is_stale_not_a_crash(tmp_path: Path) -> None:
    """A receipt is the client's string: one whose sequence part does not fit SQLite's
    integers (schemathesis sent "999...9") crashed svc-mailbox with OverflowError; it is
    simply stale, and the real receipt beside it still acks."""
    box = Mailboxes(open_db(tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(box.run)
        await box.send("q", False, [proto.Outgoing(b"hi")])
        (got,) = (await box.receive("q", 1, None, 0.0)).messages
        huge = ["9" * 30, "f" * 17 + ".1.00", "-1.1.00", got.receipt]
        changed = await box.ack("q", huge)
        assert changed.count == 1 and changed.stale == tuple(huge[:3])
        nursery.cancel_scope.cancel()
