"""svc-mailbox's tables and the operations on them (synchronous: only worker threads call them).

One SQLite database in WAL mode with ``synchronous=FULL``; the committer thread owns the write
connection and runs a batch of operations in one transaction (``services.mailbox.box``), each in
its own savepoint, so one refused operation (quota, a bad receipt batch) undoes only itself.

Tables: ``messages`` (the mailboxes: FIFO by ``seq``; ``receipt`` names the current delivery,
``dead`` marks the dead-letter queue), ``dedup`` (Idempotency-Keys until the dedup window ends,
forwarded message ids until the retention ends), ``outbox`` (messages for mailboxes on other
nodes, until one accepts them) and ``sent`` (what the outbox delivered: the sender's receipts).

Usage (messages and bytes per mailbox and in all) is kept in memory, loaded at open and moved by
every operation as it runs; an operation or transaction that is rolled back moves it back
(``Effects.undo``), so the quotas always match what is committed plus what is pending.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from ipc import oap
from ipc.proto import mailbox as proto

__all__ = ["DB_NAME", "OUTBOX_KEY", "Effects", "MailDb", "Policy", "new_msg_id"]

DB_NAME = "mail.sqlite3"
OUTBOX_KEY = "\x00outbox"  # the usage key of the outbox (no mailbox name holds a NUL)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages ("
    " seq INTEGER PRIMARY KEY, mailbox TEXT NOT NULL, msg_id TEXT NOT NULL UNIQUE,"
    " body BLOB NOT NULL, sent_at REAL NOT NULL, visible_at REAL NOT NULL,"
    " deliveries INTEGER NOT NULL DEFAULT 0, receipt TEXT, dead INTEGER NOT NULL DEFAULT 0)",
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
)
_KEY, _MSG_ID = 0, 1  # dedup kinds


def new_msg_id(now: float) -> str:
    """32 hex digits: milliseconds first (ids of one node sort by time: cheap index inserts),
    then 80 random bits."""
    return f"{int(now * 1000) & (1 << 48) - 1:012x}{secrets.token_hex(10)}"


def _receipt(seq: int, deliveries: int) -> str:
    return f"{seq:x}.{deliveries}.{secrets.token_hex(8)}"


def _seqs(receipts: Sequence[str]) -> list[int]:
    out = []
    for receipt in receipts:
        head = receipt.partition(".")[0]
        try:
            out.append(int(head, 16))
        except ValueError:
            continue  # not one of ours: stale
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


class MailDb:
    """The tables; ``usage`` is read by the service's metrics."""

    def __init__(self, directory: Path, policy: Policy) -> None:
        self.path = directory / DB_NAME
        self.directory = directory
        self.policy = policy
        self.usage: dict[str, list[int]] = {}  # mailbox (or OUTBOX_KEY) -> [messages, bytes, dead]
        self.total = [0, 0]
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def open(self) -> int:
        """Create or open the database and load the usage; returns how many messages it holds."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._w = _connect(self.path)
        for statement in _SCHEMA:
            self._w.execute(statement)
        self._r = _connect(self.path)
        rows = self._w.execute(
            "SELECT mailbox, count(*), sum(length(body)), sum(dead) FROM messages GROUP BY mailbox"
        ).fetchall()
        rows += self._w.execute(
            "SELECT ?, count(*), coalesce(sum(length(body)), 0), 0 FROM outbox", (OUTBOX_KEY,)
        ).fetchall()
        for key, count, size, dead in rows:
            if count:
                self._apply_usage(key, count, size, dead)
        return self.total[0]

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
        self.w.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.w.execute("COMMIT")

    def rollback(self, fx: Effects) -> None:
        if self.w.in_transaction:
            self.w.execute("ROLLBACK")
        self.undo(fx)

    def undo(self, fx: Effects) -> None:
        for key, (m, b, d) in fx.usage.items():
            self._apply_usage(key, -m, -b, -d)

    def savepoint(self) -> None:
        self.w.execute("SAVEPOINT op")

    def release(self) -> None:
        self.w.execute("RELEASE op")

    def rollback_to(self) -> None:
        self.w.execute("ROLLBACK TO op")
        self.w.execute("RELEASE op")

    def _apply_usage(self, key: str, messages: int, size: int, dead: int = 0) -> None:
        entry = self.usage.setdefault(key, [0, 0, 0])
        entry[0] += messages
        entry[1] += size
        entry[2] += dead
        self.total[0] += messages
        self.total[1] += size
        if entry[0] <= 0:
            del self.usage[key]

    def _use(self, fx: Effects, key: str, messages: int, size: int, dead: int = 0) -> None:
        self._apply_usage(key, messages, size, dead)
        fx.move(key, messages, size, dead)

    def _check_quota(self, key: str, size: int) -> None:
        p = self.policy
        if self.total[0] + 1 > p.max_messages or self.total[1] + size > p.max_bytes:
            raise oap.OapError(
                "insufficient_storage",
                f"the node's mailboxes are full ({p.max_messages} messages, {p.max_bytes} bytes)",
            )
        entry = self.usage.get(key, (0, 0, 0))
        if key != OUTBOX_KEY and (
            entry[0] + 1 > p.mailbox_max_messages or entry[1] + size > p.mailbox_max_bytes
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
    ) -> proto.Sent:
        """Store (or, ``remote``, queue for the outbox) each message unless it is a duplicate."""
        w, p = self.w, self.policy
        results: list[proto.SentOne] = []
        for msg in messages:
            dup = self._duplicate(address, msg, now)
            if dup is not None:
                results.append(proto.SentOne(msg_id=dup, created=False))
                continue
            msg_id = msg.msg_id or new_msg_id(now)
            size = len(msg.body)
            if remote:
                self._check_quota(OUTBOX_KEY, size)
                try:
                    w.execute(
                        "INSERT INTO outbox (msg_id, dest, body, sent_at, next_try)"
                        " VALUES (?,?,?,?,?)",
                        (msg_id, address, msg.body, now, now),
                    )
                except sqlite3.IntegrityError:
                    raise oap.OapError("schema_invalid", f"msg_id {msg_id} is taken") from None
                self._use(fx, OUTBOX_KEY, 1, size)
                fx.outbox = True
            else:
                self._check_quota(address, size)
                try:
                    w.execute(
                        "INSERT INTO messages (mailbox, msg_id, body, sent_at, visible_at)"
                        " VALUES (?,?,?,?,?)",
                        (address, msg_id, msg.body, now, now),
                    )
                except sqlite3.IntegrityError:  # a msg_id given twice, to other mailboxes
                    raise oap.OapError("schema_invalid", f"msg_id {msg_id} is taken") from None
                self._use(fx, address, 1, size)
                fx.wake.add(address)
            if msg.key is not None:
                self._remember(address, _KEY, msg.key, msg_id, now + p.dedup_window)
            if msg.msg_id is not None:
                self._remember(address, _MSG_ID, msg.msg_id, msg_id, now + p.retention)
            fx.sent += 1
            results.append(proto.SentOne(msg_id=msg_id, created=True))
        return proto.Sent(results=tuple(results))

    def _duplicate(self, address: str, msg: proto.Outgoing, now: float) -> str | None:
        for kind, key in ((_KEY, msg.key), (_MSG_ID, msg.msg_id)):
            if key is None:
                continue
            row = self.w.execute(
                "SELECT msg_id FROM dedup WHERE mailbox = ? AND kind = ? AND key = ? AND until > ?",
                (address, kind, key, now),
            ).fetchone()
            if row is not None:
                return str(row[0])
        return None

    def _remember(self, address: str, kind: int, key: str, msg_id: str, until: float) -> None:
        self.w.execute(
            "INSERT OR REPLACE INTO dedup (mailbox, kind, key, msg_id, until) VALUES (?,?,?,?,?)",
            (address, kind, key, msg_id, until),
        )

    def receive(
        self, fx: Effects, mailbox: str, limit: int, visibility: float | None, now: float
    ) -> tuple[list[proto.Delivery], float | None]:
        """Up to ``limit`` visible messages, oldest first, each with a new receipt; messages
        past ``max_deliver`` go to the dead-letter queue instead. With nothing to deliver, also
        the time the next hidden message becomes visible (None: none is hidden)."""
        w, p = self.w, self.policy
        hide_until = now + (p.visibility if visibility is None else visibility)
        out: list[proto.Delivery] = []
        after = 0  # one pass over the mailbox: a message hidden for 0 s is not taken twice
        while len(out) < limit:
            rows = w.execute(
                "SELECT seq, msg_id, body, deliveries, receipt FROM messages WHERE mailbox = ?"
                " AND dead = 0 AND seq > ? AND visible_at <= ? ORDER BY seq LIMIT ?",
                (mailbox, after, now, limit - len(out)),
            ).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            updates, dead = [], []
            for seq, msg_id, body, deliveries, receipt in rows:
                if deliveries >= p.max_deliver:
                    dead.append((seq,))
                    self._use(fx, mailbox, 0, 0, 1)
                    continue
                if receipt is not None:  # delivered, neither acked nor nacked in time
                    fx.timeouts += 1
                fresh = _receipt(seq, deliveries + 1)
                updates.append((fresh, deliveries + 1, hide_until, seq))
                out.append(proto.Delivery(msg_id, fresh, deliveries + 1, body))
            w.executemany(
                "UPDATE messages SET receipt = ?, deliveries = ?, visible_at = ? WHERE seq = ?",
                updates,
            )
            if dead:
                w.executemany("UPDATE messages SET dead = 1, receipt = NULL WHERE seq = ?", dead)
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
        seqs = _seqs(receipts)
        if not seqs:
            return [], tuple(receipts)
        rows = self.w.execute(
            f"SELECT seq, receipt, length(body) FROM messages WHERE seq IN ({_marks(len(seqs))})"
            f" AND mailbox = ? AND receipt IN ({_marks(len(receipts))})",
            (*seqs, mailbox, *receipts),
        ).fetchall()
        current = {receipt for _seq, receipt, _size in rows}
        return [(seq, size) for seq, _r, size in rows], tuple(
            r for r in receipts if r not in current
        )

    def ack(self, fx: Effects, mailbox: str, receipts: Sequence[str]) -> proto.Changed:
        rows, stale = self._current(mailbox, receipts)
        if rows:
            self.w.executemany("DELETE FROM messages WHERE seq = ?", [(seq,) for seq, _ in rows])
            self._use(fx, mailbox, -len(rows), -sum(size for _, size in rows))
        fx.acked += len(rows)
        return proto.Changed(count=len(rows), stale=stale)

    def nack(
        self, fx: Effects, mailbox: str, receipts: Sequence[str], delay: float, now: float
    ) -> proto.Changed:
        rows, stale = self._current(mailbox, receipts)
        self.w.executemany(
            "UPDATE messages SET receipt = NULL, visible_at = ? WHERE seq = ?",
            [(now + delay, seq) for seq, _ in rows],
        )
        if rows and delay == 0:
            fx.wake.add(mailbox)
        return proto.Changed(count=len(rows), stale=stale)

    def extend(
        self, fx: Effects, mailbox: str, receipts: Sequence[str], visibility: float, now: float
    ) -> proto.Changed:
        rows, stale = self._current(mailbox, receipts)
        self.w.executemany(
            "UPDATE messages SET visible_at = ? WHERE seq = ?",
            [(now + visibility, seq) for seq, _ in rows],
        )
        return proto.Changed(count=len(rows), stale=stale)

    def redrive(self, fx: Effects, mailbox: str, limit: int, now: float) -> proto.Redriven:
        """Dead letters back to the tail of the mailbox, oldest first, deliveries reset."""
        w = self.w
        seqs = w.execute(
            "SELECT seq FROM messages WHERE mailbox = ? AND dead = 1 ORDER BY seq LIMIT ?",
            (mailbox, limit),
        ).fetchall()
        top = w.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
        w.executemany(
            "UPDATE messages SET seq = ?, dead = 0, deliveries = 0, receipt = NULL,"
            " visible_at = ? WHERE seq = ?",
            [(top + n + 1, now, seq) for n, (seq,) in enumerate(seqs)],
        )
        if seqs:
            self._use(fx, mailbox, 0, 0, -len(seqs))
            fx.wake.add(mailbox)
        return proto.Redriven(count=len(seqs))

    def purge(self, fx: Effects, now: float) -> int:
        """Drop what outlived the retention (messages, dead letters, outbox entries, receipts)
        and ended dedup entries; returns how many messages went."""
        w = self.w
        cutoff = now - self.policy.retention
        gone = w.execute(
            "DELETE FROM messages WHERE sent_at < ? RETURNING mailbox, length(body), dead",
            (cutoff,),
        ).fetchall()
        for mailbox, size, dead in gone:
            self._use(fx, mailbox, -1, -size, -dead)
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
        self.w.executemany(
            "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ?"
            " WHERE msg_id = ?",
            [(next_try, error[:200], msg_id) for msg_id in msg_ids],
        )

    # --- reads (the reader connection, one thread at a time) --------------------------------

    def dlq(self, mailbox: str, limit: int) -> proto.DeadLetters:
        rows = self.r.execute(
            "SELECT msg_id, deliveries, sent_at, body FROM messages"
            " WHERE mailbox = ? AND dead = 1 ORDER BY seq LIMIT ?",
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
    return conn
