"""Everything that starts a service process, apart from the policy that decides when.

``ExecLauncher`` (launcher) runs ``python -m <module>`` in a fresh interpreter;
``ForkServerLauncher`` (forkserver) forks it from a preloaded zygote (zygote, its wire, the
sibling fork and the idle spare); ``launcher_for`` / ``serve_launcher`` (choose) pick one by
``supervisor.spawn`` and run it for the node's lifetime. Services call
``pdeathsig.arm_from_env()`` first thing so they die with the supervisor.

The names resolve lazily: services import ``kernel.launch.pdeathsig`` and ``ronctl run`` starts
its zygote (``_zygote_start``) before the node's imports, and neither should pay for trio and
the fork server just to reach one small submodule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "ChildProcess",
    "ExecLauncher",
    "ForkServerLauncher",
    "Launcher",
    "describe_returncode",
    "launcher_for",
    "serve_launcher",
]

_WHERE = {
    "ChildProcess": "kernel.launch.launcher",
    "ExecLauncher": "kernel.launch.launcher",
    "ForkServerLauncher": "kernel.launch.forkserver",
    "Launcher": "kernel.launch.launcher",
    "describe_returncode": "kernel.launch.launcher",
    "launcher_for": "kernel.launch.choose",
    "serve_launcher": "kernel.launch.choose",
}

if TYPE_CHECKING:
    from kernel.launch.choose import launcher_for, serve_launcher
    from kernel.launch.forkserver import ForkServerLauncher
    from kernel.launch.launcher import ChildProcess, ExecLauncher, Launcher, describe_returncode


__getattr__, __dir__ = lazy_exports(globals(), _WHERE)
