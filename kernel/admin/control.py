"""What the admin plane may see and do on the node: the one seam between it and the supervisor."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import trio

from kernel.health import HealthState
from kernel.metrics import Metrics

__all__ = ["NodeControl"]


class NodeControl(Protocol):
    """What the admin plane may see and do on the node (implemented by the supervisor)."""

    health: HealthState
    metrics: Metrics
    last_reload: dict[str, list[str]]  # what the last reload did: {"started","stopped","restarted"}

    def node_info(self) -> dict[str, Any]:
        """{"version","profile","amnesia":bool,"pq":str,"config_version":int,"config_sha":str}"""
        ...

    def service_spec(self, service: str) -> dict[str, Any] | None:
        """The running config's spec of ``service`` (no settings: they may hold secrets);
        None when the profile has no such service."""
        ...

    async def stop(self) -> None:
        """Begin a graceful node shutdown; may return before it completes."""
        ...

    async def release(self, service: str) -> None:
        """Release a quarantined service. KeyError: unknown; ValueError: not quarantined."""
        ...

    async def service_act(self, service: str, act: str) -> bool:
        """An operator's ``stop``, ``start`` or ``restart`` of one service (none counts toward
        the quarantine cap); False when there was nothing to do. KeyError: unknown service."""
        ...

    async def reload(self) -> int:
        """Re-read the config, swap it and reconcile the services; the new version. Raises
        (one-line str) if invalid or if it changes what only a restart applies."""
        ...

    async def fault(self, service: str, fault: str, *, delay_ms: int, duration_s: float) -> int:
        """Inject a chaos fault; the target pid. KeyError: unknown service; ValueError: bad
        arguments; any other exception (one-line str): the fault could not be injected."""
        ...

    def audit(self, act: str, **detail: object) -> None:
        """Record a privileged act in the node's audit log (never blocks; see PassportLink)."""
        ...

    async def passport(self, request: Any) -> Any:
        """A typed svc-passport request's reply (token mint/revoke/rotate, audit check).
        ``PassportUnavailable``: no answer; ``oap.OapError``: refused (a bad argument)."""
        ...

    async def peers(self) -> list[dict[str, Any]] | None:
        """svc-overlay's peers (node id, addr, state, bytes, last error); None when the node
        runs no overlay. ``oap.OapError``: svc-overlay did not answer."""
        ...

    async def storage(self, request: Any, timeout: float) -> Any:
        """A typed svc-storage request's reply (store listing, pins, GC); None when the node
        runs no svc-storage. ``oap.OapError``: refused, or no answer in ``timeout`` s."""
        ...

    async def outbox(self) -> dict[str, Any] | None:
        """svc-mailbox's outbox (``{"depth", "entries"}``: messages waiting for another node to
        accept them); None when the node runs no mailbox. ``oap.OapError``: no answer."""
        ...

    def open_events(
        self, topic_prefix: str, history: bool = False
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """A bounded subscription to bus events (KernelEvent wire maps) under a topic prefix;
        ``history``: the recent ones (crashes, respawns, acts; no heartbeats) come first."""
        ...
