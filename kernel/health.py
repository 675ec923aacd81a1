"""What the node knows about each service, in one place.

The supervisor writes it (spawns, exits, quarantine) and the bus feeds it `Health` events; the admin
plane only reads snapshots. Keeping the state table here, and deriving readiness from it, means
/readyz, /version and `ronctl status` can never disagree.
"""

from __future__ import annotations

import enum
import time
from typing import Any

import attrs


class ServiceState(enum.StrEnum):
    STARTING = "starting"  # spawned, no Health{ok:true} yet
    READY = "ready"  # last Health said ok
    UNHEALTHY = "unhealthy"  # last Health said not ok
    BACKOFF = "backoff"  # crashed, waiting to be restarted
    QUARANTINED = "quarantined"  # crashed too often; not restarted until released
    STOPPED = "stopped"  # stopped on purpose (shutdown)


@attrs.frozen
class ServiceStatus:
    name: str
    required: bool = True
    state: ServiceState = ServiceState.STARTING
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None  # time.monotonic() of the current process's spawn
    last_health: float | None = None  # time.monotonic() of the last Health event
    last_crash: str | None = None  # why its last process ended abnormally ("exit code 2", ...)
    last_crash_at: float | None = None  # time.time() of that crash
    held: bool = False  # stopped by an operator (``ronctl stop SERVICE``) until started again

    def uptime(self, now: float | None = None) -> float:
        if self.started_at is None or self.state in (
            ServiceState.BACKOFF,
            ServiceState.QUARANTINED,
            ServiceState.STOPPED,
        ):
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - self.started_at)


@attrs.frozen
class Readiness:
    ready: bool
    missing: tuple[str, ...]  # why not ready: service names, or "config" / "bus"
    stopped: tuple[str, ...] = ()  # of those, the services an operator stopped


class HealthState:
    """The node's service table. Not thread-safe: it lives in the supervisor's trio thread."""

    def __init__(self) -> None:
        self._services: dict[str, ServiceStatus] = {}
        self.config_loaded = False
        self.bus_up = False

    def register(self, name: str, *, required: bool) -> None:
        self._services[name] = ServiceStatus(name=name, required=required)

    def unregister(self, name: str) -> None:
        """Forget a service the config no longer has (a reload removed it)."""
        self._services.pop(name, None)

    def update(self, name: str, **changes: Any) -> ServiceStatus:  # Any: ServiceStatus fields
        status = attrs.evolve(self._services[name], **changes)
        self._services[name] = status
        return status

    def set(self, service: str, ok: bool) -> None:
        """Record a Health event. Ignored for services we do not supervise or that are down."""
        status = self._services.get(service)
        if status is None or status.state in (
            ServiceState.BACKOFF,
            ServiceState.QUARANTINED,
            ServiceState.STOPPED,
        ):
            return
        self.update(
            service,
            state=ServiceState.READY if ok else ServiceState.UNHEALTHY,
            last_health=time.monotonic(),
        )

    def get(self, name: str) -> ServiceStatus | None:
        return self._services.get(name)

    def snapshot(self) -> dict[str, ServiceStatus]:
        return dict(self._services)

    def readiness(self) -> Readiness:
        missing: list[str] = []
        if not self.config_loaded:
            missing.append("config")
        if not self.bus_up:
            missing.append("bus")
        for status in self._services.values():
            if status.state is ServiceState.QUARANTINED or (
                status.required and status.state is not ServiceState.READY
            ):
                missing.append(status.name)
        stopped = tuple(
            name for name in missing if (s := self._services.get(name)) is not None and s.held
        )
        return Readiness(ready=not missing, missing=tuple(missing), stopped=stopped)

    def all_ready(self) -> bool:
        return self.readiness().ready
