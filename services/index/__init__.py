"""svc-index: names -> content ids, versioned, durable.

Each ``put`` of a name sets its id and bumps its version by one (the first is 1); a put with
``expect_version`` applies only if the name is at that version (0 = "must not exist yet"), else
409 ``version_conflict``. State is one SQLite database in WAL mode with ``synchronous=FULL``
(``<data_dir>/index/names.sqlite3``; on tmpfs under amnesia). Why SQLite and not our own log is
argued in ``specs/storage-protocol.md``: a transaction is atomic and durable once COMMIT returns,
torn tails are recovered by a well-tested library, and no compaction code is ours to get wrong.

Guarantees:
- a reply to ``put`` is sent only after its transaction committed (fsynced WAL): acked = durable;
- puts that arrive together share one transaction (group commit) and are applied in arrival
  order, so conditional updates within a batch see each other;
- SQLite is used only from worker threads (never blocking the trio loop), one connection per role
  (the committer's, the readers'), each used by one thread at a time.
"""

from services.index.settings import IndexSettings as Settings

__all__ = ["Settings"]
