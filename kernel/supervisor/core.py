"""The Supervisor: owns one generic ``Child`` loop per service spec, and nothing per service.

Model: an Erlang/OTP one_for_one supervisor. Children are data (``cfg.services``); restart
decisions come from ``policy``; processes come from a ``Launcher``. The supervisor does not read
the bus: the node wiring calls ``on_health`` for every ``Health`` event it receives.

Lifetime: ``run()`` (usually via ``nursery.start``) spawns every child and reports started once
each has had its first spawn attempt; it returns after ``shutdown()`` has stopped every child, and
if it is cancelled instead, every child process is SIGKILLed and reaped before it unwinds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import trio

from ipc.events import Shutdown
from kernel.health import HealthState, ServiceStatus
from kernel.launch.launcher import Launcher
from kernel.supervisor.child import (
    Bus,
    Child,
    ChildDeps,
    ChildTiming,
    Log,
    RespawnTiming,
    ServiceSpec,
    SupervisorMetrics,
)
from kernel.supervisor.policy import CrashHistory, PolicySettings, RestartPolicy

__all__ = ["DEFAULT_START_GRACE", "DEFAULT_TERM_GRACE", "Supervisor"]

# extra time a freshly spawned child gets for its first Health, on top of heartbeat_timeout
DEFAULT_START_GRACE = 10.0
# during shutdown, how long a child has between SIGTERM and SIGKILL
DEFAULT_TERM_GRACE = 2.0


class SupervisorSettings(PolicySettings, Protocol):
    @property
    def heartbeat_timeout(self) -> float: ...


class ConfigLike(Protocol):
    @property
    def supervisor(self) -> SupervisorSettings: ...
    @property
    def services(self) -> Iterable[ServiceSpec]: ...


def _no_env(_spec: object) -> Mapping[str, str]:
    return {}


class Supervisor:
    """Spawns, watches and restarts the profile's services. See the module docstring."""

    def __init__(
        self,
        config: ConfigLike,
        *,
        health: HealthState,
        bus: Bus,
        launcher: Launcher,
        metrics: SupervisorMetrics | None = None,
        log: Log | None = None,
        output: Callable[[str, bytes], None] | None = None,
        rng: random.Random | None = None,
        env_for: Callable[[Any], Mapping[str, str]] = _no_env,  # Any: see ChildDeps.env_for
        start_grace: float = DEFAULT_START_GRACE,
        term_grace: float = DEFAULT_TERM_GRACE,
    ) -> None:
        if log is None or output is None:
            from kernel import logs  # late: keeps kernel.supervisor importable on its own

            log = log if log is not None else logs.log
            output = output if output is not None else logs.reemit
        specs = list(config.services)
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate service names in profile: {sorted(names)}")
        self._health = health
        self._bus = bus
        self._log = log
        self._rng = rng if rng is not None else random.Random()
        self._start_grace = float(start_grace)
        self._term_grace = float(term_grace)
        self._deps = ChildDeps(
            health=health,
            bus=bus,
            launcher=launcher,
            log=log,
            output=output,
            env_for=env_for,
            metrics=metrics,
            handover=getattr(launcher, "spares", None),
        )
        policy = RestartPolicy.from_config(config.supervisor)
        self._children: dict[str, Child] = {
            spec.name: Child(
                spec,
                deps=self._deps,
                history=CrashHistory(policy, self._rng),
                timing=self._timing(config.supervisor, spec),
            )
            for spec in specs
        }
        self._stop = trio.Event()
        self._running = False
        self._ran = False
        self._nursery: trio.Nursery | None = None  # where children run (reconcile adds some)
        self._policy = policy

    def _timing(self, sup: SupervisorSettings, spec: ServiceSpec) -> ChildTiming:
        hb = spec.heartbeat_timeout if spec.heartbeat_timeout > 0 else sup.heartbeat_timeout
        return ChildTiming(
            heartbeat_timeout=float(hb),
            start_grace=self._start_grace,
            term_grace=self._term_grace,
        )

    @property
    def launcher(self) -> Launcher:
        """What starts the services (the admin plane shows a fork server's warm spares)."""
        return self._deps.launcher

    @property
    def names(self) -> list[str]:
        return list(self._children)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Spawn every child; ``started()`` once each had its first spawn; run until shutdown."""
        if self._ran:
            raise RuntimeError("Supervisor.run() can only be called once")
        self._ran = self._running = True
        for name, child in self._children.items():
            self._health.register(name, required=bool(child.spec.required))
            metrics = self._deps.metrics
            if metrics is not None:
                metrics.service_quarantined.labels(service=name).set(0)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for child in self._children.values():
                    await nursery.start(child.run)
                self._log("supervisor_started", services=self.names)
                task_status.started()
                await self._stop.wait()
        finally:
            self._running = False

    def on_health(self, service: str, ok: bool, *, sender: int | None = None) -> None:
        """Feed one ``Health`` event: updates HealthState and the child's heartbeat deadline.

        ``sender``: the pid that published it (from the bus), when known; a Health from any
        process but the service's current one is stale and ignored."""
        child = self._children.get(service)
        if child is None:
            self._health.set(service, ok)  # unknown names are ignored there too
            return
        child.on_health(ok, sender=sender)

    def release(self, name: str) -> None:
        """Restart a quarantined child now. KeyError: unknown; ValueError: not quarantined."""
        child = self._children[name]
        child.release()
        self._log("release_requested", service=name)

    def stop_service(self, name: str) -> bool:
        """An operator's stop of one service: drained, then kept down until ``start_service``
        (a node stop or a reload still ends it as usual). KeyError: unknown; False: it was
        already stopped."""
        stopped = self._children[name].operator_stop()
        if stopped:
            self._log("stop_requested", service=name, by="operator")
        return stopped

    async def start_service(self, name: str) -> bool:
        """Start a service an operator stopped (or release a quarantined one, or run again a
        ``transient``/``temporary`` one that exited). KeyError: unknown; False: it runs."""
        child = self._children[name]
        if child.done.is_set() and not self._stop.is_set() and self._nursery is not None:
            fresh = Child(child.spec, deps=self._deps, history=child.history, timing=child.timing)
            self._children[name] = fresh
            await self._nursery.start(fresh.run)
            started = True
        else:
            started = child.operator_start()
        if started:
            self._log("start_requested", service=name, by="operator")
        return started

    async def restart_service(self, name: str) -> None:
        """An operator's restart: the running process is drained and replaced at once. It never
        counts toward the quarantine cap (nor as a restart in ``status``); a stopped or
        quarantined service is started. KeyError: unknown."""
        if not await self.start_service(name):
            self._children[name].operator_restart()
            self._log("restart_requested", service=name, by="operator")

    def quarantined(self) -> list[str]:
        return [name for name, child in self._children.items() if child.quarantined]

    def status(self, name: str) -> ServiceStatus | None:
        return self._health.get(name)

    def last_respawn(self, name: str) -> RespawnTiming | None:
        """Timestamps of the child's latest crash -> respawn (``time.monotonic()``)."""
        return self._children[name].last_respawn

    def apply_config(self, config: ConfigLike) -> None:
        """Take new ``supervisor.*`` knobs for future restarts and heartbeats of the children
        there are (``reconcile`` also changes which children there are)."""
        policy = self._policy = RestartPolicy.from_config(config.supervisor)
        specs = {spec.name: spec for spec in config.services}
        timings = {
            name: self._timing(config.supervisor, specs.get(name, child.spec))
            for name, child in self._children.items()
        }
        for name, child in self._children.items():
            child.history.policy = policy
            child.timing = timings[name]

    async def reconcile(self, config: ConfigLike) -> dict[str, list[str]]:
        """Make the running children match ``config.services`` (OTP style), after taking its
        ``supervisor.*`` knobs: children whose spec is gone are stopped and forgotten, new
        specs are started, a child whose spec changed is stopped and started anew with it;
        the rest keep running untouched. Returns ``{"started", "stopped", "restarted"}``
        (names). Stops run concurrently, each bounded by the child's shutdown deadline."""
        if self._nursery is None or self._stop.is_set():
            raise RuntimeError("the supervisor is not running")
        self.apply_config(config)
        specs = {spec.name: spec for spec in config.services}
        stopped = [name for name in self._children if name not in specs]
        restarted = [
            name
            for name, spec in specs.items()
            if name in self._children and self._children[name].spec != spec
        ]
        started = [name for name in specs if name not in self._children]
        async with trio.open_nursery() as stopping:
            for name in stopped + restarted:
                self._children[name].request_stop(term_now=True)
                stopping.start_soon(self._children[name].done.wait)
        for name in stopped:
            del self._children[name]
            self._health.unregister(name)
            if self._deps.metrics is not None:
                self._deps.metrics.service_quarantined.labels(service=name).set(0)
        for name in restarted + started:
            child = Child(
                specs[name],
                deps=self._deps,
                history=CrashHistory(self._policy, self._rng),
                timing=self._timing(config.supervisor, specs[name]),
            )
            self._children[name] = child
            self._health.register(name, required=bool(child.spec.required))
            await self._nursery.start(child.run)
        self._children = {name: self._children[name] for name in specs}  # the config's order
        changes = {"started": started, "stopped": stopped, "restarted": restarted}
        self._log("services_reconciled", **{k: ",".join(v) for k, v in changes.items()})
        return changes

    async def shutdown(self) -> None:
        """Publish ``Shutdown``, stop every child concurrently (drain, TERM, KILL), reap all.

        Returns when every child process is reaped and every state is STOPPED. Idempotent.
        """
        if not self._stop.is_set():
            self._bus.publish(Shutdown())
            self._log("shutdown_started", services=self.names)
            for child in self._children.values():
                child.request_stop()
            self._stop.set()
        if not self._running:
            return
        for child in self._children.values():
            await child.done.wait()
        self._log("shutdown_complete")
