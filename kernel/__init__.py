"""The kernel's frozen public API (DESIGN.md §3): exactly these six names.

Everything else in ``kernel`` (supervisor, config loading, admin plane, CLI) is internal to the
node; services and tools build on these names and on ``ipc``. The names resolve lazily so that
``ronctl --help`` and other light entry points do not pay for importing zmq, trio and
prometheus_client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = ["Bus", "Config", "HealthState", "KernelEvent", "Metrics", "wait_for_ctrl_c"]

_WHERE = {
    "Bus": "ipc.bus",
    "Config": "kernel.config",
    "HealthState": "kernel.health",
    "KernelEvent": "ipc.events",
    "Metrics": "kernel.metrics",
    "wait_for_ctrl_c": "kernel.signals",
}

if TYPE_CHECKING:
    from ipc.bus import Bus
    from ipc.events import KernelEvent
    from kernel.config import Config
    from kernel.health import HealthState
    from kernel.metrics import Metrics
    from kernel.signals import wait_for_ctrl_c


__getattr__, __dir__ = lazy_exports(globals(), _WHERE)
