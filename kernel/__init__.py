"""The kernel: supervisor, config, bus wiring, admin and control planes, CLI (DESIGN.md §3).

Two surfaces, both checked:

- **For tools and embedders**, this package exports six names (``__all__``): ``Bus``, ``Config``,
  ``HealthState``, ``KernelEvent``, ``Metrics``, ``wait_for_ctrl_c``. They resolve lazily so
  that ``ronctl --help`` and other light entry points do not pay for zmq, trio and
  prometheus_client.
- **For services** (``services/*``), these modules and nothing else of the kernel
  (``lint-imports``: "Services use only the kernel's service surface"):

  ``kernel.service`` (``run_service``, ``ServiceContext``: the process harness);
  ``kernel.exposes`` (what a service declares: metrics, admin routes, roles);
  ``kernel.admin_calls`` (answering the admin routes it declared);
  ``kernel.protocol_handler`` (a typed protocol on its command socket);
  ``kernel.logs``, ``kernel.metrics`` (the node's JSON logs and metrics);
  ``kernel.config``, ``kernel.config.services`` (the config model, strict settings);
  ``kernel.group_commit`` (many requests, one fsync); ``kernel.key_feed``, ``kernel.identity``
  (keys and the node id from the identity service); ``kernel.heap`` (giving memory back);
  ``kernel.http.asgi``, ``kernel.http.server``, ``kernel.http.routes`` (the node's HTTP server
  and its declared routes, for an HTTP service).

  Everything else (supervisor, launch, admin, node, runtime, CLI) is internal to the node, and a
  new kernel module is internal until it is added to that contract in ``pyproject.toml``.
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
