"""Node benchmark: ``ronctl run micronode`` start-up time and memory, per spawn mode and spares.

For each set-up (``forkserver`` with warm spares, the default; ``forkserver`` without them;
``exec``), ``--runs`` times: start a real micronode (amnesia
on, runtime dir on tmpfs, admin and gateway on ephemeral ports) and measure

* ``node_ready``: from starting the ``ronctl run`` process to its ``node_ready`` line on stdout;
* memory, ``--settle`` seconds after ready: the node process and every descendant (services, and
  the zygote in forkserver mode), summing ``Pss`` from ``/proc/PID/smaps_rollup`` (proportional
  set size: a page shared by N processes counts 1/N in each, so the sum is the real footprint) and,
  for comparison, ``Rss`` (which counts shared pages once per process). The default settle
  leaves the spares time to prepare (they wait a second after the node starts, then go one at a
  time), so their memory is counted.

    python bench/node.py [--runs 3] [--settle 4] [--profile micronode]

Prints one table; the last columns are PSS relative to forkserver without spares and to exec.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{p}/task/{task}/children").read_text()
                    todo.extend(int(c) for c in children.split())
    return out


def memory_kb(pids: set[int]) -> tuple[int, int]:
    """(total Pss, total Rss) in kB over ``pids`` (processes that vanished count 0)."""
    pss = rss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Pss":
                    pss += int(value.split()[0])
                elif key == "Rss":
                    rss += int(value.split()[0])
    return pss, rss


SETUPS = {  # name: (supervisor.spawn, supervisor.spares)
    "forkserver, spares": ("forkserver", True),
    "forkserver, no spares": ("forkserver", False),
    "exec": ("exec", False),
}


def one_run(profile: str, setup: str, settle: float) -> tuple[float, int, int, int]:
    """(seconds to node_ready, processes, Pss kB, Rss kB) for one node start."""
    rt = Path(
        tempfile.mkdtemp(prefix="rbn-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    )
    cfg = rt.parent / f"{rt.name}.toml"
    mode, spares = SETUPS[setup]
    cfg.write_text(
        f'[supervisor]\nspawn = "{mode}"\nspares = {str(spares).lower()}\n\n'
        '[gateway]\naddr = "127.0.0.1:0"\n\n[overlay]\naddr = "127.0.0.1:0"\n'
    )
    cmd = [sys.executable, "-m", "kernel.cli", "run", profile, "--admin-addr", "127.0.0.1:0"]
    cmd += ["--runtime-dir", str(rt), "--config", str(cfg)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        ready = time.monotonic() - started
        if b'"node_ready"' not in line:
            raise SystemExit(f"bench/node.py: the node did not become ready ({mode})")
        time.sleep(settle)
        pids = descendants(proc.pid)
        pss, rss = memory_kb(pids)
        return ready, len(pids), pss, rss
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(rt, ignore_errors=True)
        cfg.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=4.0, help="seconds after ready before PSS")
    ap.add_argument("--profile", default="micronode")
    args = ap.parse_args()
    results: dict[str, list[tuple[float, int, int, int]]] = {}
    for setup in SETUPS:
        results[setup] = [one_run(args.profile, setup, args.settle) for _ in range(args.runs)]
    exec_pss = statistics.median(r[2] for r in results["exec"])
    bare_pss = statistics.median(r[2] for r in results["forkserver, no spares"])
    head = (
        f"{'set-up':<21} {'runs':>4} | {'node_ready median (min-max) s':>30} | {'procs':>5} | "
        f"{'PSS total MB':>12} | {'RSS total MB':>12} | PSS vs no spares | PSS vs exec"
    )
    print(f"ronctl run {args.profile}: start-up and memory ({args.settle:g} s after node_ready)")
    print(head)
    print("-" * len(head))
    for setup, runs in results.items():
        ready = [r[0] for r in runs]
        span = f"{statistics.median(ready):.3f} ({min(ready):.3f}-{max(ready):.3f})"
        procs = statistics.median(r[1] for r in runs)
        pss = statistics.median(r[2] for r in runs)
        rss = statistics.median(r[3] for r in runs)
        print(
            f"{setup:<21} {len(runs):>4} | {span:>30} | {procs:>5.0f} | {pss / 1024:>12.1f} | "
            f"{rss / 1024:>12.1f} | {pss / bare_pss:>15.2f}x | {pss / exec_pss:.2f}x"
        )


if __name__ == "__main__":
    main()
