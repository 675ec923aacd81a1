"""The kernel's supervisor: children as data, one generic loop, crash-only restarts.

``Supervisor`` (core) owns one ``Child`` loop (child) per service spec; ``RestartPolicy`` /
``CrashHistory`` (policy) decide restart delays and quarantine. Starting processes is not its
business: it is handed a ``kernel.launch.Launcher``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "CrashHistory",
    "Decision",
    "Quarantine",
    "RespawnTiming",
    "Restart",
    "RestartPolicy",
    "Supervisor",
]

_WHERE = {
    "CrashHistory": "kernel.supervisor.policy",
    "Decision": "kernel.supervisor.policy",
    "Quarantine": "kernel.supervisor.policy",
    "RespawnTiming": "kernel.supervisor.child",
    "Restart": "kernel.supervisor.policy",
    "RestartPolicy": "kernel.supervisor.policy",
    "Supervisor": "kernel.supervisor.core",
}

if TYPE_CHECKING:
    from kernel.supervisor.child import RespawnTiming
    from kernel.supervisor.core import Supervisor
    from kernel.supervisor.policy import CrashHistory, Decision, Quarantine, Restart, RestartPolicy


__getattr__, __dir__ = lazy_exports(globals(), _WHERE)
