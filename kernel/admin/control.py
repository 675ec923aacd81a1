"""What the admin plane may see and do on the node: the one seam between it and the supervisor."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

import attrs
import trio

from ipc.plain import JsonObject
from ipc.proto.admin import AdminAnswer, AdminCall
from ipc.proto.codec import Request
from kernel.exposes import AdminRoute
from kernel.health import HealthState
from kernel.metrics import Metrics

__all__ = ["NodeControl", "ServiceRoute"]

R = TypeVar("R")


@attrs.frozen
class ServiceRoute:
    """An admin route and the service that declared it."""

    service: str
    route: AdminRoute


class NodeControl(Protocol):
    """What the admin plane may see and do on the node (implemented by the supervisor)."""

    health: HealthState
    metrics: Metrics
    last_reload: dict[str, list[str]]  # what the last reload did: {"started","stopped","restarted"}

    def node_info(self) -> JsonObject:
        """{"version","profile","amnesia":bool,"pq":str,"config_version":int,"config_sha":str}"""
        ...

    def service_spec(self, service: str) -> JsonObject | None:
        """The running config's spec of ``service`` (no settings: they may hold secrets) and
        its ``order`` there (the start order); None when the profile has no such service."""
        ...

    def service_spare(self, service: str) -> JsonObject | None:
        """Its warm spare (``kernel.launch.warm``) as ``{"pid", "warm"}``: ``warm`` once it has
        prepared and waits; None when it has none (spares off, or being prepared)."""
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

    async def fault(
        self,
        service: str,
        fault: str,
        *,
        delay_ms: int,
        duration_s: float,
        peers: tuple[str, ...] = (),
    ) -> int:
        """Inject a chaos fault; the target pid. KeyError: unknown service; ValueError: bad
        arguments; any other exception (one-line str): the fault could not be injected.
        ``peers``: the node ids a ``partition`` cuts the service off from."""
        ...

    def audit(self, act: str, **detail: object) -> None:
        """Record a privileged act in the node's audit log (never blocks; see PassportLink)."""
        ...

    async def passport(self, request: Request[R]) -> R:
        """A typed request's reply from the service holding the identity role (token mint,
        revoke, rotate; audit check). ``PassportUnavailable``: no answer; ``oap.OapError``:
        refused (a bad argument)."""
        ...

    def service_routes(self) -> tuple[ServiceRoute, ...]:
        """The admin routes the running config's services declared (the same tuple until the
        set changes, so a plane can cache its table)."""
        ...

    async def call_service(self, service: str, call: AdminCall, timeout: float) -> AdminAnswer:
        """``service``'s answer to an admin call; ``oap.OapError``: no answer in ``timeout``."""
        ...

    def open_events(
        self, topic_prefix: str, history: bool = False
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[JsonObject]]:
        """A bounded subscription to bus events (KernelEvent wire maps) under a topic prefix;
        ``history``: the recent ones (crashes, respawns, acts; no heartbeats) come first."""
        ...
