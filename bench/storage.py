"""Durable commits through svc-storage (group commit) vs a one-fsync-per-object loop, same disk.

The baseline is the plain crash-safe write: temp file -> fsync -> rename -> fsync dir, one object
at a time, in this process. The measured side is a real macronode running svc-storage: W writer
tasks each write a temp file with ``TempObject`` (as the gateway does) and ``commit`` it over the
command socket; a commit is counted only once acknowledged (= durable). Both run on a data dir on
disk (``--dir``; the default is a fresh directory under the repository, never tmpfs).

    python bench/storage.py [--seconds 4] [--rounds 4] [--dir DIR]

Prints one table: commits/s for 4 KiB and 64 KiB objects at 1 and 8 writers, and the ratio to
the baseline loop of the same size, measured in interleaved slices (each cell alternates with
its baseline) so that a busy disk or CPU slows both sides alike.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from bench._fsync_baseline import write_durably  # noqa: E402
from ipc.commands import CommandClient  # noqa: E402
from ipc.proto import storage  # noqa: E402
from ipc.proto.codec import call  # noqa: E402
from services.lib import objstore  # noqa: E402
from tests.support.node_harness import FAST_CONFIG, start_node  # noqa: E402

SIZES = (4096, 65536)
WRITERS = (1, 8)
_unique = itertools.count()


def payload(size: int) -> bytes:
    """Distinct bytes per object (a duplicate would skip the fsync and flatter us)."""
    head = f"{os.getpid()}-{next(_unique)}-{time.time_ns()}-".encode()
    return head + os.urandom(max(0, size - len(head)))


def baseline(root: Path, size: int, seconds: float) -> float:
    """Objects/s of temp -> fsync -> rename -> fsync dir, one at a time."""
    tmp_dir = root / "tmp"
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        name = f"b{done}"
        write_durably(tmp_dir / name, root / f"{done % 256:02x}" / name, payload(size))
        done += 1
    return done / elapsed


async def through_storage(
    client: CommandClient, root: Path, size: int, writers: int, seconds: float
) -> float:
    done = 0
    deadline = trio.current_time() + seconds

    def write(data: bytes) -> tuple[str, int, str]:
        with objstore.TempObject(root, len(data)) as temp:
            temp.write(data)
            return temp.finish()

    async def writer() -> None:
        nonlocal done
        while trio.current_time() < deadline:
            obj_id, n, tmp = await trio.to_thread.run_sync(write, payload(size))
            commit = storage.Commit(tmp=tmp, id=obj_id, size=n)
            await call(client, storage.PROTOCOL, commit, timeout=30)
            done += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(writers):
            nursery.start_soon(writer)
    return done / (time.perf_counter() - start)


async def run(work: Path, seconds: float, rounds: int) -> None:
    config = FAST_CONFIG + (
        '\n[[services]]\nname = "svc-storage"\nmodule = "services.storage"\n'
        "[services.settings]\nmax_bytes = 1099511627776\nmax_objects = 100000000\n"
    )
    data_dir = work / "node-data"
    loop_root = objstore.store_root(work / "loop-data")
    objstore.ensure_layout(loop_root)
    cells = [(size, writers) for size in SIZES for writers in WRITERS]
    ours = {cell: [0.0, 0.0] for cell in cells}  # cell -> [objects, seconds]
    loop = {cell: [0.0, 0.0] for cell in cells}
    slice_ = seconds / rounds
    async with start_node(
        work, "macronode", config=config, extra_args=["--data-dir", str(data_dir)]
    ) as node:
        await node.wait_service("svc-storage", state="ready")
        root = objstore.store_root(data_dir)
        async with CommandClient.connect(node.runtime_dir, "svc-storage") as client:
            # interleaved slices: a noisy neighbour on the disk hits both sides alike
            for _ in range(rounds):
                for size, writers in cells:
                    rate = await through_storage(client, root, size, writers, slice_)
                    ours[size, writers][0] += rate * slice_
                    ours[size, writers][1] += slice_
                    base = await trio.to_thread.run_sync(baseline, loop_root, size, slice_)
                    loop[size, writers][0] += base * slice_
                    loop[size, writers][1] += slice_
    print(f"durable commits/s: {seconds:g} s per cell in {rounds} interleaved slices, in {work}")
    print(f"{'size':>8} {'writers':>8} {'svc-storage/s':>14} {'fsync loop/s':>13} {'ratio':>6}")
    for size, writers in cells:
        rate = ours[size, writers][0] / ours[size, writers][1]
        base = loop[size, writers][0] / loop[size, writers][1]
        label = f"{size // 1024} KiB"
        print(f"{label:>8} {writers:>8} {rate:>14.0f} {base:>13.0f} {rate / base:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each cell")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved slices per cell")
    parser.add_argument("--dir", type=Path, default=None, help="a directory on disk (not tmpfs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ron-bench-storage-", dir=args.dir or REPO))
    try:
        trio.run(run, work, args.seconds, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
