"""The kernel's supervisor: children as data, one generic loop, crash-only restarts.

``Supervisor`` (core) owns one ``Child`` loop (child) per service spec; ``RestartPolicy`` /
``CrashHistory`` (policy) decide restart delays and quarantine; a ``Launcher`` (launcher) starts
processes (``ExecLauncher``, or ``ForkServerLauncher``: forked from a preloaded zygote); services
call ``pdeathsig.arm_from_env()`` first thing so they die with the supervisor.

The names resolve lazily: services import ``kernel.supervisor.pdeathsig`` and ``ronctl run``
starts its zygote (``_zygote_start``) before the node's imports, and neither should pay for trio
and the whole supervisor just to reach one small submodule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

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

_WHERE = {
    "ChildProcess": "kernel.supervisor.launcher",
    "CrashHistory": "kernel.supervisor.policy",
    "Decision": "kernel.supervisor.policy",
    "ExecLauncher": "kernel.supervisor.launcher",
    "ForkServerLauncher": "kernel.supervisor.forkserver",
    "Launcher": "kernel.supervisor.launcher",
    "Quarantine": "kernel.supervisor.policy",
    "RespawnTiming": "kernel.supervisor.child",
    "Restart": "kernel.supervisor.policy",
    "RestartPolicy": "kernel.supervisor.policy",
    "Supervisor": "kernel.supervisor.core",
    "describe_returncode": "kernel.supervisor.child",
    "launcher_for": "kernel.supervisor.launcher",
    "serve_launcher": "kernel.supervisor.launcher",
}

if TYPE_CHECKING:
    from kernel.supervisor.child import RespawnTiming, describe_returncode
    from kernel.supervisor.core import Supervisor
    from kernel.supervisor.forkserver import ForkServerLauncher
    from kernel.supervisor.launcher import (
        ChildProcess,
        ExecLauncher,
        Launcher,
        launcher_for,
        serve_launcher,
    )
    from kernel.supervisor.policy import (
        CrashHistory,
        Decision,
        Quarantine,
        Restart,
        RestartPolicy,
    )


__getattr__, __dir__ = lazy_exports(globals(), _WHERE)
