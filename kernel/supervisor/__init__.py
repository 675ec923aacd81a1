"""The kernel's supervisor: children as data, one generic loop, crash-only restarts.

``Supervisor`` (core) owns one ``Child`` loop (child) per service spec; ``RestartPolicy`` /
``CrashHistory`` (policy) decide restart delays and quarantine; a ``Launcher`` (launcher) starts
processes (``ExecLauncher``, or ``ForkServerLauncher``: forked from a preloaded zygote); services
call ``pdeathsig.arm_from_env()`` first thing so they die with the supervisor.
"""

from collections.abc import Iterable

import trio

from kernel.supervisor.child import RespawnTiming, describe_returncode
from kernel.supervisor.core import Supervisor
from kernel.supervisor.forkserver import ForkServerLauncher
from kernel.supervisor.launcher import ChildProcess, ExecLauncher, Launcher
from kernel.supervisor.policy import CrashHistory, Decision, Quarantine, Restart, RestartPolicy

__all__ = [
    "ChildProcess",
    "CrashHistory",
    "Decision",
    "ExecLauncher",
    "ForkServerLauncher",
    "Launcher",
    "Quarantine",
    "RespawnTiming",
    "Restart",
    "RestartPolicy",
    "Supervisor",
    "describe_returncode",
    "launcher_for",
    "serve_launcher",
]


def launcher_for(spawn: str, *, preload: Iterable[str] = ()) -> Launcher:
    """The launcher named by ``supervisor.spawn``; ``preload``: modules a fork server imports
    up front (the profile's service modules). Start it with ``serve_launcher``."""
    if spawn == "exec":
        return ExecLauncher()
    if spawn == "forkserver":
        return ForkServerLauncher(preload=preload)
    raise ValueError(f"unknown supervisor.spawn {spawn!r}: expected 'exec' or 'forkserver'")


async def serve_launcher(
    launcher: Launcher, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run what the launcher needs while the node runs (a fork server's zygote); use with
    ``nursery.start``: started once it can spawn, returns at once for launchers that need nothing.
    """
    run = getattr(launcher, "run", None)
    if run is None:
        task_status.started()
        return
    await run(task_status=task_status)
