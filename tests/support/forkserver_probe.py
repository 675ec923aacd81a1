"""A test-only child that reports what it inherited, as one JSON line on stdout, then sleeps.

Run by a launcher as ``python -m tests.support.forkserver_probe`` (or forked by the zygote, which
must make the two indistinguishable). The report: pid, parent pid, session id, parent-death
signal, the open descriptors (``/proc/self/fd`` -> target) and thread count as the service's
code first sees them, a fresh random number, the SIGINT/SIGTERM handlers, ``RON_*`` environment
and argv[0].
A listening socket named by ``RON_LISTEN_FDS`` is accepted on once and answered with b"probe".

``python -m tests.support.forkserver_probe supervisor`` instead runs a real ``Supervisor`` with a
``ForkServerLauncher`` and one probe child, printing ``zygote <pid>`` for each ready zygote and
``probe <report>`` for each probe (other output: ``<service> <line>``), so tests can
``kill -9`` the supervisor or the zygote.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import socket
import sys

_PR_GET_PDEATHSIG = 2


def _pdeathsig() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    sig = ctypes.c_int(0)
    libc.prctl(_PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0)
    return sig.value


def report() -> dict[str, object]:
    fds: dict[str, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the fd listdir itself used
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "pdeathsig": _pdeathsig(),
        "fds": fds,
        "threads": len(os.listdir("/proc/self/task")),
        "rand": random.getrandbits(64),
        "sigint": repr(signal.getsignal(signal.SIGINT)),
        "sigterm": repr(signal.getsignal(signal.SIGTERM)),
        "env": {k: v for k, v in os.environ.items() if k.startswith("RON_") and k != "RON_CONFIG"},
        "argv0": sys.argv[0],
        "name": __name__,
    }


def supervisor() -> None:
    import trio

    from kernel.config import Config, ServiceSpec, SupervisorConfig
    from kernel.health import HealthState
    from kernel.launch import ForkServerLauncher
    from kernel.supervisor import Supervisor
    from tests.support.children import FakeBus, FakeLog

    def output(service: str, line: bytes) -> None:
        print(f"{service} {line.decode()}", flush=True)

    def log(event: str, **fields: object) -> None:
        if event == "zygote_ready":
            print(f"zygote {fields['pid']}", flush=True)

    cfg = Config(
        supervisor=SupervisorConfig(heartbeat_timeout=0.0),
        services=(ServiceSpec(name="probe", module=__spec__.name),),
    )

    async def run() -> None:
        launcher = ForkServerLauncher(preload=[__spec__.name], log=log, output=output)
        async with trio.open_nursery() as nursery:
            await nursery.start(launcher.run)
            sup = Supervisor(
                cfg,
                health=HealthState(),
                bus=FakeBus(),
                launcher=launcher,
                log=FakeLog(),
                output=output,
            )
            await sup.run()

    trio.run(run)


def main() -> None:
    from kernel.launch.pdeathsig import arm_from_env

    if sys.argv[1:] == ["supervisor"]:
        supervisor()
        return

    arm_from_env()
    print(json.dumps(report()), flush=True)
    raw = os.environ.get("RON_LISTEN_FDS", "")
    if raw:
        with socket.socket(fileno=int(raw.split(",")[0])) as lsock:
            conn, _ = lsock.accept()
            with conn:
                conn.sendall(b"probe")
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
