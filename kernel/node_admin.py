"""What answers the admin and control planes for a running node (``kernel.admin.NodeControl``).

It holds no task of its own: the planes call it, and it asks the supervisor, the config store,
the event fan-out, the identity service's link and the services (their declared admin routes)
on their behalf. Everything it needs exists before it is made, so nothing is used before it is
assigned.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TypeVar

import attrs
import trio

from ipc import events
from ipc.bus import Bus
from ipc.plain import JsonObject
from ipc.proto import admin
from ipc.proto.codec import Request, call
from kernel import logs
from kernel.admin.control import ServiceRoute
from kernel.config import Config, ConfigError, ConfigStore
from kernel.config.reload import check_reloadable
from kernel.event_fanout import EventFanout
from kernel.exposes import exposes_of
from kernel.fault_inject import inject_fault
from kernel.health import HealthState
from kernel.log_ring import LogRing
from kernel.metrics import Metrics
from kernel.passport_link import PassportLink, PassportUnavailable
from kernel.service_clients import ServiceClients
from kernel.supervisor import Supervisor
from kernel.version import VERSION

__all__ = ["NodeAdmin"]

R = TypeVar("R")


@attrs.define
class NodeAdmin:
    """The node as its planes see it. ``urls`` is filled in once the sockets are bound."""

    store: ConfigStore
    reload_config: Callable[[], Config]
    health: HealthState
    metrics: Metrics
    bus: Bus
    supervisor: Supervisor
    runtime_dir: Path
    fanout: EventFanout
    clients: ServiceClients
    passport_link: PassportLink | None
    log_ring: LogRing
    listening: frozenset[str]  # config sections whose sockets were bound at start
    stop_requested: trio.Event = attrs.field(factory=trio.Event)
    urls: dict[str, str] = attrs.field(factory=dict)
    last_reload: dict[str, list[str]] = attrs.field(factory=dict)
    _reload_lock: trio.Lock = attrs.field(factory=trio.Lock)
    _routes: tuple[int, tuple[ServiceRoute, ...]] = (-1, ())

    def node_info(self) -> JsonObject:
        version, cfg = self.store.snapshot()
        return {
            "version": VERSION,
            "profile": cfg.node.name,
            "amnesia": cfg.amnesia.enabled,
            "pq": cfg.pq.mode,
            "config_version": version,
            "config_sha": cfg.sha256,
            "node_id": self.passport_link.node_id if self.passport_link else None,
            "pid": os.getpid(),
            "urls": dict(self.urls),
            "supervisor": {  # what a chaos drill needs to predict restarts and quarantines
                "restart_cap": cfg.supervisor.restart_cap,
                "restart_window": cfg.supervisor.restart_window,
                "heartbeat_timeout": cfg.supervisor.heartbeat_timeout,
            },
        }

    async def fault(
        self,
        service: str,
        fault: str,
        *,
        delay_ms: int,
        duration_s: float,
        peers: tuple[str, ...] = (),
    ) -> int:
        return await inject_fault(
            self.health,
            self.runtime_dir,
            service,
            fault,
            delay_ms=delay_ms,
            duration_s=duration_s,
            peers=peers,
        )

    async def stop(self) -> None:
        self.stop_requested.set()

    def audit(self, act: str, **detail: object) -> None:
        if self.passport_link is not None:
            self.passport_link.record(act, **detail)

    async def passport(self, request: Request[R]) -> R:
        if self.passport_link is None:
            raise PassportUnavailable("this node runs no identity service")
        return await self.passport_link.call(request)

    def service_routes(self) -> tuple[ServiceRoute, ...]:
        version, cfg = self.store.snapshot()
        if self._routes[0] != version:
            routes = tuple(
                ServiceRoute(spec.name, route)
                for spec in cfg.services
                for route in exposes_of(spec.module).routes
            )
            self._routes = (version, routes)
        return self._routes[1]

    async def call_service(
        self, service: str, request: admin.AdminCall, timeout: float
    ) -> admin.AdminAnswer:
        client = await self.clients.get(service)
        return await call(client, admin.ADMIN, request, timeout=timeout)

    async def release(self, service: str) -> None:
        self.supervisor.release(service)

    def service_spec(self, service: str) -> JsonObject | None:
        for order, spec in enumerate(self.store.current.services):
            if spec.name == service:
                shown = attrs.asdict(spec)
                shown.pop("settings", None)
                shown["order"] = order  # its place in the config: the start order
                return shown
        return None

    def service_spare(self, service: str) -> JsonObject | None:
        spares = getattr(self.supervisor.launcher, "spares", None)
        if spares is None or (pid := spares.pid_of(service)) is None:
            return None
        return {"pid": pid, "warm": spares.is_warm(service)}

    async def service_act(self, service: str, act: str) -> bool:
        if act == "stop":
            return self.supervisor.stop_service(service)
        if act == "start":
            return await self.supervisor.start_service(service)
        if act == "restart":
            await self.supervisor.restart_service(service)
            return True
        raise ValueError(f"unknown act {act!r}")

    async def reload(self) -> int:
        """Validate the new config, refuse it if it changes what only a restart applies
        (``kernel.config.reload``), else swap it and reconcile the services to it. On any error
        the running config stays (rollback). Serialized: one reload at a time."""
        async with self._reload_lock:
            old = self.store.current

            def load() -> Config:
                new = self.reload_config()
                check_reloadable(old, new, listening=self.listening)
                return new

            try:
                version = self.store.reload(load)
            except ConfigError as exc:
                logs.log("config_reload_rejected", level="warning", reason=str(exc))
                raise
            changes = await self.supervisor.reconcile(self.store.current)
            self.bus.publish(events.ConfigUpdated(version=version))
            self.last_reload = changes
            joined = {k: ",".join(v) for k, v in changes.items()}
            logs.log("config_reloaded", config_version=version, **joined)
            return version

    def open_events(
        self, topic_prefix: str, history: bool = False
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[JsonObject]]:
        return self.fanout.subscribe(topic_prefix, history)
