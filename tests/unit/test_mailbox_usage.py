"""svc-mailbox opens in O(mailboxes), not O(messages) (issue 29): usage is written to its own
table in the transaction of each change, read back at open, and always equals what the rows
say; a database from before that table has it counted once."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ipc.proto import mailbox as proto
from services.mailbox import store
from services.mailbox.box import Job, apply_batch
from services.mailbox.store import OUTBOX_KEY, Effects, MailDb, Policy

REMOTE = "inbox@node:" + "ab" * 32
POLICY = Policy(retention=100.0, dedup_window=10.0, max_deliver=1)


def run(db: MailDb, fn: Any, now: float) -> Any:
    job = Job(fn)
    apply_batch(db, [job], Effects(), lambda: now)
    assert job.error is None, job.error
    return job.result


def counted_from_rows(db: MailDb) -> dict[str, list[int]]:
    by_mailbox, outbox = store._USAGE_FROM_ROWS
    rows = db.r.execute(by_mailbox).fetchall() + db.r.execute(outbox, (OUTBOX_KEY,)).fetchall()
    return {key: [m, b, d] for key, m, b, d in rows if m}


def busy_db(path: Path) -> MailDb:
    """Sends to several mailboxes and the outbox, deliveries, a dead letter, acks, a purge."""
    db = MailDb(path, POLICY)
    db.open()
    for n in range(5):
        body = [proto.Outgoing(b"x" * (n + 1))] * (n + 1)
        run(db, lambda fx, now, n=n, body=body: db.send(fx, f"q{n}", False, body, now), 1000.0)
    run(db, lambda fx, now: db.send(fx, REMOTE, True, [proto.Outgoing(b"far")], now), 1000.0)
    got = run(db, lambda fx, now: db.receive(fx, "q3", 2, 0.0, now), 1001.0)
    run(db, lambda fx, now: db.ack(fx, "q3", [m.receipt for m in got[0][:1]]), 1001.5)
    run(db, lambda fx, now: db.receive(fx, "q4", 1, 0.0, now), 1002.0)
    run(db, lambda fx, now: db.receive(fx, "q4", 1, 0.0, now), 1003.0)  # max_deliver 1: dead
    run(db, lambda fx, now: db.send(fx, "late", False, [proto.Outgoing(b"new")], now), 1090.0)
    assert run(db, db.purge, 1101.0) > 0  # past the retention of the first ones
    return db


def test_usage_is_read_from_its_table_and_matches_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = busy_db(tmp_path / "mb")
    usage, total = {k: list(v) for k, v in db.usage.items()}, list(db.total)
    assert usage == counted_from_rows(db)
    db.close()

    # opening must not aggregate the rows any more: make that query fail if it ran
    monkeypatch.setattr(store, "_USAGE_FROM_ROWS", ("SELECT no_such_column", "SELECT ?"))
    reopened = MailDb(tmp_path / "mb", POLICY)
    reopened.open()
    assert reopened.usage == usage and reopened.total == total
    monkeypatch.undo()
    assert reopened.usage == counted_from_rows(reopened)
    reopened.close()


def test_a_database_from_before_the_usage_table_is_counted_once(tmp_path: Path) -> None:
    db = busy_db(tmp_path / "mb")
    usage = {k: list(v) for k, v in db.usage.items()}
    db.close()
    with sqlite3.connect(tmp_path / "mb" / store.DB_NAME) as conn:
        conn.execute("DROP TABLE usage")
    reopened = MailDb(tmp_path / "mb", POLICY)
    reopened.open()
    assert reopened.usage == usage
    rows = reopened.r.execute("SELECT count(*) FROM usage").fetchone()[0]
    assert rows == len(usage)
    reopened.close()
