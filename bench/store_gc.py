"""Store GC benchmark: how fast ``ronctl gc`` sweeps, and what it costs the writes meanwhile.

A real micronode (amnesia, tmpfs) is filled with ``--objects`` small objects through the
gateway; they are aged past the grace window (their mtime, which is what a GC measures). Then
``--writers`` threads PUT fresh 1 KiB objects, first for ``--seconds`` with no GC (the baseline,
same run, same node), then while a GC removes the aged ones. The GC takes the commit lock one
fan-out dir at a time, so writes should keep flowing: the ratio column is the write latency
during the GC over the baseline.

    python bench/store_gc.py [--objects 20000] [--writers 4] [--seconds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kernel.cli.client import ControlClient  # noqa: E402


class Writer(threading.Thread):
    """PUTs distinct objects on one keep-alive connection until ``stop``; latencies in ms."""

    def __init__(self, gateway: str, token: str, tag: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        host, port = gateway.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.tag, self.stop, self.samples = tag, stop, []
        self.errors = 0
        self.limit: int | None = None

    def put(self, body: bytes) -> None:
        began = time.perf_counter()
        self.conn.request("PUT", "/o", body=body, headers=self.headers)
        resp = self.conn.getresponse()
        resp.read()
        if resp.status in (200, 201):
            self.samples.append((time.perf_counter() - began) * 1000)
        else:
            self.errors += 1

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and (self.limit is None or n < self.limit):
            self.put(f"{self.tag} {n} ".encode() + os.urandom(1000))
            n += 1


def start_node(rt: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    cfg = rt.parent / f"{rt.name}.toml"
    cfg.write_text('[gateway]\naddr = "127.0.0.1:0"\n\n[overlay]\naddr = "127.0.0.1:0"\n')
    cmd = [sys.executable, "-m", "kernel.cli", "run", "micronode", "--admin-addr", "127.0.0.1:0"]
    cmd += ["--runtime-dir", str(rt), "--config", str(cfg)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def run_writers(gateway: str, token: str, tag: str, n: int, seconds: float, during=None):
    stop = threading.Event()
    writers = [Writer(gateway, token, f"{tag}{i}", stop) for i in range(n)]
    for w in writers:
        w.start()
    began = time.monotonic()
    result = during() if during else time.sleep(seconds)
    stop.set()
    for w in writers:
        w.join()
    wall = time.monotonic() - began
    return [s for w in writers for s in w.samples], sum(w.errors for w in writers), wall, result


def fill(gateway: str, token: str, objects: int, threads: int = 8) -> float:
    writers = [Writer(gateway, token, f"fill{i}", threading.Event()) for i in range(threads)]
    for i, w in enumerate(writers):
        w.limit = objects // threads + (1 if i < objects % threads else 0)
    began = time.monotonic()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    return time.monotonic() - began


def age(root: Path, seconds: float = 7200.0) -> int:
    then, count = time.time() - seconds, 0
    for fanout in root.iterdir():
        if len(fanout.name) == 2:
            for path in fanout.iterdir():
                os.utime(path, (then, then))
                count += 1
    return count


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    return statistics.quantiles(samples, n=100)[int(q) - 1] if len(samples) > 1 else samples[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=20000, help="aged objects to collect")
    ap.add_argument("--writers", type=int, default=4, help="concurrent writer threads")
    ap.add_argument("--seconds", type=float, default=3.0, help="baseline length")
    opts = ap.parse_args()
    rt = Path(tempfile.mkdtemp(prefix="rgc-", dir="/dev/shm"))
    proc, ready = start_node(rt)
    try:
        ctl = ControlClient(rt / "ctl.sock", timeout=600)
        token = ctl.post("/token/mint", {"ops": ["put"], "ttl": 3600}).json()["token"]
        gateway = ready["gateway"]
        fill_s = fill(gateway, token, opts.objects)
        aged = age(rt / "data" / "objects")
        base, base_err, base_wall, _ = run_writers(
            gateway, token, "base", opts.writers, opts.seconds
        )

        def gc() -> dict:
            return ctl.post("/store/gc", {"grace": 3600}).json()

        during, gc_err, gc_wall, report = run_writers(
            gateway, token, "gc", opts.writers, 0, during=gc
        )
    finally:
        proc.terminate()
        proc.wait(30)
        (rt.parent / f"{rt.name}.toml").unlink(missing_ok=True)
    rows = [
        ("writes, no GC (baseline)", base, base_err, base_wall),
        ("writes during the GC", during, gc_err, gc_wall),
    ]
    print(f"filled {opts.objects} objects in {fill_s:.1f} s; aged {aged}")
    print(
        f"GC: removed {report['removed']} of {aged} in {report['seconds']:.2f} s "
        f"({report['removed'] / max(report['seconds'], 1e-9):,.0f} objects/s), "
        f"kept {report['kept_young']} young"
    )
    print(
        f"{'':28} {'writes':>7} {'/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'err':>4} {'p99 vs base':>11}"
    )
    base_p99 = pct(base, 99)
    for label, samples, errors, wall in rows:
        p99 = pct(samples, 99)
        print(
            f"{label:28} {len(samples):7d} {len(samples) / wall:7.0f} {pct(samples, 50):7.2f} "
            f"{p99:7.2f} {max(samples, default=float('nan')):7.2f} {errors:4d} "
            f"{p99 / base_p99:10.2f}x"
        )


if __name__ == "__main__":
    main()
