"""The amnesia reaper: a micronode's keys and state do not outlive its supervisor, even a
``kill -9`` of it.

At start, a micronode's supervisor starts ``python -m kernel.reaper RUNTIME_DIR`` in its own
session (so no signal to the node's group reaches it) and keeps the write end of its stdin.
The reaper blocks on that pipe. When the supervisor is gone, however it went, the pipe ends;
the reaper then takes the runtime dir's lock (if a new node already holds it, that node cleaned
the dir itself and the reaper leaves), overwrites the key files with zeros, removes the whole
dir, and exits. After a clean stop the dir is already gone and it exits at once.

Guarantees: nothing of the node stays on tmpfs longer than the reaper's own start-up after the
supervisor died; the reaper holds no secret and writes nothing; it shows in ``ps`` as
``ron-reaper``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Reaper"]

LOCK_WAIT = 5.0


class Reaper:
    """The supervisor's handle on its reaper process."""

    def __init__(self, runtime_dir: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "kernel.reaper", str(runtime_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # not in the node's process group: a ^C there spares it
            close_fds=True,
        )

    def finish(self, timeout: float = 2.0) -> None:
        """After a clean stop (the dir removed): let it go and wait for it, so no process of
        the node outlives ``ronctl stop``."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout)


def reap(runtime_dir: Path) -> None:
    from kernel._owned_dir import LockHeld, take_lock
    from kernel.runtime import LOCK_NAME, wipe_secrets

    # The node's forked processes share the supervisor's lock until PDEATHSIG has ended them
    # (milliseconds): wait for them, a few seconds at most. Held longer: a new node took the
    # dir, and it wiped the old keys itself when it did (RuntimeDir.create).
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        if not runtime_dir.is_dir():
            return  # a clean stop removed it
        try:
            lock = take_lock(runtime_dir / LOCK_NAME)
            break
        except OSError:
            return  # it went away meanwhile
        except LockHeld:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)  # another process's lock: no event to wait on
    try:
        wipe_secrets(runtime_dir)
        shutil.rmtree(runtime_dir, ignore_errors=True)
    finally:
        os.close(lock)


def main() -> None:
    from kernel.procname import set_name

    set_name("ron-reaper")
    runtime_dir = Path(sys.argv[1])
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):  # nothing is ever written: this is the wait
            pass
    reap(runtime_dir)


if __name__ == "__main__":
    main()
