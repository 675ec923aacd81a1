"""What a restart pays to open each service's data, empty and with ``--items`` (100,000) items.

Issue 29: svc-mailbox, svc-index and svc-passport open in O(1) of their data. Each row times the
open as a restart does it now against the way it did before (the baseline, measured in the same
run on the same data), median of ``--repeat`` opens, the OS page cache warm for both:

* svc-index, 100,000 names: ``NameIndex.open`` (no count) vs the same open plus the
  ``SELECT count(*)`` it used to run;
* svc-mailbox, 100,000 messages in 1,000 mailboxes: ``MailDb.open`` reading the usage table vs
  the same open plus the aggregate over every message it used to run;
* svc-passport, 100,000 revocations: what the live instance reads once its warm spare has loaded
  the list (``refresh``: only the lines appended since, here 10) vs a full ``load``;
* the same opens of empty data, for scale.

    python bench/open_cost.py [--items 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ipc.proto import mailbox as proto  # noqa: E402
from services.index.names import DB_NAME as INDEX_DB  # noqa: E402
from services.index.names import NameIndex  # noqa: E402
from services.mailbox import store as mailstore  # noqa: E402
from services.mailbox.box import Job, apply_batch  # noqa: E402
from services.passport.revocations import Revocations  # noqa: E402

NOW = 1_800_000_000.0


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median ms of ``fn`` over ``repeat`` calls (after one untimed call: a warm page cache)."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


def index_dir(base: Path, items: int) -> Path:
    where = base / f"index-{items}"
    index = NameIndex(where)
    trio.run(index.open)
    index.close()
    with sqlite3.connect(where / INDEX_DB) as conn:
        conn.executemany(
            "INSERT INTO names (name, id, version, type) VALUES (?, ?, 1, '')",
            ((f"site/page{n:07d}.html", "b3:" + f"{n:064x}") for n in range(items)),
        )
    return where


def open_index(where: Path, count: bool) -> None:
    index = NameIndex(where)
    trio.run(index.open)
    if count:  # what open() did before issue 29
        assert index._writer is not None
        index._writer.execute("SELECT count(*) FROM names").fetchone()
    index.close()


def mailbox_dir(base: Path, items: int) -> Path:
    where = base / f"mail-{items}"
    db = mailstore.MailDb(where, mailstore.Policy())
    db.open()
    per_job = 1000
    for start in range(0, items, per_job):
        box = f"box{start // per_job % 1000}"
        batch = [proto.Outgoing(b"m" * 64)] * min(per_job, items - start)
        job = Job(lambda fx, now, box=box, batch=batch: db.send(fx, box, False, batch, now))
        apply_batch(db, [job], mailstore.Effects(), lambda: NOW)
        assert job.error is None, job.error
    db.close()
    return where


def open_mailbox(where: Path, aggregate: bool) -> None:
    db = mailstore.MailDb(where, mailstore.Policy())
    db.open()
    if aggregate:  # what open() did before issue 29: count every message
        by_mailbox, outbox = mailstore._USAGE_FROM_ROWS
        db.r.execute(by_mailbox).fetchall()
        db.r.execute(outbox, (mailstore.OUTBOX_KEY,)).fetchall()
    db.close()


def revocations_file(base: Path, items: int) -> Path:
    path = base / f"revoked-{items}.log"
    path.write_text("".join(f"{os.urandom(16).hex()} {NOW + 86400:.3f}\n" for _ in range(items)))
    return path


def open_revocations(path: Path, spare: Revocations | None) -> None:
    if spare is None:
        Revocations(path, keep_for=86400).load(NOW, compact=False)
        return
    spare.refresh(NOW)


def passport_case(path: Path, repeat: int) -> float:
    """ms of the live instance's ``refresh`` after a spare's load, 10 lines appended since."""
    runs = []
    for _ in range(repeat):
        spare = Revocations(path, keep_for=86400)
        spare.load(NOW, compact=False)
        with open(path, "a") as f:
            f.write("".join(f"{os.urandom(16).hex()} {NOW + 86400:.3f}\n" for _ in range(10)))
        t0 = time.perf_counter()
        spare.refresh(NOW)
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="ron-bench-open-") as tmp:
        base = Path(tmp)
        for items in (0, args.items):
            where = index_dir(base, items)
            now = timed(lambda where=where: open_index(where, False), args.repeat)
            before = timed(lambda where=where: open_index(where, True), args.repeat)
            rows.append(("svc-index names", items, now, before))
        for items in (0, args.items):
            where = mailbox_dir(base, items)
            now = timed(lambda where=where: open_mailbox(where, False), args.repeat)
            before = timed(lambda where=where: open_mailbox(where, True), args.repeat)
            rows.append(("svc-mailbox messages", items, now, before))
        for items in (0, args.items):
            path = revocations_file(base, items)
            now = passport_case(path, args.repeat)
            before = timed(lambda path=path: open_revocations(path, None), args.repeat)
            rows.append(("svc-passport revocations", items, now, before))
    print(f"\n## bench/open_cost.py: a restart opens its data (median of {args.repeat})\n")
    print("| data | items | open now ms | open before ms (baseline) | now vs before |")
    print("|---|---|---|---|---|")
    for what, items, now, before in rows:
        print(f"| {what} | {items:,} | {now:.2f} | {before:.2f} | {now / before:.2f}x |")


if __name__ == "__main__":
    main()
