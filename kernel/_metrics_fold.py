"""Keep the node's metrics directory small: fold the sample files of dead processes into one.

prometheus_client's multiprocess mode gives every process its own sample files and keeps them
after the process is gone, so counters stay monotonic across restarts. A node that restarts its
services thousands of times (a restart storm, a flapping service over weeks) would pile up
thousands of files: RAM on a micronode's tmpfs, and a scrape that reads them all. Here the
counts of a dead process's files are added into one ``<type>_archive.db`` per type, and its files
are removed: the totals a scrape reports are unchanged, and the directory holds the live
processes' files plus at most three archives.

Why files are named by process *instance* (``instance_id``: pid and start time) rather than pid:
a pid is reused, and a new process that reopened a dead one's file while it was being folded
would lose its counts. ``pid.starttime`` names one process for the lifetime of the machine, so
a file whose instance is gone is never written again and folding it cannot race a writer.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

__all__ = ["InstanceId", "fold_dead", "instance_alive"]

# types whose values add up across processes
_SUMMED = ("counter", "histogram", "summary")
# gauges that count what live processes hold (a dead process holds nothing): files dropped
_LIVE_GAUGES = ("gauge_livesum", "gauge_liveall", "gauge_livemax", "gauge_livemin")
ARCHIVE = "archive"


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


# this process's PID.START, once asked; forgotten in every forked child (os.fork, and the
# zygote's sibling fork, which runs the same at-fork callbacks)
_THIS_PROCESS: dict[str, str] = {}
os.register_at_fork(after_in_child=_THIS_PROCESS.clear)


class InstanceId:
    """``process_identifier`` for ``prometheus_client.values.MultiProcessValue``: ``PID.START``.

    Called on every metric update (several per HTTP request): cached for the process, without
    even a ``getpid`` per call (4-5 % of the gateway's CPU per GET in a profile); a fork
    forgets it at once. It never contains ``_``, which the collector splits file names on.
    """

    def __call__(self) -> str:
        ident = _THIS_PROCESS.get("id")
        if ident is None:
            pid = os.getpid()
            ident = _THIS_PROCESS["id"] = f"{pid}.{_start_ticks(pid) or 0}"
        return ident


def instance_alive(instance: str) -> bool:
    """True unless the process ``PID.START`` is certainly gone (anything unparsable: alive)."""
    pid, _, start = instance.partition(".")
    if not (pid.isdigit() and start.isdigit()):
        return True
    return _start_ticks(int(pid)) == int(start)


def fold_dead(directory: Path) -> int:
    """Fold every dead instance's counter/histogram/summary file into its type's archive, and
    drop its live-mode gauge files (what it held went with it).

    Returns how many files were folded. Not safe against a concurrent scrape of the same
    directory (a file counted in both places for a moment): callers serialise the two.
    """
    folded = 0
    for path in sorted(directory.glob("*.db")):
        live = next((g for g in _LIVE_GAUGES if path.stem.startswith(g + "_")), None)
        if live is not None:  # e.g. conn_inflight of a dead process: its connections are gone
            if not instance_alive(path.stem[len(live) + 1 :]):
                path.unlink()
                folded += 1
            continue
        typ, _, instance = path.stem.partition("_")
        if typ not in _SUMMED or instance == ARCHIVE or instance_alive(instance):
            continue
        values = MmapedDict.read_all_values_from_file(str(path))
        archive = MmapedDict(str(directory / f"{typ}_{ARCHIVE}.db"))
        try:
            for key, value, _timestamp, _pos in values:
                total, _ = archive.read_value(key)
                archive.write_value(key, total + value, 0.0)
        finally:
            archive.close()
        path.unlink()
        folded += 1
    return folded
