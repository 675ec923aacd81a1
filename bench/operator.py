"""Operator verbs benchmark: ``ronctl restart SERVICE`` against ``supervisorctl restart PROGRAM``.

What an operator waits for when they restart one service, measured from the command's start:

* ``command returns``: the CLI exits (both are Python programs; both include their start-up);
* ``new process ready``: the new process can serve. ``ronctl restart`` waits for exactly that
  (the service's Health after the old process drained), so the two are the same for us. For
  supervisord the child (``bench/_crasher.py``, which imports trio, pyzmq and msgpack, like a
  service) reports ``ready`` itself over a datagram socket; supervisord has no readiness, so
  ``supervisorctl`` returns after ``startsecs`` (default 1 s) whatever the child does.

Ours is a real micronode's svc-echo (forkserver spawn); supervisord runs two programs, one with
its default ``startsecs=1`` and one with ``startsecs=0``.

    python bench/operator.py [--runs 10]   (supervisord: pip install -e '.[bench]')
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = "bench._crasher"


def pct(values: list[float], q: int) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def ours(runs: int) -> tuple[list[float], list[float]]:
    rt = Path(tempfile.mkdtemp(prefix="rop-", dir="/dev/shm"))
    cfg = rt.parent / f"{rt.name}.toml"
    cfg.write_text('[gateway]\naddr = "127.0.0.1:0"\n\n[overlay]\naddr = "127.0.0.1:0"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ronctl = [sys.executable, "-m", "kernel.cli"]
    node = subprocess.Popen(
        [
            *ronctl,
            "run",
            "micronode",
            "--admin-addr",
            "127.0.0.1:0",
            "--runtime-dir",
            str(rt),
            "--config",
            str(cfg),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    assert node.stdout is not None
    json.loads(node.stdout.readline())
    times: list[float] = []
    try:
        for _ in range(runs):
            began = time.monotonic()
            subprocess.run(
                [*ronctl, "restart", "svc-echo", "--runtime-dir", str(rt)],
                check=True,
                capture_output=True,
                cwd=ROOT,
                env=env,
            )
            times.append(time.monotonic() - began)
    finally:
        node.terminate()
        node.wait(30)
        shutil.rmtree(rt, ignore_errors=True)
        cfg.unlink(missing_ok=True)
    return times, times  # it returns once the new process is ready


def theirs(supervisord: str, runs: int, startsecs: int) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="rsv-"))
    reports = tmp / "ready.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(reports))
    conf = tmp / "supervisord.conf"
    conf.write_text(
        f"[supervisord]\nnodaemon=true\nlogfile={tmp}/supervisord.log\npidfile={tmp}/s.pid\n\n"
        f"[unix_http_server]\nfile={tmp}/supervisor.sock\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=unix://{tmp}/supervisor.sock\n\n"
        f"[program:svc]\ncommand={sys.executable} -m {CHILD}\ndirectory={ROOT}\n"
        f"startsecs={startsecs}\nautorestart=true\n"
        f'environment=RB_SOCK="{reports}",RB_LIFE="0",PYTHONPATH="{ROOT}"\n'
    )
    daemon = subprocess.Popen(
        [supervisord, "-n", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ctl = [str(Path(supervisord).with_name("supervisorctl")), "-c", str(conf)]
    returned: list[float] = []
    ready: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctl, "status", "svc"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("supervisord did not start svc")
            time.sleep(0.1)  # polling another process with a deadline
        sock.settimeout(30)
        _drain_until(sock, "ready")
        for _ in range(runs):
            began = time.monotonic()
            subprocess.run([*ctl, "restart", "svc"], check=True, capture_output=True)
            returned.append(time.monotonic() - began)
            ready.append(_drain_until(sock, "ready") - began)
    finally:
        daemon.terminate()
        daemon.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return returned, ready


def _drain_until(sock: socket.socket, kind: str) -> float:
    """The CLOCK_MONOTONIC time of the next ``kind`` report."""
    while True:
        got, _pid, at = sock.recv(256).decode().split()
        if got == kind:
            return float(at)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--supervisord", default=shutil.which("supervisord"))
    opts = ap.parse_args()
    rows = [("ronctl restart svc-echo", *ours(opts.runs))]
    if opts.supervisord:
        for secs in (1, 0):
            label = f"supervisorctl restart (startsecs={secs})"
            rows.append((label, *theirs(opts.supervisord, opts.runs, secs)))
    else:
        print("supervisord not installed (pip install -e '.[bench]'): ours only")
    best_ready = min(pct(r[2], 50) for r in rows[1:]) if len(rows) > 1 else float("nan")
    print(f"{'':40} {'returns p50':>12} {'p95':>7} {'ready p50':>10} {'p95':>7} {'ready vs':>9}")
    for label, returned, ready in rows:
        print(
            f"{label:40} {pct(returned, 50) * 1000:10.0f}ms {pct(returned, 95) * 1000:5.0f}ms "
            f"{pct(ready, 50) * 1000:8.0f}ms {pct(ready, 95) * 1000:5.0f}ms "
            f"{pct(ready, 50) / best_ready:8.2f}x"
        )
    print(f"(runs: {opts.runs}; 'ready vs': ready p50 over the best supervisorctl row's)")


if __name__ == "__main__":
    main()
