"""Respawn benchmark: our supervisor (fork server, exec) side by side with circus and supervisord.

Part 1, the same crashing child for every tool (``bench/_crasher.py``: it imports trio, pyzmq and
msgpack before it is "ready", then crashes with exit 3 after ``--life`` seconds). Each child reports
start / ready / crash times (CLOCK_MONOTONIC) over a Unix datagram socket, so every tool is measured
the same way, from the child's own clock:

* crash -> respawn: the crash report of one process to the first Python line of the next;
* crash -> ready: the crash report to the next process's ``ready``;
* idle CPU: the tool's own processes (ours: supervisor + zygote + its spare), child excluded, while
  the child runs without crashing, over ``--idle`` seconds (from /proc utime + stime).

Tools: ours with ``spawn=forkserver`` and ``spawn=exec`` (a real ``Supervisor`` in its own process,
restart policy set so every crash restarts at once), circus with its default ``check_delay`` and
with ``check_delay=0.01``, supervisord (``startsecs=0``, ``autorestart``). circus and supervisord
come from the ``bench`` extra (``pip install -e '.[bench]'``) or ``--circusd`` / ``--supervisord``;
a tool that is not installed gets a row saying so.

Part 2: every real service of a micronode and a macronode (``bench/_respawn_node.py``).
``svc-echo`` is ``kill -9``ed (crash = the kill), respawn = its ``service_spawned`` log line,
ready = its ``Health{ok}`` seen on the bus after the ``ServiceCrashed``.

    python bench/respawn.py [--crashes 50] [--life 0.2] [--idle 5] [--only ours,circus,...]

Prints one table; "vs best other" is (best other tool's crash->ready p95) / (this row's p95).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD_MODULE = "bench._crasher"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    name: str
    respawn: list[float] = field(default_factory=list)  # ms
    ready: list[float] = field(default_factory=list)  # ms
    idle_cpu: float | None = None  # percent of one core
    ours: bool = False
    note: str = ""


def pct(data: list[float], p: int) -> float:
    if len(data) < 2:
        return data[0] if data else float("nan")
    return statistics.quantiles(data, n=100, method="inclusive")[p - 1]


# ---- the child's reports ------------------------------------------------------------------------


class Reports:
    """The datagram socket children report to, and the measurements made from it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.child_pids: set[int] = set()

    def next(self, timeout: float) -> tuple[str, int, float] | None:
        self.sock.settimeout(timeout)
        try:
            raw = self.sock.recv(256)
        except TimeoutError:
            return None
        kind, pid, at = raw.decode().split()
        self.child_pids.add(int(pid))
        return kind, int(pid), float(at)

    def drain(self) -> None:
        while self.next(0.05) is not None:
            pass

    def cycles(self, row: Row, crashes: int, timeout: float) -> None:
        """Collect ``crashes`` complete crash -> respawn -> ready cycles into ``row``."""
        crash: tuple[int, float] | None = None
        new_pid: int | None = None
        deadline = time.monotonic() + timeout
        while len(row.ready) < crashes:
            left = deadline - time.monotonic()
            msg = self.next(max(left, 0.001))
            if msg is None:
                row.note = f"timed out after {len(row.ready)} crashes"
                return
            kind, pid, at = msg
            if kind == "crash":
                crash, new_pid = (pid, at), None
            elif kind == "start" and crash is not None and pid != crash[0]:
                row.respawn.append((at - crash[1]) * 1000)
                new_pid = pid
            elif kind == "ready" and crash is not None and pid == new_pid:
                row.ready.append((at - crash[1]) * 1000)
                crash = None

    def wait_ready(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.next(left)
            if msg is not None and msg[0] == "ready":
                return msg[1]
        return None


# ---- CPU of a process tree ----------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        for task in _safe_listdir(f"/proc/{p}/task"):
            with contextlib.suppress(OSError):
                todo.extend(
                    int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()
                )
    return out


def _safe_listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _cpu_ticks(pids: set[int]) -> int:
    total = 0
    for p in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def idle_cpu(root_pid: int, exclude: set[int], seconds: float) -> float:
    """CPU% (of one core) used by ``root_pid`` and its descendants, minus ``exclude``."""
    pids = _descendants(root_pid) - exclude
    t0, c0 = time.monotonic(), _cpu_ticks(pids)
    time.sleep(seconds)
    t1, c1 = time.monotonic(), _cpu_ticks(pids)
    return 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0)


# ---- the tools ----------------------------------------------------------------------------------


def child_env(sock: Path, life: float) -> dict[str, str]:
    return {
        "RB_SOCK": str(sock),
        "RB_LIFE": str(life),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def start_ours(mode: str, sock: Path, life: float, tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **child_env(sock, life)}
    return subprocess.Popen(
        [sys.executable, __file__, "--serve-ours", mode],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"ours-{mode}.log", "wb"),
    )


def start_circus(
    circusd: str, check_delay: float | None, sock: Path, life: float, tmp: Path
) -> subprocess.Popen[bytes]:
    env_lines = "\n".join(f"{k} = {v}" for k, v in child_env(sock, life).items())
    delay = f"check_delay = {check_delay}\n" if check_delay is not None else ""
    ini = tmp / "circus.ini"
    ini.write_text(
        f"[circus]\n{delay}endpoint = ipc://{tmp}/circus-ctl.sock\n"
        f"pubsub_endpoint = ipc://{tmp}/circus-pub.sock\nstatsd = False\n\n"
        f"[watcher:crasher]\ncmd = {sys.executable} -m {CHILD_MODULE}\nworking_dir = {ROOT}\n"
        "numprocesses = 1\nmax_retry = -1\nrespawn = True\ncopy_env = True\n\n"
        f"[env:crasher]\n{env_lines}\n"
    )
    return subprocess.Popen(
        [circusd, str(ini)],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "circus.log", "wb"),
    )


def start_supervisord(
    supervisord: str, sock: Path, life: float, tmp: Path
) -> subprocess.Popen[bytes]:
    env = ",".join(f'{k}="{v}"' for k, v in child_env(sock, life).items())
    conf = tmp / "supervisord.conf"
    conf.write_text(
        f"[supervisord]\nnodaemon=true\nlogfile={tmp}/supervisord.log\n"
        f"pidfile={tmp}/supervisord.pid\nuser={_user()}\n\n"
        f"[program:crasher]\ncommand={sys.executable} -m {CHILD_MODULE}\ndirectory={ROOT}\n"
        "startsecs=0\nautorestart=true\nstartretries=1000000\n"
        f"stdout_logfile={tmp}/crasher.out\nstderr_logfile={tmp}/crasher.err\n"
        f"environment={env}\n"
    )
    return subprocess.Popen(
        [supervisord, "-n", "-c", str(conf)],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "supervisord.stderr", "wb"),
    )


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def stop(proc: subprocess.Popen[bytes], reports: Reports) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in reports.child_pids:  # a tool that leaves its child behind: clean up after it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


Starter = Callable[[Path, float, Path], subprocess.Popen[bytes]]


def measure_tool(row: Row, start: Starter, args: argparse.Namespace) -> Row:
    with tempfile.TemporaryDirectory(prefix="rb-", dir=_shm()) as d:
        tmp = Path(d)
        reports = Reports(tmp / "r.sock")
        proc = start(reports.path, args.life, tmp)
        try:
            if reports.wait_ready(60) is None:
                row.note = "child never became ready"
                return row
            reports.cycles(row, args.crashes, timeout=args.crashes * 10 + 30)
        finally:
            stop(proc, reports)
        reports.drain()
        proc = start(reports.path, 0, tmp)  # idle: a child that never crashes
        try:
            if reports.wait_ready(60) is not None:
                time.sleep(1.0)  # let start-up work settle
                row.idle_cpu = idle_cpu(proc.pid, reports.child_pids, args.idle)
        finally:
            stop(proc, reports)
    return row


def _shm() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


# ---- our supervisor, in its own process (--serve-ours MODE) -------------------------------------


def serve_ours(mode: str) -> None:
    import trio

    from kernel.config import Config, ServiceSpec, SupervisorConfig
    from kernel.health import HealthState
    from kernel.launch import ExecLauncher, ForkServerLauncher, serve_launcher
    from kernel.supervisor import Supervisor

    def quiet(*_a: object, **_k: object) -> None:
        pass

    class NullBus:
        def publish(self, _event: object) -> bool:
            return True

    # every crash comes after a "stable" run and no cap is ever hit: restart at once, always
    cfg = Config(
        supervisor=SupervisorConfig(stable_after=0.05, restart_window=0.001, heartbeat_timeout=0.0),
        services=(ServiceSpec(name="crasher", module=CHILD_MODULE),),
    )
    env = {k: os.environ[k] for k in ("RB_SOCK", "RB_LIFE", "PYTHONPATH")}

    async def main() -> None:
        launcher = (
            ForkServerLauncher(preload=[CHILD_MODULE], log=quiet, output=quiet)
            if mode == "forkserver"
            else ExecLauncher()
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_launcher, launcher)
            sup = Supervisor(
                cfg,
                health=HealthState(),
                bus=NullBus(),
                launcher=launcher,
                log=quiet,
                output=quiet,
                env_for=lambda _spec: env,
            )
            await sup.run()

    trio.run(main)


# ---- part 2: the real node (bench/_respawn_node.py) --------------------------------------------


def node_tables(args: argparse.Namespace) -> None:
    """Every service of each profile, with warm spares on and off, in one run; a table each."""
    import trio

    from bench._respawn_node import measure_profile

    for profile in args.profiles.split(","):
        runs = {}
        for spares in args.spares.split(","):
            runs[spares] = trio.run(
                partial(
                    measure_profile,
                    profile,
                    kills=args.crashes,
                    objects=args.objects,
                    pace=args.pace,
                    spares=spares == "on",
                )
            )
        print(
            f"\n## {profile}: kill -9 -> Health{{ok}} / -> /readyz 200, ms "
            f"({args.crashes} kills per service, {args.objects:,} objects stored)\n"
        )
        print(
            "| service | spares | crash seen p50/p95 | Health p50/p95/p99 | /readyz p50/p95/p99 "
            "| Health p95 vs spares off |"
        )
        print("|---|---|---|---|---|---|")
        for i in range(len(runs[next(iter(runs))])):
            for spares, rows in runs.items():
                t = rows[i]
                if t.failed or not t.health:
                    print(f"| {t.service} | {spares} | failed: {t.failed or 'no kill'} | | | |")
                    continue
                crash = "/".join(f"{pct(t.crashed, p):.1f}" for p in (50, 95))
                health = "/".join(f"{pct(t.health, p):.1f}" for p in (50, 95, 99))
                readyz = "/".join(f"{pct(t.readyz, p):.1f}" for p in (50, 95, 99))
                off = runs.get("off")
                ratio = "-"
                if off is not None and spares != "off" and off[i].health:
                    ratio = f"{pct(off[i].health, 95) / pct(t.health, 95):.1f}x faster"
                print(f"| {t.service} | {spares} | {crash} | {health} | {readyz} | {ratio} |")


# ---- the table ----------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    others = [r for r in rows if not r.ours and r.ready]
    best = min(others, key=lambda r: pct(r.ready, 95)) if others else None
    head = (
        f"{'supervisor, config':<44} {'n':>3} | {'crash->respawn p50/p95/p99 ms':>30} | "
        f"{'crash->ready p50/p95/p99 ms':>28} | {'idle CPU':>8} | vs best other (p95)"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if not r.ready:
            print(f"{r.name:<44} {'-':>3} | {r.note}")
            continue
        trip = "/".join(f"{pct(r.respawn, p):.1f}" for p in (50, 95, 99))
        ready = "/".join(f"{pct(r.ready, p):.1f}" for p in (50, 95, 99))
        cpu = f"{r.idle_cpu:.2f}%" if r.idle_cpu is not None else "-"
        if best is None or r is best:
            ratio = "(best other)" if r is best else "-"
        else:
            ratio = f"{pct(best.ready, 95) / pct(r.ready, 95):.1f}x"
        print(f"{r.name:<44} {len(r.ready):>3} | {trip:>30} | {ready:>28} | {cpu:>8} | {ratio}")
        if r.note:
            print(f"{'':<44}       note: {r.note}")
    if best is not None:
        print(f"\nbest other tool at p95: {best.name} ({pct(best.ready, 95):.1f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crashes", type=int, default=50)
    ap.add_argument("--life", type=float, default=0.2, help="seconds the child lives when ready")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measurement")
    ap.add_argument(
        "--only",
        default="ours,circus,supervisord,node",
        help="comma-separated subset of ours,circus,supervisord,node",
    )
    ap.add_argument("--profiles", default="micronode,macronode", help="node part: profiles")
    ap.add_argument("--spares", default="on,off", help="node part: warm spares on, off or both")
    ap.add_argument("--objects", type=int, default=100_000, help="node part: objects stored")
    ap.add_argument("--pace", type=float, default=0.3, help="node part: s between kills")
    ap.add_argument("--circusd", default=shutil.which("circusd"))
    ap.add_argument("--supervisord", default=shutil.which("supervisord"))
    ap.add_argument("--serve-ours", choices=["forkserver", "exec"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_ours:
        serve_ours(args.serve_ours)
        return
    only = set(args.only.split(","))
    rows: list[Row] = []
    if "ours" in only:
        for mode in ("forkserver", "exec"):
            row = Row(f"ours, spawn={mode}", ours=True)
            rows.append(measure_tool(row, partial(start_ours, mode), args))
    if "circus" in only:
        for delay in (None, 0.01):
            name = f"circus, check_delay={'5 (default)' if delay is None else delay}"
            if not args.circusd:
                rows.append(Row(name, note="circusd not installed: pip install -e '.[bench]'"))
                continue
            rows.append(
                measure_tool(
                    Row(name),
                    partial(start_circus, args.circusd, delay),
                    args,
                )
            )
    if "supervisord" in only:
        name = "supervisord, startsecs=0 autorestart"
        if not args.supervisord:
            rows.append(Row(name, note="supervisord not installed: pip install -e '.[bench]'"))
        else:
            starter = partial(start_supervisord, args.supervisord)
            rows.append(measure_tool(Row(name), starter, args))
    if rows:
        print_table(rows)
    if "node" in only:
        node_tables(args)


if __name__ == "__main__":
    main()
