"""Which launcher a node uses (``supervisor.spawn``), and running it for the node's lifetime.

Apart from ``launcher`` and ``forkserver`` so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

from kernel.launch._zygote_start import StartedZygote
from kernel.launch.forkserver import ForkServerLauncher
from kernel.launch.launcher import ExecLauncher, Launcher

__all__ = ["launcher_for", "serve_launcher"]


def launcher_for(
    spawn: str,
    *,
    preload: Iterable[str] = (),
    prestarted: StartedZygote | None = None,
    spares: bool = False,
) -> Launcher:
    """The launcher named by ``supervisor.spawn``; ``preload``: modules a fork server imports
    up front (the profile's service modules); ``prestarted``: a zygote already started for it;
    ``spares``: warm spares (``supervisor.spares``). Both ignored by exec. Start the launcher
    with ``serve_launcher``."""
    if spawn == "exec":
        return ExecLauncher()
    if spawn == "forkserver":
        return ForkServerLauncher(preload=preload, prestarted=prestarted, spares=spares)
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
