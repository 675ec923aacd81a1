"""Mailbox semantics as properties (hypothesis): any order of sends (with and without
Idempotency-Keys), receives, acks (current and stale receipts), nacks, visibility timeouts,
time passing the dedup window, and restarts (the database closed and opened again) keeps:

- a key within the dedup window stores one message and answers its first id;
- each created message is delivered in FIFO order among the visible ones, counts its
  deliveries, and goes to the dead-letter queue after ``max_deliver`` of them;
- only a delivery's current receipt acks it; an acked message never comes back;
- nothing committed is lost by a restart, and the usage the quotas use matches the tables.

The model below is the semantics of DESIGN.md §5 written plainly; the tables must agree with it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ipc.proto import mailbox as proto
from services.mailbox.box import Job, apply_batch
from services.mailbox.store import Effects, MailDb, Policy

POLICY = Policy(visibility=10.0, max_deliver=3, dedup_window=100.0, retention=1e9)
BOX = "q"


@attrs.define
class Msg:
    msg_id: str
    body: bytes
    seq: int
    deliveries: int = 0
    visible_at: float = 0.0
    receipt: str | None = None
    dead: bool = False


class MailboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mbprop-"))
        self.db = MailDb(self.dir, POLICY)
        self.db.open()
        self.now = 1000.0
        self.seq = 0
        self.msgs: dict[str, Msg] = {}  # not acked
        self.acked: set[str] = set()
        self.keys: dict[str, tuple[str, float]] = {}  # key -> (msg_id, until)
        self.issued: list[str] = []  # every receipt ever handed out

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, fn: Any) -> Any:
        job = Job(fn)
        apply_batch(self.db, [job], Effects(), lambda: self.now)
        if job.error is not None:
            raise job.error
        return job.result

    @rule(key=st.none() | st.sampled_from(["a", "b", "c"]), body=st.binary(min_size=1, max_size=8))
    def send(self, key: str | None, body: bytes) -> None:
        sent = self._run(
            lambda fx, now: self.db.send(fx, BOX, False, [proto.Outgoing(body, key=key)], now)
        )
        (one,) = sent.results
        known = self.keys.get(key) if key is not None else None
        if known is not None and known[1] > self.now:
            assert not one.created and one.msg_id == known[0]
            return
        assert one.created and one.msg_id not in self.msgs and one.msg_id not in self.acked
        self.seq += 1
        self.msgs[one.msg_id] = Msg(one.msg_id, body, self.seq, visible_at=self.now)
        if key is not None:
            self.keys[key] = (one.msg_id, self.now + POLICY.dedup_window)

    @rule(limit=st.integers(1, 4), visibility=st.none() | st.sampled_from([0.0, 5.0, 50.0]))
    def receive(self, limit: int, visibility: float | None) -> None:
        got, _next = self._run(lambda fx, now: self.db.receive(fx, BOX, limit, visibility, now))
        expected: list[Msg] = []
        for m in sorted(self.msgs.values(), key=lambda m: m.seq):
            if len(expected) == limit:
                break
            if m.dead or m.visible_at > self.now:
                continue
            if m.deliveries >= POLICY.max_deliver:
                m.dead, m.receipt = True, None
                continue
            expected.append(m)
        assert [d.msg_id for d in got] == [m.msg_id for m in expected]
        hide = POLICY.visibility if visibility is None else visibility
        for d, m in zip(got, expected, strict=True):
            m.deliveries += 1
            assert d.deliveries == m.deliveries and d.body == m.body
            m.receipt, m.visible_at = d.receipt, self.now + hide
            self.issued.append(d.receipt)

    @precondition(lambda self: bool(self.issued))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        receipt = data.draw(st.sampled_from(self.issued))
        changed = self._run(lambda fx, _now: self.db.ack(fx, BOX, [receipt]))
        owner = next((m for m in self.msgs.values() if m.receipt == receipt), None)
        if owner is None:
            assert changed.count == 0 and changed.stale == (receipt,)
            return
        assert changed.count == 1 and changed.stale == ()
        del self.msgs[owner.msg_id]
        self.acked.add(owner.msg_id)

    @precondition(lambda self: bool(self.issued))
    @rule(data=st.data())
    def nack(self, data: st.DataObject) -> None:
        receipt = data.draw(st.sampled_from(self.issued))
        changed = self._run(lambda fx, now: self.db.nack(fx, BOX, [receipt], 0.0, now))
        owner = next((m for m in self.msgs.values() if m.receipt == receipt), None)
        assert changed.count == (0 if owner is None else 1)
        if owner is not None:
            owner.receipt, owner.visible_at = None, self.now

    @rule(seconds=st.sampled_from([1.0, 6.0, 11.0, 60.0, 120.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def restart(self) -> None:
        self.db.close()
        self.db = MailDb(self.dir, POLICY)
        self.db.open()

    @invariant()
    def tables_match_the_model(self) -> None:
        rows = self.db.w.execute(
            "SELECT msg_id, deliveries, dead FROM messages WHERE mailbox = ?", (BOX,)
        ).fetchall()
        stored = {msg_id: (deliveries, bool(dead)) for msg_id, deliveries, dead in rows}
        assert stored == {m.msg_id: (m.deliveries, m.dead) for m in self.msgs.values()}
        assert not (set(stored) & self.acked)
        count, size, dead = self.db.usage.get(BOX, (0, 0, 0))
        assert count == len(self.msgs) and size == sum(len(m.body) for m in self.msgs.values())
        assert dead == sum(m.dead for m in self.msgs.values())


MailboxMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
test_mailbox_semantics = MailboxMachine.TestCase
