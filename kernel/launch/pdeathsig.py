"""Make a child die with its supervisor, even when the supervisor is killed with SIGKILL.

A service calls ``arm_from_env()`` (or ``arm(pid)``) as the first thing it does. On Linux this
asks the kernel to SIGKILL us when our parent goes away (``prctl(PR_SET_PDEATHSIG, SIGKILL)``),
then closes the race where the parent died before the prctl: if our parent is no longer the
expected pid we exit at once.

Caveat that shapes the launcher: Linux delivers the signal when the *thread* that forked us exits,
not the parent process. ``trio.lowlevel.open_process`` forks from a worker thread that trio retires
after 10 s idle, which SIGKILLs the child (measured). So the launcher forks from the trio thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import warnings
from collections.abc import Mapping

from kernel import childenv
from kernel._libc import prctl

__all__ = ["arm", "arm_from_env"]

_PR_SET_PDEATHSIG = 1
# exit code when the supervisor is already gone: nobody will read it, but make it non-zero
_ORPHAN_EXIT = 70


def arm(expected_parent_pid: int) -> None:
    """Arrange to be SIGKILLed when the parent dies; exit now if it already has.

    Returns only if the parent is alive and is ``expected_parent_pid``. A no-op (with a
    ``RuntimeWarning``) where the platform has no PDEATHSIG.
    """
    if not sys.platform.startswith("linux"):
        warnings.warn(
            "parent-death signal is Linux-only: this child may outlive its supervisor",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    if prctl()(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
    if os.getppid() != expected_parent_pid:
        os._exit(_ORPHAN_EXIT)


def arm_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """``arm()`` with the pid the launcher put in ``RON_PARENT_PID``.

    Returns False (and does nothing) when the variable is absent, i.e. the service was started by
    hand rather than by a supervisor.
    """
    env = os.environ if environ is None else environ
    raw = env.get(childenv.PARENT_PID)
    if raw is None:
        return False
    arm(int(raw))
    return True
