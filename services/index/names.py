"""The name table of svc-index: SQLite in WAL mode, group commit, used only from worker threads.

See the package docstring (``services.index``) for the guarantees.
"""

from __future__ import annotations

import builtins
import sqlite3
from pathlib import Path

import attrs
import trio

from ipc import oap
from kernel import logs
from kernel.group_commit import take_batch

__all__ = ["BATCH_MAX", "DB_NAME", "NameIndex"]

DB_NAME = "names.sqlite3"
BATCH_MAX = 256

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS names ("
    " name TEXT PRIMARY KEY, id TEXT NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID",
    # the media type an object was uploaded with (one row per object, the last upload's)
    "CREATE TABLE IF NOT EXISTS types (id TEXT PRIMARY KEY, type TEXT NOT NULL) WITHOUT ROWID",
)
_TYPE_COLUMN = "ALTER TABLE names ADD COLUMN type TEXT NOT NULL DEFAULT ''"  # databases before it


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # WAL fsynced at every COMMIT: acked = durable
    return conn


@attrs.define(eq=False)
class _Put:
    """A name to bind (``name``), or with ``name`` None an object's type to record."""

    name: str | None
    obj_id: str
    expect: int | None
    type: str | None = None  # None: the object's recorded type, if any
    done: trio.Event = attrs.field(factory=trio.Event)
    version: int | None = None
    error: oap.OapError | None = None


class NameIndex:
    """The names table and its group committer."""

    def __init__(self, directory: Path, *, batch_max: int = BATCH_MAX) -> None:
        self.path = directory / DB_NAME
        self._directory = directory
        self._batch_max = batch_max
        self._send, self._recv = trio.open_memory_channel[_Put](batch_max * 2)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_lock = trio.Lock()
        self.batches = 0

    async def open(self) -> None:
        """Open (creating if needed) the database. O(1) in the names it holds (no count: a
        restart of a full index is not a scan of it)."""

        def setup() -> None:
            self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._writer = _connect(self.path)
            for statement in _SCHEMA:
                self._writer.execute(statement)
            columns = {row[1] for row in self._writer.execute("PRAGMA table_info(names)")}
            if "type" not in columns:
                self._writer.execute(_TYPE_COLUMN)
            self._reader = _connect(self.path)

        await trio.to_thread.run_sync(setup)

    def close(self) -> None:
        for conn in (self._writer, self._reader):
            if conn is not None:
                conn.close()
        self._writer = self._reader = None

    async def get(self, name: str) -> tuple[str, int, str] | None:
        """(id, version, type) of ``name``, or None."""
        assert self._reader is not None

        def read() -> tuple[str, int, str] | None:
            assert self._reader is not None
            row = self._reader.execute(
                "SELECT id, version, type FROM names WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else (row[0], row[1], row[2])

        async with self._read_lock:
            return await trio.to_thread.run_sync(read)

    async def list(
        self, prefix: str, after: str, limit: int
    ) -> tuple[list[tuple[str, str, int, str]], bool]:
        """``(name, id, version, type)`` of up to ``limit`` names starting with ``prefix`` and
        sorting after ``after``, in order; and whether there are more."""

        def read() -> tuple[list[tuple[str, str, int, str]], bool]:
            assert self._reader is not None
            rows = self._reader.execute(
                "SELECT name, id, version, type FROM names WHERE name > ? AND name >= ?"
                " AND substr(name, 1, ?) = ? ORDER BY name LIMIT ?",
                (after, prefix, len(prefix), prefix, limit + 1),
            ).fetchall()
            return [(r[0], r[1], r[2], r[3]) for r in rows[:limit]], len(rows) > limit

        async with self._read_lock:
            return await trio.to_thread.run_sync(read)

    async def put(
        self, name: str, obj_id: str, expect: int | None, type_: str | None = None
    ) -> tuple[int, str]:
        """Set ``name`` to ``obj_id`` durably; returns the new version and the type it is
        served with (``type_``, else the object's recorded type, else ""); 409 on conflict."""
        job = await self._commit(_Put(name, obj_id, expect, type_))
        assert job.version is not None and job.type is not None
        return job.version, job.type

    async def set_type(self, obj_id: str, type_: str) -> None:
        """Record ``obj_id``'s media type durably (names set later without a type take it)."""
        await self._commit(_Put(None, obj_id, None, type_))

    async def _commit(self, job: _Put) -> _Put:
        await self._send.send(job)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job

    async def run_committer(self) -> None:
        while True:
            batch = await take_batch(self._recv, self._batch_max)
            try:
                await trio.to_thread.run_sync(self._apply, batch)
            except sqlite3.Error as exc:
                logs.log("index_commit_failed", level="error", reason=str(exc))
                for job in batch:
                    job.version = None
                    job.error = oap.OapError("internal", f"index commit failed: {exc}")
            finally:
                for job in batch:
                    if job.version is None and job.error is None:
                        job.error = oap.OapError("internal", "index commit did not finish")
                    job.done.set()
            self.batches += 1

    def _apply(self, batch: builtins.list[_Put]) -> None:
        """One transaction for the whole batch, in arrival order (runs in a worker thread)."""
        conn = self._writer
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                if job.name is None:
                    conn.execute(
                        "INSERT OR REPLACE INTO types (id, type) VALUES (?, ?)",
                        (job.obj_id, job.type),
                    )
                    job.version = 0
                    continue
                row = conn.execute("SELECT version FROM names WHERE name = ?", (job.name,))
                found = row.fetchone()
                current = 0 if found is None else found[0]
                if job.expect is not None and job.expect != current:
                    job.error = oap.OapError(
                        "version_conflict",
                        f"{job.name} is at version {current}, not {job.expect}",
                    )
                    continue
                if job.type is None:
                    known = conn.execute("SELECT type FROM types WHERE id = ?", (job.obj_id,))
                    found = known.fetchone()
                    job.type = "" if found is None else found[0]
                conn.execute(
                    "INSERT INTO names (name, id, version, type) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET id = excluded.id, "
                    "version = excluded.version, type = excluded.type",
                    (job.name, job.obj_id, current + 1, job.type),
                )
                job.version = current + 1
            conn.execute("COMMIT")
        except BaseException:
            for job in batch:
                job.version = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
