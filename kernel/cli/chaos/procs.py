"""What /proc says about the node's processes: identity, state, parent, memory (Linux only).

A pid alone is not an identity (pids are reused), so a process is ``ProcId(pid, start)`` with the
start time in clock ticks since boot from ``/proc/PID/stat``. Reads are tiny files on procfs.
"""

from __future__ import annotations

import os

import attrs

from kernel import childenv, procname

__all__ = [
    "ProcId",
    "descendants_of",
    "identify",
    "is_alive",
    "rss_bytes",
    "service_of",
    "state_of",
]


@attrs.frozen
class ProcId:
    pid: int
    start: int  # field 22 of /proc/PID/stat: start time, clock ticks after boot


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after its last ')'
    return text.rsplit(")", 1)[1].split()


def identify(pid: int) -> ProcId | None:
    """The identity of the live process ``pid`` (None if there is no such process)."""
    fields = _stat_fields(pid)
    return None if fields is None else ProcId(pid, int(fields[19]))


def state_of(proc: ProcId) -> str | None:
    """One-letter state (``R``, ``S``, ``T``, ``Z``...) of *this* process, None once it is gone."""
    fields = _stat_fields(proc.pid)
    if fields is None or int(fields[19]) != proc.start:
        return None
    return fields[0]


def is_alive(proc: ProcId) -> bool:
    """True while the process exists and is not a zombie (a reused pid does not count)."""
    state = state_of(proc)
    return state is not None and state != "Z"


def descendants_of(pid: int) -> dict[int, str]:
    """pid -> state of every process below ``pid`` (children, grandchildren, ...)."""
    parent: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parent[int(entry)] = (int(fields[1]), fields[0])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        top = frontier.pop()
        for child, (ppid, state) in parent.items():
            if ppid == top and child not in found:
                found[child] = state
                frontier.append(child)
    return found


def service_of(pid: int, env_key: str = childenv.SERVICE) -> str | None:
    """The service name a node process runs as, if any: from the environment it was exec'd with,
    else from its process name (a service forked by the zygote keeps the zygote's environment in
    ``/proc``, but names itself; see ``kernel.procname``; the name may be cut to 15 bytes)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read()
    except OSError:
        return None
    prefix = env_key.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return procname.service_from_comm(comm)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes (``VmRSS``), None if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None
