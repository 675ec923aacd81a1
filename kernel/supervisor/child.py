"""The generic per-child loop: spawn, watch, classify the exit, apply the policy, repeat.

One ``Child`` per service spec, one task per ``Child`` (``run``), in a nursery the ``Supervisor``
owns. There is no per-service code here: a child is data (its spec) plus this loop.

Guarantees:

* Every process this loop spawns is reaped before the loop moves on or returns, including when the
  loop is cancelled (SIGKILL + reap under a shielded, deadline-bounded scope).
* Exit is seen the moment it happens (``ChildProcess.wait`` is event-driven).
* A hang (no ``on_health`` for ``heartbeat_timeout``; the first one gets ``start_grace`` extra) is
  handled as TERM, ``spec.shutdown_deadline``, KILL, and reported as ``heartbeat timeout``.
* After ``request_stop()`` nothing is restarted: a running process gets ``spec.shutdown_deadline``
  to exit on its own (it saw ``Shutdown`` on the bus), then TERM, ``term_grace``, KILL.
* The child's stdout/stderr are pumped line by line (lines capped at ``MAX_LINE`` bytes) into the
  ``output`` callback by tasks scoped to the process's lifetime.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Protocol

import attrs
import trio

from ipc.events import ServiceCrashed
from kernel.health import HealthState, ServiceState
from kernel.launch.launcher import ChildProcess, Launcher, ServiceSpecLike, describe_returncode
from kernel.launch.output import MAX_LINE, pump_lines
from kernel.supervisor.policy import CrashHistory, Quarantine

__all__ = [
    "MAX_LINE",
    "Child",
    "ChildDeps",
    "ChildTiming",
    "RespawnTiming",
    "ServiceSpec",
]

# after a child is reaped, how long its pipes may take to deliver what is left (a grandchild
# holding the pipe open must not stall the restart)
OUTPUT_DRAIN = 1.0
# bound on SIGKILL + reap when we are being cancelled
KILL_REAP_DEADLINE = 5.0

HEARTBEAT_TIMEOUT_REASON = "heartbeat timeout"


class ServiceSpec(ServiceSpecLike, Protocol):
    """The attributes of a profile's service entry that the loop reads (duck-typed)."""

    @property
    def required(self) -> bool: ...
    @property
    def restart(self) -> str: ...  # "permanent" | "transient" | "temporary" (config rules)
    @property
    def shutdown_deadline(self) -> float: ...
    @property
    def heartbeat_timeout(self) -> float: ...  # 0 = the supervisor's


class Log(Protocol):
    def __call__(
        self,
        event: str,
        *,
        level: str = "info",
        service: str = "supervisor",
        reason: str | None = None,
        **fields: Any,
    ) -> None: ...


class Bus(Protocol):
    def publish(self, event: Any) -> bool: ...


@attrs.frozen
class ChildDeps:
    """What every child loop shares with the supervisor."""

    health: HealthState
    bus: Bus
    launcher: Launcher
    log: Log
    output: Callable[[str, bytes], None]
    env_for: Callable[[Any], Mapping[str, str]]
    metrics: Any = None


@attrs.frozen
class ChildTiming:
    """Supervisor-level timings (seconds). ``heartbeat_timeout <= 0`` disables hang detection."""

    heartbeat_timeout: float
    start_grace: float
    term_grace: float


@attrs.frozen
class RespawnTiming:
    """One crash -> respawn, in ``time.monotonic()`` seconds, for the respawn benchmark.

    ``Health ok`` time is ``HealthState.get(name).last_health`` once the new process reports.
    """

    detected_at: float
    spawned_at: float
    backoff: float
    pid: int


@attrs.frozen
class _Exited:
    returncode: int
    detected_at: float


@attrs.frozen
class _Hung:
    returncode: int
    detected_at: float


@attrs.frozen
class _SpawnFailed:
    error: str
    detected_at: float


@attrs.frozen
class _Stopped:
    returncode: int


@attrs.frozen
class _Interrupted:
    """An operator's stop or restart ended the process: not a crash, never in the history."""

    returncode: int


_Outcome = _Exited | _Hung | _SpawnFailed | _Stopped | _Interrupted


class Child:
    """One supervised service. Not thread-safe: lives in the supervisor's trio thread."""

    def __init__(
        self,
        spec: ServiceSpec,
        *,
        deps: ChildDeps,
        history: CrashHistory,
        timing: ChildTiming,
    ) -> None:
        self.spec = spec
        self.name: str = spec.name
        self.history = history
        self.timing = timing
        self._deps = deps
        self._stopping = False
        self._term_now = False
        self._watch_scope: trio.CancelScope | None = None
        self._wait_scope: trio.CancelScope | None = None
        self._release: trio.Event | None = None
        self._held: trio.Event | None = None  # set: an operator's stop holds the child down
        self._interrupt = False  # an operator's stop/restart is ending the current process
        self._started_at = 0.0
        self._pending_respawn: tuple[float, float] | None = None  # (detected_at, backoff)
        self._task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        self.done = trio.Event()
        self.last_respawn: RespawnTiming | None = None

    # ---- control, called from other tasks ---------------------------------------------------

    @property
    def quarantined(self) -> bool:
        return self._release is not None

    def on_health(self, ok: bool, *, sender: int | None = None) -> None:
        """Record a Health event and push the heartbeat deadline forward.

        A Health published by another process than the current one (``sender``, when known) is
        from a process that is gone, sent just before it died: it must not make the replacement
        look ready or alive, so it is dropped (and counted in the log at debug level).
        """
        if sender is not None:
            status = self._deps.health.get(self.name)
            if status is None or status.pid != sender:
                self._deps.log("stale_health_ignored", level="debug", service=self.name, pid=sender)
                return
        self._deps.health.set(self.name, ok)
        scope = self._watch_scope
        hb = self.timing.heartbeat_timeout
        if scope is not None and hb > 0 and not self._stopping:
            scope.deadline = trio.current_time() + hb

    def release(self) -> None:
        """Let a quarantined child start again now, with a clean crash history."""
        if self._release is None:
            raise ValueError(f"{self.name} is not quarantined")
        self._release.set()

    @property
    def held(self) -> bool:
        """Stopped by an operator (``ronctl stop SERVICE``): down until ``start``."""
        return self._held is not None

    def operator_stop(self) -> bool:
        """Stop the service and keep it stopped until ``operator_start``; False if it already
        was. The running process is drained like at a node stop (TERM, its shutdown
        deadline, KILL); nothing of it counts as a crash."""
        if self._held is not None:
            return False
        self._held = trio.Event()
        self._interrupt_current()
        return True

    def operator_start(self) -> bool:
        """Start a service an operator stopped, or release a quarantined one; False if it is
        neither (already running or on its way)."""
        if self._held is not None:
            self._held.set()
            return True
        if self._release is not None:
            self._release.set()
            return True
        return False

    def operator_restart(self) -> None:
        """Replace the running process now (TERM, deadline, KILL, spawn at once, no backoff).
        An operator's restart never counts toward the quarantine cap; on a stopped or
        quarantined service it is a start."""
        if not self.operator_start():
            self._interrupt_current()

    def _interrupt_current(self) -> None:
        self._interrupt = True
        for scope in (self._watch_scope, self._wait_scope):
            if scope is not None:
                scope.cancel()

    def request_stop(self, *, term_now: bool = False) -> None:
        """Stop for good: interrupt any wait; a running process is drained, then stopped.
        ``term_now``: this child alone stops (a reload removed or changed it; no ``Shutdown``
        on the bus tells it to), so it gets SIGTERM at once, then its shutdown deadline."""
        self._stopping = True
        self._term_now = term_now
        for scope in (self._watch_scope, self._wait_scope):
            if scope is not None:
                scope.cancel()

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise until stopped. ``task_status.started()`` after the first spawn attempt."""
        self._task_status = task_status
        try:
            while not self._stopping:
                if self._held is not None and not await self._stay_stopped():
                    break
                self._interrupt = False
                outcome = await self._one_lifetime()
                self._signal_started()
                if self._stopping or isinstance(outcome, _Stopped):
                    break
                if isinstance(outcome, _Interrupted):
                    self._deps.log(
                        "service_restarting" if self._held is None else "service_held",
                        service=self.name,
                        returncode=outcome.returncode,
                        by="operator",
                    )
                    continue
                if not await self._after_exit(outcome) and self._held is None:
                    break
            self._signal_started()  # stopped before the first spawn: still report started
        finally:
            if self._deps.health.get(self.name) is not None:
                self._deps.health.update(self.name, state=ServiceState.STOPPED, pid=None)
            self.done.set()
        self._deps.log("service_stopped", service=self.name)

    async def _stay_stopped(self) -> bool:
        """Down until an operator starts it again (True) or the node stops (False)."""
        held = self._held
        assert held is not None
        self._deps.health.update(self.name, state=ServiceState.STOPPED, pid=None, held=True)
        self._signal_started()
        try:
            if not await self._interruptible(held.wait):
                return False
        finally:
            self._held = None
        self._deps.health.update(self.name, held=False)
        self._deps.log("service_started_by_operator", service=self.name)
        return True

    def _signal_started(self) -> None:
        status, self._task_status = self._task_status, trio.TASK_STATUS_IGNORED
        status.started()

    async def _one_lifetime(self) -> _Outcome:
        try:
            proc = await self._deps.launcher.spawn(self.spec, self._deps.env_for(self.spec))
        except OSError as exc:
            return _SpawnFailed(f"spawn failed: {exc.strerror or exc}", time.monotonic())
        self._on_spawned(proc)
        self._signal_started()
        return await self._supervise(proc)

    def _on_spawned(self, proc: ChildProcess) -> None:
        now = time.monotonic()
        self._started_at = now
        health = self._deps.health
        status = health.get(self.name)
        restarts = status.restarts if status is not None else 0
        if self._pending_respawn is not None:
            detected_at, backoff = self._pending_respawn
            self._pending_respawn = None
            restarts += 1
            if self._deps.metrics is not None:
                _restarts_counter(self._deps.metrics).labels(service=self.name).inc()
            self.last_respawn = RespawnTiming(detected_at, now, backoff, proc.pid)
            self._deps.log(
                "respawned",
                service=self.name,
                pid=proc.pid,
                detect_to_spawn_ms=round((now - detected_at) * 1000, 3),
                backoff_ms=round(backoff * 1000, 3),
            )
        health.update(
            self.name,
            state=ServiceState.STARTING,
            pid=proc.pid,
            started_at=now,
            last_health=None,
            restarts=restarts,
        )
        self._deps.log("service_spawned", service=self.name, pid=proc.pid)

    async def _supervise(self, proc: ChildProcess) -> _Outcome:
        try:
            async with trio.open_nursery() as nursery:
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        nursery.start_soon(self._pump, stream)
                outcome = await self._watch(proc)
                nursery.cancel_scope.deadline = trio.current_time() + OUTPUT_DRAIN
            return outcome
        finally:
            if proc.returncode is None:  # we are being cancelled: never leave it running
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + KILL_REAP_DEADLINE
                    proc.kill()
                    await proc.wait()
            with trio.CancelScope(shield=True):
                await proc.aclose()

    async def _watch(self, proc: ChildProcess) -> _Outcome:
        hb = self.timing.heartbeat_timeout
        first = hb + self.timing.start_grace if hb > 0 else float("inf")
        scope = trio.CancelScope(deadline=trio.current_time() + first)
        if self._stopping:
            scope.cancel()
        self._watch_scope = scope
        rc: int | None = None
        try:
            with scope:
                rc = await proc.wait()
        finally:
            self._watch_scope = None
        if rc is not None and not self._interrupt:
            return _Exited(rc, time.monotonic())
        if self._stopping:
            return _Stopped(rc if rc is not None else await self._drain(proc))
        if self._interrupt:  # an operator's stop or restart: drained, never a crash
            if rc is None:
                rc = await _terminate(proc, self.spec.shutdown_deadline)
            return _Interrupted(rc)
        self._deps.log("heartbeat_missed", level="warning", service=self.name, pid=proc.pid)
        # A hung process gets the short grace, not the drain deadline: it is not draining anything.
        rc = await _terminate(proc, min(self.timing.term_grace, self.spec.shutdown_deadline))
        return _Hung(rc, time.monotonic())

    async def _drain(self, proc: ChildProcess) -> int:
        if self._term_now:
            return await _terminate(proc, self.spec.shutdown_deadline)
        with trio.move_on_after(self.spec.shutdown_deadline):
            return await proc.wait()
        return await _terminate(proc, self.timing.term_grace)

    async def _pump(self, stream: trio.abc.ReceiveStream) -> None:
        await pump_lines(stream, partial(self._deps.output, self.name))

    # ---- after an exit ----------------------------------------------------------------------

    async def _after_exit(self, outcome: _Exited | _Hung | _SpawnFailed) -> bool:
        """Report the exit and wait as the policy says. True = spawn again."""
        if isinstance(outcome, _Exited):
            reason = describe_returncode(outcome.returncode)
            abnormal = outcome.returncode != 0
        elif isinstance(outcome, _Hung):
            reason, abnormal = HEARTBEAT_TIMEOUT_REASON, True
        else:
            reason, abnormal = outcome.error, True
        uptime, returncode = 0.0, None
        if not isinstance(outcome, _SpawnFailed):
            uptime, returncode = outcome.detected_at - self._started_at, outcome.returncode
        mode = self.spec.restart
        deps = self._deps
        if abnormal or mode == "permanent":
            deps.health.update(self.name, last_crash=reason, last_crash_at=time.time())
            deps.bus.publish(ServiceCrashed(service=self.name, reason=reason))
            deps.log(
                "service_crashed",
                level="warning",
                service=self.name,
                reason=reason,
                uptime_s=round(uptime, 3),
                returncode=returncode,
            )
        else:
            deps.log("service_exited", service=self.name, reason=reason)
        if not (mode == "permanent" or (mode == "transient" and abnormal)):
            deps.health.update(self.name, state=ServiceState.STOPPED, pid=None)
            return False

        decision = self.history.record_crash(time.monotonic(), uptime)
        if isinstance(decision, Quarantine):
            return await self._quarantine(reason)
        deps.health.update(self.name, state=ServiceState.BACKOFF, pid=None)
        if decision.delay > 0:
            deps.log(
                "restart_scheduled",
                service=self.name,
                reason=reason,
                attempt=decision.attempt,
                delay_ms=round(decision.delay * 1000, 3),
            )
        self._pending_respawn = (outcome.detected_at, decision.delay)
        return await self._interruptible(trio.sleep, decision.delay)

    async def _quarantine(self, reason: str) -> bool:
        deps = self._deps
        deps.health.update(self.name, state=ServiceState.QUARANTINED, pid=None)
        self._set_quarantined_metric(1)
        policy = self.history.policy
        deps.log(
            "service_quarantined",
            level="error",
            service=self.name,
            reason=reason,
            restart_cap=policy.restart_cap,
            restart_window_s=policy.restart_window,
        )
        self._release = release = trio.Event()
        try:
            if not await self._interruptible(release.wait):
                return False
        finally:
            self._release = None
        self.history.release()
        self._set_quarantined_metric(0)
        deps.log("service_released", service=self.name)
        self._pending_respawn = (time.monotonic(), 0.0)
        return True

    def _set_quarantined_metric(self, value: int) -> None:
        if self._deps.metrics is not None:
            self._deps.metrics.service_quarantined.labels(service=self.name).set(value)

    async def _interruptible(self, wait: Callable[..., Awaitable[object]], *args: object) -> bool:
        """Await ``wait(*args)`` unless/until ``request_stop``; True if done and not stopping."""
        if self._stopping:
            return False
        scope = trio.CancelScope()
        self._wait_scope = scope
        try:
            with scope:
                await wait(*args)
        finally:
            self._wait_scope = None
        return not self._stopping


def _restarts_counter(metrics: Any) -> Any:
    """The ``service_restarts_total`` family; prometheus-client names the attribute without the
    ``_total`` suffix (kernel.metrics.Metrics.service_restarts), so accept either spelling."""
    family = getattr(metrics, "service_restarts_total", None)
    return family if family is not None else metrics.service_restarts


async def _terminate(proc: ChildProcess, grace: float) -> int:
    """SIGTERM (+ SIGCONT, so a stopped process can act on it), up to ``grace`` seconds, then
    SIGKILL; always reaps."""
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    with trio.move_on_after(grace):
        return await proc.wait()
    proc.kill()
    return await proc.wait()
