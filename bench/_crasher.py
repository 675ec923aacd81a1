"""The crashing child that every supervisor in ``bench/respawn.py`` runs (``python -m
bench._crasher``, or forked from our zygote, which preloads this module).

It reports three moments as datagrams ``KIND PID T`` to the Unix socket ``$RB_SOCK``, with ``T`` on
CLOCK_MONOTONIC (system-wide, so the bench compares times taken in different processes):

* ``start``: its first line of Python ran (an exec'd child has started its interpreter by then);
* ``ready``: it has imported trio, pyzmq and msgpack, as a real service must before serving
  (already imported in a forked child: that is the point of the zygote);
* ``crash``: just before it exits 3, ``$RB_LIFE`` seconds after ready (0 or less: never).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time


def main() -> None:
    started = time.monotonic()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    addr = os.environ["RB_SOCK"]

    def report(kind: str, at: float) -> None:
        with contextlib.suppress(OSError):  # the bench is gone: behave the same anyway
            sock.sendto(f"{kind} {os.getpid()} {at!r}".encode(), addr)

    report("start", started)
    import msgpack  # noqa: F401
    import trio  # noqa: F401
    import zmq  # noqa: F401

    report("ready", time.monotonic())
    life = float(os.environ.get("RB_LIFE", "0.2"))
    if life <= 0:
        while True:
            time.sleep(3600)
    time.sleep(life)
    report("crash", time.monotonic())
    os._exit(3)


if __name__ == "__main__":
    main()
