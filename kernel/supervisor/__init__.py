"""The kernel's supervisor: children as data, one generic loop, crash-only restarts.

``Supervisor`` (core) owns one ``Child`` loop (child) per service spec; ``RestartPolicy`` /
``CrashHistory`` (policy) decide restart delays and quarantine; a ``Launcher`` (launcher) starts
processes; services call ``pdeathsig.arm_from_env()`` first thing so they die with the supervisor.
"""

from kernel.supervisor.child import RespawnTiming, describe_returncode
from kernel.supervisor.core import Supervisor
from kernel.supervisor.launcher import ChildProcess, ExecLauncher, Launcher
from kernel.supervisor.policy import CrashHistory, Decision, Quarantine, Restart, RestartPolicy

__all__ = [
    "ChildProcess",
    "CrashHistory",
    "Decision",
    "ExecLauncher",
    "Launcher",
    "Quarantine",
    "RespawnTiming",
    "Restart",
    "RestartPolicy",
    "Supervisor",
    "describe_returncode",
    "launcher_for",
]


def launcher_for(spawn: str) -> Launcher:
    """The launcher named by ``supervisor.spawn``; only ``"exec"`` exists for now."""
    if spawn == "exec":
        return ExecLauncher()
    raise ValueError(f"unknown supervisor.spawn {spawn!r}: expected 'exec'")
