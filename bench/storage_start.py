"""svc-storage's restart with a full store: kill -9 → ready, on its usage hint vs a full walk.

A real macronode whose store holds ``--objects`` objects (written straight into the fan-out
dirs, as svc-storage lays them out). Each round kills svc-storage (SIGKILL) and times how long
until the node reports a new svc-storage process ``ready`` (polling ``/services/svc-storage``
on the admin plane). Two modes alternate in the same run:

* ``hint``: what a restart does now: it opens on the usage the last process kept and counts
  the store in the background;
* ``walk`` (the baseline, the old start-up): the hint is removed before the kill, so the new
  process walks every fan-out dir before it is ready.

Kills are paced (``--pace`` s) so the quarantine cap is never reached.

    python bench/storage_start.py [--objects 100000] [--kills 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import blake3
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kernel.cli.chaos import target  # noqa: E402
from services.lib import objstore  # noqa: E402

STORAGE = "svc-storage"


def fill(root: Path, n: int) -> None:
    """``n`` small objects written straight into the fan-out dirs of the store at ``root``."""
    for i in range(n):
        data = b"bench object %d" % i
        hexid = blake3.blake3(data).hexdigest()
        (root / hexid[:2] / hexid).write_bytes(data)


def service(admin: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{admin}/services/{STORAGE}", timeout=5) as resp:
        doc: dict[str, object] = json.loads(resp.read())
        return doc


def kill_and_time(admin: str) -> float:
    """SIGKILL svc-storage; ms until a new process of it is ready."""
    pid = int(str(service(admin)["pid"]))
    started = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    deadline = started + 60
    while time.perf_counter() < deadline:
        doc = service(admin)
        if doc["state"] == "ready" and doc["pid"] not in (None, pid):
            return (time.perf_counter() - started) * 1000
        time.sleep(0.001)  # polling another process: there is no event to wait on here
    raise TimeoutError("svc-storage did not come back within 60 s")


# the supervisor's crash-only backoff and quarantine cap are not what is measured here
BENCH_CONFIG = "[supervisor]\nrestart_cap = 100000\nmin_backoff = 0.001\nmax_backoff = 0.002\n"


def measure(
    data_dir: Path, admin: str, objects: int, kills: int, pace: float
) -> dict[str, list[float]]:
    root = next(p for p in data_dir.rglob(objstore.OBJECTS_DIR) if p.is_dir())
    fill(root, objects)
    kill_and_time(admin)  # the new process counts them (no hint matches them yet)
    hint = root / objstore.USAGE_HINT
    took: dict[str, list[float]] = {"hint": [], "walk": []}
    for _ in range(kills):
        for mode in ("hint", "walk"):
            time.sleep(pace)  # paced kills (and the count done in the background)
            deadline = time.monotonic() + 60
            while objstore.read_usage_hint(root) != objstore.scan_usage(root):
                if time.monotonic() > deadline:
                    raise TimeoutError("the usage hint never matched the store")
                time.sleep(0.2)  # another process writes it: nothing to wait on but the file
            if mode == "walk":
                hint.unlink()
            took[mode].append(kill_and_time(admin))
    return took


async def run(objects: int, kills: int, pace: float) -> dict[str, list[float]]:
    data_dir = Path(tempfile.mkdtemp(prefix="ron-bench-storage-"))
    config = data_dir.with_suffix(".toml")
    config.write_text(BENCH_CONFIG)
    async with target.start_node(
        "macronode", config=config, extra_args=["--data-dir", str(data_dir)]
    ) as node:
        return await trio.to_thread.run_sync(measure, data_dir, node.admin, objects, kills, pace)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=10, help="kills per mode")
    parser.add_argument("--pace", type=float, default=2.0, help="seconds between kills")
    args = parser.parse_args()
    took = trio.run(run, args.objects, args.kills, args.pace)
    base = statistics.median(took["walk"])
    print(
        f"\n## bench/storage_start.py: kill -9 of svc-storage → ready, {args.objects:,} objects\n"
    )
    print("| start-up | kills | p50 ms | p95 ms | max ms | p50 vs walk |")
    print("|---|---|---|---|---|---|")
    for mode, label in (("walk", "full walk (baseline, the old start)"), ("hint", "usage hint")):
        ms = took[mode]
        print(
            f"| {label} | {len(ms)} | {statistics.median(ms):.0f} | {pct(ms, 0.95):.0f} | "
            f"{max(ms):.0f} | {statistics.median(ms) / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
