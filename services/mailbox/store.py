"""svc-mailbox's tables and the operations on them (synchronous: only worker threads call them).

One SQLite database in WAL mode with ``synchronous=FULL``; the committer thread owns the write
connection and runs a batch of operations in one transaction (``services.mailbox.box``). An
operation is refused (``OapError``: a quota, a taken message id) only before it writes anything,
so a refused one changes nothing and the others of its batch go on; sends wait in a
write-behind buffer and the whole batch's are written with one statement per table.

Tables: ``messages`` (the mailboxes: FIFO by ``seq``; ``receipt`` names the current delivery,
``dead`` marks the dead-letter queue) with their ``bodies`` apart (a delivery rewrites only the
small row), ``dedup`` (Idempotency-Keys until the dedup window ends,
forwarded message ids until the retention ends), ``outbox`` (messages for mailboxes on other
nodes, until one accepts them) and ``sent`` (what the outbox delivered: the sender's receipts).

Each operation is a few statements for its whole batch, never a few per message: every SQLite
statement step releases and retakes the GIL, and under load the event loop holds it in between
(``bench/mailbox.py``: per-row statements made a commit of 1,000 messages take ~60 ms).

Usage (messages and bytes per mailbox and in all) is kept in memory, loaded at open and moved by
every operation as it runs; an operation or transaction that is rolled back moves it back
(``Effects.undo``), so the quotas always match what is committed plus what is pending. The
moves of a transaction are written to the ``usage`` table in that transaction, so opening the
database reads one row per mailbox, whatever the messages it holds.
"""

from __future__ import annotations

import collections
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from ipc import oap
from ipc.proto import mailbox as proto

__all__ = ["DB_NAME", "OUTBOX_KEY", "Effects", "MailDb", "Policy", "new_msg_ids"]

DB_NAME = "mail.sqlite3"
OUTBOX_KEY = "\x00outbox"  # the usage key of the outbox (no mailbox name holds a NUL)

# usage per mailbox (and the outbox), moved in the transaction of every change: opening the
# database reads this small table instead of aggregating every message
_USAGE_TABLE = (
    "CREATE TABLE IF NOT EXISTS usage ("
    " key TEXT PRIMARY KEY, messages INTEGER NOT NULL, bytes INTEGER NOT NULL,"
    " dead INTEGER NOT NULL) WITHOUT ROWID"
)
_USAGE_FROM_ROWS = (  # what the usage table says, counted from the rows (a database without one)
    "SELECT mailbox, count(*), sum(size), sum(dead) FROM messages GROUP BY mailbox",
    "SELECT ?, count(*), coalesce(sum(length(body)), 0), 0 FROM outbox",
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages ("
    " seq INTEGER PRIMARY KEY, mailbox TEXT NOT NULL, msg_id TEXT NOT NULL UNIQUE,"
    " size INTEGER NOT NULL, sent_at REAL NOT NULL, visible_at REAL NOT NULL,"
    " deliveries INTEGER NOT NULL DEFAULT 0, receipt TEXT, dead INTEGER NOT NULL DEFAULT 0)",
    # the bodies apart: a delivery rewrites a small row, not the 1 KiB page share of a body
    "CREATE TABLE IF NOT EXISTS bodies (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS messages_fifo ON messages (mailbox, dead, seq)",
    "CREATE INDEX IF NOT EXISTS messages_age ON messages (sent_at)",
    "CREATE TABLE IF NOT EXISTS dedup ("
    " mailbox TEXT NOT NULL, kind INTEGER NOT NULL, key TEXT NOT NULL, msg_id TEXT NOT NULL,"
    " until REAL NOT NULL, PRIMARY KEY (mailbox, kind, key)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS dedup_until ON dedup (until)",
    "CREATE TABLE IF NOT EXISTS outbox ("
    " seq INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE, dest TEXT NOT NULL,"
    " body BLOB NOT NULL, sent_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_try REAL NOT NULL, last_error TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS sent ("
    " msg_id TEXT PRIMARY KEY, dest TEXT NOT NULL, state TEXT NOT NULL, at REAL NOT NULL)"
    " WITHOUT ROWID",
    _USAGE_TABLE,
)
_KEY, _MSG_ID = 0, 1  # dedup kinds
WAL_PAGES = 4096  # pages of WAL between checkpoints
_ROWS = 200  # rows per multi-row statement (its parameters stay far under SQLite's bound)


def _scoped(msg: proto.Outgoing, origin: str | None) -> proto.Outgoing:
    """``msg`` as the dedup table sees it: a forwarded id is prefixed with its origin node."""
    if msg.msg_id is None or origin is None:
        return msg
    return attrs.evolve(msg, msg_id=f"{origin}/{msg.msg_id}")


def new_msg_ids(now: float, n: int) -> list[str]:
    """``n`` ids of 32 hex digits: milliseconds first (ids of one node sort by time: cheap
    index inserts), then 80 random bits (one read of the system's randomness for all)."""
    head = f"{int(now * 1000) & (1 << 48) - 1:012x}"
    rand = secrets.token_hex(10 * n)
    return [head + rand[20 * i : 20 * i + 20] for i in range(n)]


def _receipts(n: int) -> list[str]:
    """``n`` random receipt tails (64 bits each); a receipt is ``<seq hex>.<delivery>.<tail>``."""
    rand = secrets.token_hex(8 * n)
    return [rand[16 * i : 16 * i + 16] for i in range(n)]


_SEQ_MAX = (1 << 63) - 1  # SQLite's largest INTEGER


def _seqs(receipts: Sequence[str]) -> list[int]:
    """The message sequence each receipt names; a receipt that cannot be one of ours (not
    hex, negative, past SQLite's integers) names none: it is stale, never an error."""
    out = []
    for receipt in receipts:
        head = receipt.partition(".")[0]
        try:
            seq = int(head, 16)
        except ValueError:
            continue
        if 0 <= seq <= _SEQ_MAX:
            out.append(seq)
    return out


def _marks(n: int) -> str:
    return ",".join("?" * n)


@attrs.frozen
class Policy:
    """The service's settings that the tables enforce (``services.mailbox.settings``)."""

    visibility: float = 30.0
    max_deliver: int = 5
    dedup_window: float = 300.0
    retention: float = 4 * 86400.0
    max_messages: int = 1_000_000  # in all (mailboxes, dead letters and the outbox)
    max_bytes: int = 1 << 30
    mailbox_max_messages: int = 100_000
    mailbox_max_bytes: int = 256 << 20
    max_mailboxes: int = 10_000  # mailboxes holding messages at once (the outbox aside)
    mailboxes_per_owner: int = 1_000  # ... created by one owner (a token, or its tenant)


@attrs.define
class Effects:
    """What operations did, for the metrics and wake-ups once their transaction committed."""

    sent: int = 0
    delivered: int = 0
    acked: int = 0
    timeouts: int = 0
    dead: int = 0
    outbox: bool = False  # the outbox got new entries
    wake: set[str] = attrs.field(factory=set)  # mailboxes with newly visible messages
    usage: dict[str, list[int]] = attrs.field(factory=dict)  # key -> [messages, bytes, dead]

    def move(self, key: str, messages: int, size: int, dead: int = 0) -> None:
        entry = self.usage.setdefault(key, [0, 0, 0])
        entry[0] += messages
        entry[1] += size
        entry[2] += dead

    def merge(self, other: Effects) -> None:
        self.sent += other.sent
        self.delivered += other.delivered
        self.acked += other.acked
        self.timeouts += other.timeouts
        self.dead += other.dead
        self.outbox |= other.outbox
        self.wake |= other.wake
        for key, (m, b, d) in other.usage.items():
            self.move(key, m, b, d)


@attrs.define
class _Pending:
    """One transaction's sends not written yet (``MailDb._flush``)."""

    messages: list[tuple[object, ...]] = attrs.field(factory=list)
    bodies: list[tuple[object, ...]] = attrs.field(factory=list)
    outbox: list[tuple[object, ...]] = attrs.field(factory=list)
    dedup: list[tuple[object, ...]] = attrs.field(factory=list)
    keys: dict[tuple[str, object, object], str] = attrs.field(factory=dict)
    msg_ids: set[str] = attrs.field(factory=set)


class MailDb:
    """The tables; ``usage`` is read by the service's metrics."""

    def __init__(self, directory: Path, policy: Policy) -> None:
        self.path = directory / DB_NAME
        self.directory = directory
        self.policy = policy
        self.usage: dict[str, list[int]] = {}  # mailbox (or OUTBOX_KEY) -> [messages, bytes, dead]
        self.total = [0, 0]
        # who made each mailbox exist (its first send), for the per-owner share; mailboxes
        # from before a restart count toward the total only (nothing of a token is stored)
        self._owner_of: dict[str, str] = {}
        self._owned: collections.Counter[str] = collections.Counter()
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self.next_seq = 1
        self._pending = _Pending()

    # --- lifecycle --------------------------------------------------------------------------

    def open(self) -> int:
        """``connect`` then ``load``: returns how many messages the database holds."""
        self.connect()
        return self.load()

    def connect(self) -> None:
        """Create the directory and open the two connections; nothing read or written. A warm
        spare does this ahead of a crash (only the live instance then loads and writes)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._w is None:
            self._w = _connect(self.path)
        if self._r is None:
            self._r = _connect(self.path)

    def load(self) -> int:
        """Create the tables if needed and load the usage; how many messages it holds. The live
        instance's alone (after ``connect``).

        O(mailboxes), not O(messages): usage is read from its table; a database from before
        that table has it counted from the rows once, here."""
        had_usage = self.w.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage'"
        ).fetchone()
        for statement in _SCHEMA:
            self.w.execute(statement)
        if had_usage is None:
            self._count_usage()
        rows = self.w.execute("SELECT key, messages, bytes, dead FROM usage").fetchall()
        for key, count, size, dead in rows:
            if count:
                self._apply_usage(key, count, size, dead)
        top = self.w.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
        self.next_seq = int(top) + 1  # only the committer inserts: it numbers the rows itself
        return self.total[0]

    def _count_usage(self) -> None:
        """Fill the usage table from the rows (one transaction)."""
        rows: list[tuple[object, ...]] = []
        by_mailbox, outbox = _USAGE_FROM_ROWS
        rows += self.w.execute(by_mailbox).fetchall()
        rows += self.w.execute(outbox, (OUTBOX_KEY,)).fetchall()
        self.w.execute("BEGIN IMMEDIATE")
        self._many(
            "INSERT OR REPLACE INTO usage (key, messages, bytes, dead) VALUES",
            "(?,?,?,?)",
            [row for row in rows if row[1]],
        )
        self.w.execute("COMMIT")

    def close(self) -> None:
        for conn in (self._w, self._r):
            if conn is not None:
                conn.close()
        self._w = self._r = None

    def outbox_depth(self) -> int:
        return self.usage.get(OUTBOX_KEY, (0, 0, 0))[0]

    @property
    def w(self) -> sqlite3.Connection:
        assert self._w is not None, "MailDb is not open"
        return self._w

    @property
    def r(self) -> sqlite3.Connection:
        assert self._r is not None, "MailDb is not open"
        return self._r

    # --- transactions (the committer thread) ------------------------------------------------

    def begin(self) -> None:
        self._pending = _Pending()
        self.w.execute("BEGIN IMMEDIATE")

    def commit(self, fx: Effects | None = None) -> None:
        """Write what is buffered and ``fx``'s usage moves, then commit (one transaction)."""
        self._flush()
        if fx is not None and fx.usage:
            self._store_usage(fx.usage)
        self.w.execute("COMMIT")

    def _store_usage(self, moves: dict[str, list[int]]) -> None:
        rows = [(key, m, b, d) for key, (m, b, d) in moves.items() if m or b or d]
        self._many(
            "INSERT INTO usage (key, messages, bytes, dead) VALUES",
            "(?,?,?,?)",
            rows,
            tail=" ON CONFLICT (key) DO UPDATE SET messages = messages + excluded.messages,"
            " bytes = bytes + excluded.bytes, dead = dead + excluded.dead",
        )
        emptied = [key for key, m, _, _ in rows if m < 0]
        for at in range(0, len(emptied), _ROWS):
            chunk = emptied[at : at + _ROWS]
            self.w.execute(
                f"DELETE FROM usage WHERE messages <= 0 AND key IN ({_marks(len(chunk))})", chunk
            )

    def rollback(self, fx: Effects) -> None:
        self._pending = _Pending()
        if self.w.in_transaction:
            self.w.execute("ROLLBACK")
        self.undo(fx)

    def undo(self, fx: Effects) -> None:
        for key, (m, b, d) in fx.usage.items():
            self._apply_usage(key, -m, -b, -d)

    def _apply_usage(self, key: str, messages: int, size: int, dead: int = 0) -> None:
        entry = self.usage.setdefault(key, [0, 0, 0])
        entry[0] += messages
        entry[1] += size
        entry[2] += dead
        self.total[0] += messages
        self.total[1] += size
        if entry[0] <= 0:
            del self.usage[key]
            owner = self._owner_of.pop(key, None)
            if owner is not None:
                self._owned[owner] -= 1
                if self._owned[owner] <= 0:
                    del self._owned[owner]

    def _check_new_mailbox(self, address: str, owner: str | None) -> bool:
        """Whether ``address`` is a new mailbox; 507 when one more would pass the node's
        ``max_mailboxes`` or its owner's ``mailboxes_per_owner`` (one token cannot make ten
        thousand of them)."""
        if address in self.usage:
            return False
        p = self.policy
        if len(self.usage) - (OUTBOX_KEY in self.usage) >= p.max_mailboxes:
            raise oap.OapError(
                "insufficient_storage", f"the node holds {p.max_mailboxes} mailboxes already"
            )
        if owner is not None and self._owned[owner] >= p.mailboxes_per_owner:
            raise oap.OapError(
                "insufficient_storage",
                f"this token (or tenant) made {p.mailboxes_per_owner} mailboxes already",
            )
        return True

    def _use(self, fx: Effects, key: str, messages: int, size: int, dead: int = 0) -> None:
        self._apply_usage(key, messages, size, dead)
        fx.move(key, messages, size, dead)

    def _check_quota(self, key: str, count: int, size: int) -> None:
        p = self.policy
        if self.total[0] + count > p.max_messages or self.total[1] + size > p.max_bytes:
            raise oap.OapError(
                "insufficient_storage",
                f"the node's mailboxes are full ({p.max_messages} messages, {p.max_bytes} bytes)",
            )
        entry = self.usage.get(key, (0, 0, 0))
        if key != OUTBOX_KEY and (
            entry[0] + count > p.mailbox_max_messages or entry[1] + size > p.mailbox_max_bytes
        ):
            raise oap.OapError(
                "insufficient_storage",
                f"mailbox {key} is full ({p.mailbox_max_messages} messages, "
                f"{p.mailbox_max_bytes} bytes)",
            )

    # --- operations (inside a transaction) --------------------------------------------------

    def send(
        self,
        fx: Effects,
        address: str,
        remote: bool,
        messages: Sequence[proto.Outgoing],
        now: float,
        origin: str | None = None,
        owner: str | None = None,
    ) -> proto.Sent:
        """Store (or, ``remote``, queue for the outbox) each message unless it is a duplicate.

        Everything is checked first (duplicates, taken message ids, quotas); the rows then wait
        in this transaction's write-behind buffer, so the sends of a whole batch are one
        multi-row INSERT per table (``_flush``)."""
        p = self.policy
        usage_key = OUTBOX_KEY if remote else address
        # a forwarded id is its origin's: deduplicated per origin and mailbox, so no other
        # sender can pre-empt it
        views = [_scoped(m, origin) for m in messages]
        known = self._known(address, views, now)
        taken = self._taken(remote, messages, views, known)
        results: list[proto.SentOne] = []
        rows: list[tuple[str, bytes]] = []
        remember: list[tuple[object, ...]] = []
        size = 0
        fresh_ids = iter(new_msg_ids(now, len(messages)))
        for msg, view in zip(messages, views, strict=True):
            dup = known.get((_KEY, msg.key)) or known.get((_MSG_ID, view.msg_id))
            if dup is not None:
                results.append(proto.SentOne(msg_id=dup, created=False))
                continue
            # the forwarder's id is kept end to end unless another message has it already
            msg_id = msg.msg_id if msg.msg_id and msg.msg_id not in taken else next(fresh_ids)
            taken.add(msg_id)
            if msg.key is not None:  # a repeat later in this batch is a duplicate too
                known[(_KEY, msg.key)] = msg_id
                remember.append((address, _KEY, msg.key, msg_id, now + p.dedup_window))
            if view.msg_id is not None:
                known[(_MSG_ID, view.msg_id)] = msg_id
                remember.append((address, _MSG_ID, view.msg_id, msg_id, now + p.retention))
            rows.append((msg_id, msg.body))
            size += len(msg.body)
            results.append(proto.SentOne(msg_id=msg_id, created=True))
        if not rows:
            return proto.Sent(results=tuple(results))
        self._check_quota(usage_key, len(rows), size)
        new_box = not remote and self._check_new_mailbox(address, owner)
        # nothing can refuse the send from here on: into the buffer
        pend = self._pending
        if remote:
            pend.outbox += [(address, m, b, now, now) for m, b in rows]
        else:
            seq = self.next_seq
            self.next_seq += len(rows)
            pend.messages += [
                (seq + n, address, m, len(b), now, now) for n, (m, b) in enumerate(rows)
            ]
            pend.bodies += [(seq + n, b) for n, (_m, b) in enumerate(rows)]
        pend.msg_ids.update(m for m, _ in rows)
        for row in remember:
            pend.keys[(address, row[1], row[2])] = str(row[3])
        pend.dedup += remember
        self._use(fx, usage_key, len(rows), size)
        if new_box and owner is not None:
            self._owner_of[address] = owner
            self._owned[owner] += 1
        if remote:
            fx.outbox = True
        else:
            fx.wake.add(address)
        fx.sent += len(rows)
        return proto.Sent(results=tuple(results))

    def _taken(
        self,
        remote: bool,
        messages: Sequence[proto.Outgoing],
        views: Sequence[proto.Outgoing],
        known: dict[tuple[int, str | None], str],
    ) -> set[str]:
        """The ids a forwarder chose that another message has already (it then gets a fresh id
        here; a forwarded batch is never refused for another sender's id)."""
        given = [
            m.msg_id
            for m, v in zip(messages, views, strict=True)
            if m.msg_id is not None and (_MSG_ID, v.msg_id) not in known
        ]
        if not given:
            return set()
        taken = {m for m in given if m in self._pending.msg_ids}
        table = "outbox" if remote else "messages"
        for at in range(0, len(given), 500):  # under SQLite's bound on parameters
            chunk = given[at : at + 500]
            taken.update(
                row[0]
                for row in self.w.execute(
                    f"SELECT msg_id FROM {table} WHERE msg_id IN ({_marks(len(chunk))})", chunk
                ).fetchall()
            )
        return taken

    def _flush(self) -> None:
        """Write the buffered sends (before any other statement of the transaction, and at
        its commit): a few statements for all of them."""
        pend = self._pending
        if pend.messages:
            self._many(
                "INSERT INTO messages (seq, mailbox, msg_id, size, sent_at, visible_at) VALUES",
                "(?,?,?,?,?,?)",
                pend.messages,
            )
            self._many("INSERT INTO bodies (seq, body) VALUES", "(?,?)", pend.bodies)
        if pend.outbox:
            self._many(
                "INSERT INTO outbox (dest, msg_id, body, sent_at, next_try) VALUES",
                "(?,?,?,?,?)",
                pend.outbox,
            )
        if pend.dedup:
            self._many(
                "INSERT OR REPLACE INTO dedup (mailbox, kind, key, msg_id, until) VALUES",
                "(?,?,?,?,?)",
                pend.dedup,
            )
        self._pending = _Pending()

    def _many(
        self, head: str, one: str, rows: Sequence[tuple[object, ...]], tail: str = ""
    ) -> None:
        """``head`` followed by one multi-row VALUES list per chunk (then ``tail``): one
        statement step per chunk."""
        for at in range(0, len(rows), _ROWS):
            chunk = rows[at : at + _ROWS]
            params = [value for row in chunk for value in row]
            self.w.execute(f"{head} {','.join([one] * len(chunk))}{tail}", params)

    def _known(
        self, address: str, messages: Sequence[proto.Outgoing], now: float
    ) -> dict[tuple[int, str | None], str]:
        """``(kind, key) -> msg_id`` of the batch's keys and ids seen within their window."""
        wanted = [(_KEY, m.key) for m in messages if m.key is not None]
        wanted += [(_MSG_ID, m.msg_id) for m in messages if m.msg_id is not None]
        if not wanted:
            return {}
        found: dict[tuple[int, str | None], str] = {}
        pending = self._pending.keys  # sent earlier in this transaction, not written yet
        for kind, key in wanted:
            hit = pending.get((address, kind, str(key)))
            if hit is not None:
                found[(kind, key)] = hit
        wanted = [w for w in wanted if w not in found]
        for kind in (_KEY, _MSG_ID):
            keys = [key for k, key in wanted if k == kind]
            for at in range(0, len(keys), 500):  # under SQLite's bound on parameters
                chunk = keys[at : at + 500]
                rows = self.w.execute(
                    f"SELECT key, msg_id FROM dedup WHERE mailbox = ? AND kind = ?"
                    f" AND until > ? AND key IN ({_marks(len(chunk))})",
                    (address, kind, now, *chunk),
                ).fetchall()
                found.update({(kind, key): msg_id for key, msg_id in rows})
        return found

    def receive(
        self, fx: Effects, mailbox: str, limit: int, visibility: float | None, now: float
    ) -> tuple[list[proto.Delivery], float | None]:
        """Up to ``limit`` visible messages, oldest first, each with a new receipt; messages
        past ``max_deliver`` go to the dead-letter queue instead. With nothing to deliver, also
        the time the next hidden message becomes visible (None: none is hidden)."""
        self._flush()
        w, p = self.w, self.policy
        hide_until = now + (p.visibility if visibility is None else visibility)
        out: list[proto.Delivery] = []
        after = 0  # one pass over the mailbox: a message hidden for 0 s is not taken twice
        while len(out) < limit:
            rows = w.execute(
                "SELECT m.seq, m.msg_id, b.body, m.deliveries, m.receipt FROM messages m"
                " JOIN bodies b ON b.seq = m.seq WHERE m.mailbox = ? AND m.dead = 0"
                " AND m.seq > ? AND m.visible_at <= ? ORDER BY m.seq LIMIT ?",
                (mailbox, after, now, limit - len(out)),
            ).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            updates, dead = [], []
            tails = iter(_receipts(len(rows)))
            for seq, msg_id, body, deliveries, receipt in rows:
                if deliveries >= p.max_deliver:
                    dead.append(seq)
                    self._use(fx, mailbox, 0, 0, 1)
                    continue
                if receipt is not None:  # delivered, neither acked nor nacked in time
                    fx.timeouts += 1
                fresh = f"{seq:x}.{deliveries + 1}.{next(tails)}"
                updates.append((seq, fresh, deliveries + 1))
                out.append(proto.Delivery(msg_id, fresh, deliveries + 1, body))
            for at in range(0, len(updates), _ROWS):
                chunk = updates[at : at + _ROWS]
                w.execute(
                    "UPDATE messages SET receipt = v.column2, deliveries = v.column3,"
                    f" visible_at = ? FROM (VALUES {','.join(['(?,?,?)'] * len(chunk))}) AS v"
                    " WHERE messages.seq = v.column1",
                    [hide_until, *(value for row in chunk for value in row)],
                )
            if dead:
                w.execute(
                    "UPDATE messages SET dead = 1, receipt = NULL"
                    f" WHERE seq IN ({_marks(len(dead))})",
                    dead,
                )
                fx.dead += len(dead)
        fx.delivered += len(out)
        if out:
            return out, None
        row = w.execute(
            "SELECT min(visible_at) FROM messages WHERE mailbox = ? AND dead = 0", (mailbox,)
        ).fetchone()
        return out, (None if row[0] is None else float(row[0]))

    def _current(
        self, mailbox: str, receipts: Sequence[str]
    ) -> tuple[list[tuple[int, int]], tuple[str, ...]]:
        """``[(seq, body size)]`` of the messages whose current delivery one of ``receipts``
        names, and the receipts that name none (stale)."""
        self._flush()
        seqs = _seqs(receipts)
        if not seqs:
            return [], tuple(receipts)
        # by primary key only, then filtered here: with the other terms in the WHERE clause the
        # planner walked the mailbox's index instead (3 ms for 64 receipts against 0.1 ms)
        wanted = set(receipts)
        rows = self.w.execute(
            f"SELECT seq, mailbox, receipt, size FROM messages WHERE seq IN ({_marks(len(seqs))})",
            seqs,
        ).fetchall()
        found = [(seq, r, size) for seq, mb, r, size in rows if mb == mailbox and r in wanted]
        current = {r for _seq, r, _size in found}
        stale = tuple(r for r in receipts if r not in current)
        return [(seq, size) for seq, _r, size in found], stale

    def ack(self, fx: Effects, mailbox: str, receipts: Sequence[str]) -> proto.Changed:
        rows, stale = self._current(mailbox, receipts)
        if rows:
            seqs = [seq for seq, _ in rows]
            for table in ("messages", "bodies"):
                self.w.execute(f"DELETE FROM {table} WHERE seq IN ({_marks(len(seqs))})", seqs)
            self._use(fx, mailbox, -len(rows), -sum(size for _, size in rows))
        fx.acked += len(rows)
        return proto.Changed(count=len(rows), stale=stale)

    def nack(
        self, fx: Effects, mailbox: str, receipts: Sequence[str], delay: float, now: float
    ) -> proto.Changed:
        changed = self._hide(mailbox, receipts, "receipt = NULL, visible_at = ?", now + delay)
        if changed.count and delay == 0:
            fx.wake.add(mailbox)
        return changed

    def extend(
        self, fx: Effects, mailbox: str, receipts: Sequence[str], visibility: float, now: float
    ) -> proto.Changed:
        return self._hide(mailbox, receipts, "visible_at = ?", now + visibility)

    def _hide(
        self, mailbox: str, receipts: Sequence[str], assign: str, until: float
    ) -> proto.Changed:
        """``assign`` (with ``until`` as its one parameter) on the current deliveries named."""
        rows, stale = self._current(mailbox, receipts)
        if rows:
            self.w.execute(
                f"UPDATE messages SET {assign} WHERE seq IN ({_marks(len(rows))})",
                [until, *(seq for seq, _ in rows)],
            )
        return proto.Changed(count=len(rows), stale=stale)

    def redrive(self, fx: Effects, mailbox: str, limit: int, now: float) -> proto.Redriven:
        """Dead letters back to the tail of the mailbox, oldest first, deliveries reset."""
        self._flush()
        w = self.w
        seqs = w.execute(
            "SELECT seq FROM messages WHERE mailbox = ? AND dead = 1 ORDER BY seq LIMIT ?",
            (mailbox, limit),
        ).fetchall()
        top = self.next_seq
        self.next_seq += len(seqs)
        moves = [(top + n, seq) for n, (seq,) in enumerate(seqs)]
        w.executemany(
            "UPDATE messages SET seq = ?, dead = 0, deliveries = 0, receipt = NULL,"
            " visible_at = ? WHERE seq = ?",
            [(new, now, old) for new, old in moves],
        )
        w.executemany("UPDATE bodies SET seq = ? WHERE seq = ?", moves)
        if seqs:
            self._use(fx, mailbox, 0, 0, -len(seqs))
            fx.wake.add(mailbox)
        return proto.Redriven(count=len(seqs))

    def purge(self, fx: Effects, now: float) -> int:
        """Drop what outlived the retention (messages, dead letters, outbox entries, receipts)
        and ended dedup entries; returns how many messages went."""
        self._flush()
        w = self.w
        cutoff = now - self.policy.retention
        gone = w.execute(
            "DELETE FROM messages WHERE sent_at < ? RETURNING seq, mailbox, size, dead",
            (cutoff,),
        ).fetchall()
        for _seq, mailbox, size, dead in gone:
            self._use(fx, mailbox, -1, -size, -dead)
        w.executemany("DELETE FROM bodies WHERE seq = ?", [(row[0],) for row in gone])
        expired = w.execute(
            "DELETE FROM outbox WHERE sent_at < ? RETURNING msg_id, dest, length(body)", (cutoff,)
        ).fetchall()
        for msg_id, dest, size in expired:
            self._use(fx, OUTBOX_KEY, -1, -size)
            w.execute(
                "INSERT OR REPLACE INTO sent (msg_id, dest, state, at) VALUES (?,?,'expired',?)",
                (msg_id, dest, now),
            )
        w.execute("DELETE FROM dedup WHERE until < ?", (now,))
        w.execute("DELETE FROM sent WHERE at < ?", (cutoff,))
        return len(gone) + len(expired)

    def outbox_done(
        self, fx: Effects, msg_ids: Iterable[str], now: float, state: str = "delivered"
    ) -> None:
        """These entries are settled (``delivered``: their node accepted them durably;
        ``rejected``: it refused them for good): out of the outbox, into ``sent``."""
        self._flush()
        for msg_id in msg_ids:
            row = self.w.execute(
                "DELETE FROM outbox WHERE msg_id = ? RETURNING dest, length(body)", (msg_id,)
            ).fetchone()
            if row is None:
                continue
            self._use(fx, OUTBOX_KEY, -1, -row[1])
            self.w.execute(
                "INSERT OR REPLACE INTO sent (msg_id, dest, state, at) VALUES (?,?,?,?)",
                (msg_id, row[0], state, now),
            )

    def outbox_failed(
        self, fx: Effects, msg_ids: Iterable[str], error: str, next_try: float
    ) -> None:
        self._flush()
        self.w.executemany(
            "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ?"
            " WHERE msg_id = ?",
            [(next_try, error[:200], msg_id) for msg_id in msg_ids],
        )

    # --- reads (the reader connection, one thread at a time) --------------------------------

    def dlq(self, mailbox: str, limit: int) -> proto.DeadLetters:
        rows = self.r.execute(
            "SELECT m.msg_id, m.deliveries, m.sent_at, b.body FROM messages m"
            " JOIN bodies b ON b.seq = m.seq WHERE m.mailbox = ? AND m.dead = 1"
            " ORDER BY m.seq LIMIT ?",
            (mailbox, limit),
        ).fetchall()
        return proto.DeadLetters(messages=tuple(proto.DeadLetter(*row) for row in rows))

    def outbox_due(
        self, now: float, limit: int
    ) -> tuple[list[tuple[str, str, bytes, int]], float | None]:
        """Entries due now (msg_id, dest, body, attempts), oldest first; and, if none is, when
        the next one will be (None: the outbox is empty)."""
        rows = self.r.execute(
            "SELECT msg_id, dest, body, attempts FROM outbox WHERE next_try <= ? ORDER BY seq"
            " LIMIT ?",
            (now, limit),
        ).fetchall()
        if rows:
            return rows, None
        row = self.r.execute("SELECT min(next_try) FROM outbox").fetchone()
        return [], (None if row[0] is None else float(row[0]))

    def outbox_list(self, limit: int) -> proto.OutboxList:
        rows = self.r.execute(
            "SELECT msg_id, dest, attempts, next_try, last_error FROM outbox ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        depth = self.r.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return proto.OutboxList(entries=tuple(proto.OutboxEntry(*row) for row in rows), depth=depth)

    def receipt(self, msg_id: str) -> proto.DeliveryState:
        r = self.r
        row = r.execute("SELECT dest, sent_at FROM outbox WHERE msg_id = ?", (msg_id,)).fetchone()
        if row is not None:
            return proto.DeliveryState(msg_id, "queued", row[0], row[1])
        row = r.execute("SELECT dest, state, at FROM sent WHERE msg_id = ?", (msg_id,)).fetchone()
        if row is not None:
            return proto.DeliveryState(msg_id, row[1], row[0], row[2])
        row = r.execute(
            "SELECT mailbox, sent_at FROM messages WHERE msg_id = ?", (msg_id,)
        ).fetchone()
        if row is not None:
            return proto.DeliveryState(msg_id, "local", row[0], row[1])
        return proto.DeliveryState(msg_id, "unknown")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the WAL is fsynced at every COMMIT: acked = durable
    # Checkpoint every 16 MiB of WAL, not SQLite's 4 MiB: a message lives for milliseconds, so
    # most pages are written several times in the WAL and copied to the database only once.
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit={WAL_PAGES * 4096}")
    return conn
