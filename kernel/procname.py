"""Process names (``/proc/PID/comm``) that tell an operator which node process is which.

A service forked by the zygote keeps the zygote's command line and environment in ``/proc``
(both are the memory the kernel saw at ``exec``), so ``ps -ef`` would show every forked service as
``python -m kernel.launch.zygote``. The process name is the one label that can be changed
without privileges: services are named ``ron:<service>`` (the kernel keeps 15 bytes, so
``ron:`` + a service name fits), the zygote ``ron-zygote`` and its spare ``ron-spare``, a warm
spare of a service ``ron~<service>`` until it goes live; ``ps -e``,
``top`` and ``pgrep`` show them, and the chaos drill recognises service processes by them.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

from kernel._libc import prctl

__all__ = [
    "SERVICE_PREFIX",
    "SPARE",
    "SPARE_PREFIX",
    "ZYGOTE",
    "service_from_comm",
    "set_name",
    "set_service_name",
    "set_spare_name",
]

SERVICE_PREFIX = "ron:"
SPARE_PREFIX = "ron~"
ZYGOTE = "ron-zygote"
SPARE = "ron-spare"
_PR_SET_NAME = 15
_COMM_MAX = 15  # bytes, without the terminating NUL


def set_name(name: str) -> None:
    """Set this process's name (best effort: Linux only, silently truncated to 15 bytes)."""
    if not sys.platform.startswith("linux"):
        return
    raw = name.encode(errors="replace")[:_COMM_MAX]
    with contextlib.suppress(OSError, AttributeError):
        prctl()(_PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0)


def set_service_name(service: str) -> None:
    set_name(SERVICE_PREFIX + service)


def set_spare_name(service: str) -> None:
    """A warm spare of ``service`` (``ron~<service>``): not yet a service process, so the
    chaos drill and ``pgrep ron:`` do not count it."""
    set_name(SPARE_PREFIX + service)


def service_from_comm(comm: str) -> str | None:
    """The (possibly truncated) service name in a process name set by ``set_service_name``."""
    comm = comm.strip()
    return comm[len(SERVICE_PREFIX) :] if comm.startswith(SERVICE_PREFIX) else None
