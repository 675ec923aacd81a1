"""The generic per-child loop: spawn, watch, classify the exit, apply the policy, repeat.

One ``Child`` per service spec, one task per ``Child`` (``run``), in a nursery the ``Supervisor``
owns. There is no per-service code here: a child is data (its spec) plus this loop. Its state is
one phase of ``kernel.supervisor.lifecycle`` (STARTING, RUNNING, DRAINING, BACKOFF, QUARANTINED,
HELD, STOPPED), changed only through that module's table; other tasks' requests (an operator's
stop, start or restart, the node's stop) are latched there and cancel the loop's current wait.

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

import math
import signal
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

import attrs
import trio

from ipc._types import Labelled, LabelledGauge
from ipc.events import KernelEvent, ServiceCrashed
from ipc.plain import Json
from kernel.health import HealthState, ServiceState
from kernel.launch.launcher import (
    ChildProcess,
    Handover,
    Launcher,
    ServiceSpecLike,
    describe_returncode,
)
from kernel.launch.output import MAX_LINE, pump_lines
from kernel.supervisor.lifecycle import Lifecycle, Move, Phase, Request
from kernel.supervisor.policy import CrashHistory, Quarantine, Restart

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
        **fields: Json,
    ) -> None: ...


class Bus(Protocol):
    def publish(self, event: KernelEvent) -> bool: ...


class SupervisorMetrics(Protocol):
    """What the loop counts (``kernel.metrics.Metrics``; a test may pass a recorder)."""

    @property
    def service_restarts(self) -> Labelled: ...
    @property
    def service_quarantined(self) -> LabelledGauge: ...


@attrs.frozen
class ChildDeps:
    """What every child loop shares with the supervisor."""

    health: HealthState
    bus: Bus
    launcher: Launcher
    log: Log
    output: Callable[[str, bytes], None]
    # Any: the caller's concrete spec class (kernel.config's), which it passes in and gets back
    env_for: Callable[[Any], Mapping[str, str]]
    metrics: SupervisorMetrics | None = None
    # the launcher's warm spares, when a spare may go live by itself (kernel.launch.live_lock)
    handover: Handover | None = None


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
class _Ended:
    """How a process (or a spawn attempt) ended on its own: judged by the restart policy."""

    reason: str
    abnormal: bool
    detected_at: float
    returncode: int | None = None  # None: the spawn failed


class Child:
    """One supervised service. Not thread-safe: lives in the supervisor's trio thread.

    Its state is ``self.life`` (``kernel.supervisor.lifecycle``): one phase, changed only by
    ``Lifecycle.apply`` in the loop below, and the request other tasks latched.
    """

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
        self.life = Lifecycle()
        self._term_now = False  # a reload stops this child alone: SIGTERM at once
        self._scope: trio.CancelScope | None = None  # the current wait: a request cancels it
        self._started_at = 0.0
        self._pending_respawn: tuple[float, float] | None = None  # (detected_at, backoff)
        self._task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        self.done = trio.Event()
        self.last_respawn: RespawnTiming | None = None
        # the latest Health of a process that was not (yet) ours: a spare that went live by
        # itself reports before the crash it took over is seen (see on_health)
        self._early_health: tuple[int, bool] | None = None

    # ---- control, called from other tasks ---------------------------------------------------

    @property
    def quarantined(self) -> bool:
        return self.life.phase is Phase.QUARANTINED

    @property
    def held(self) -> bool:
        """Stopped by an operator (``ronctl stop SERVICE``): down until ``start``."""
        return self.life.phase is Phase.HELD or self.life.request is Request.HOLD

    def on_health(self, ok: bool, *, sender: int | None = None) -> None:
        """Record a Health event and push the heartbeat deadline forward.

        A Health published by another process than the current one (``sender``, when known) is
        from a process that is gone, sent just before it died: it must not make the replacement
        look ready or alive, so it is dropped (and counted in the log at debug level). Or it is
        from the warm spare that went live by itself as the current one died: it is kept, and
        counts once that process is the current one (``_on_spawned``).
        """
        if sender is not None:
            status = self._deps.health.get(self.name)
            if status is None or status.pid != sender:
                self._early_health = (sender, ok)
                self._deps.log("stale_health_ignored", level="debug", service=self.name, pid=sender)
                return
        self._deps.health.set(self.name, ok)
        scope, hb = self._scope, self.timing.heartbeat_timeout
        if scope is not None and hb > 0 and self.life.phase is Phase.RUNNING and not self._asked:
            scope.deadline = trio.current_time() + hb

    @property
    def _asked(self) -> bool:
        return self.life.request is not None

    def release(self) -> None:
        """Let a quarantined child start again now, with a clean crash history."""
        if self.life.phase is not Phase.QUARANTINED:
            raise ValueError(f"{self.name} is not quarantined")
        self._ask(Request.RESTART)

    def operator_stop(self) -> bool:
        """Stop the service and keep it stopped until ``operator_start``; False if it already
        was. The running process is drained like at a node stop (TERM, its shutdown
        deadline, KILL); nothing of it counts as a crash."""
        return not self.held and self._ask(Request.HOLD)

    def operator_start(self) -> bool:
        """Start a service an operator stopped, or release a quarantined one; False if it is
        neither (already running or on its way)."""
        if self.life.request is Request.HOLD:  # stopped and started again before it settled
            self.life.request = Request.RESTART
            return True
        if self.life.phase in (Phase.HELD, Phase.QUARANTINED):
            return self._ask(Request.RESTART)
        return False

    def operator_restart(self) -> None:
        """Replace the running process now (TERM, deadline, KILL, spawn at once, no backoff).
        An operator's restart never counts toward the quarantine cap; on a stopped or
        quarantined service it is a start."""
        if not self.operator_start():
            self._ask(Request.RESTART)

    def request_stop(self, *, term_now: bool = False) -> None:
        """Stop for good: interrupt any wait; a running process is drained, then stopped.
        ``term_now``: this child alone stops (a reload removed or changed it; no ``Shutdown``
        on the bus tells it to), so it gets SIGTERM at once, then its shutdown deadline."""
        self._term_now = term_now
        self._ask(Request.STOP)

    def _ask(self, request: Request) -> bool:
        if not self.life.ask(request):
            return False
        self._disarm(keep=False)  # the request, not a spare, decides what runs next
        if self._scope is not None:
            self._scope.cancel()
        return True

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise until stopped. ``task_status.started()`` after the first spawn attempt."""
        self._task_status = task_status
        life = self.life
        try:
            while life.phase is not Phase.STOPPED:
                if life.phase is Phase.STARTING:
                    await self._start()
                elif life.phase is Phase.BACKOFF:
                    assert self._pending_respawn is not None
                    life.apply(await self._wait_for_request(self._pending_respawn[1]))
                elif life.phase is Phase.QUARANTINED:
                    await self._stay_quarantined()
                elif life.phase is Phase.HELD:
                    await self._stay_held()
            self._signal_started()  # stopped before the first spawn: still report started
        finally:
            if self._deps.health.get(self.name) is not None:
                self._deps.health.update(self.name, state=ServiceState.STOPPED, pid=None)
            life.phase = Phase.STOPPED  # also when cancelled: nothing runs any more
            self.done.set()
        self._deps.log("service_stopped", service=self.name)

    async def _start(self) -> None:
        """STARTING: a request first, else one spawn and the process's whole life."""
        life = self.life
        if life.request in (Request.STOP, Request.HOLD):
            life.apply(Move.STOP if life.request is Request.STOP else Move.HOLD)
            return
        life.request = None  # a restart asked while starting: this spawn is it
        try:
            proc = await self._deps.launcher.spawn(self.spec, self._deps.env_for(self.spec))
        except OSError as exc:
            reason = f"spawn failed: {exc.strerror or exc}"
            life.apply(self._after_end(_Ended(reason, True, time.monotonic())))
            self._signal_started()
            return
        life.apply(Move.SPAWNED)
        self._on_spawned(proc)
        self._signal_started()
        ended = await self._supervise(proc)
        if ended is not None:
            life.apply(self._after_end(ended))

    async def _stay_held(self) -> None:
        """HELD: down until an operator starts it again, or the node stops."""
        self._deps.health.update(self.name, state=ServiceState.STOPPED, pid=None, held=True)
        self._signal_started()
        move = await self._wait_for_request()
        self._deps.health.update(self.name, held=False)
        if move is Move.RESPAWN:
            self._deps.log("service_started_by_operator", service=self.name)
        self.life.apply(move)

    async def _stay_quarantined(self) -> None:
        """QUARANTINED: down until released (or started, or stopped by an operator)."""
        move = await self._wait_for_request()
        if move is not Move.STOP:
            self.history.release()
            self._set_quarantined_metric(0)
            self._deps.log("service_released", service=self.name)
            self._pending_respawn = (time.monotonic(), 0.0)
        self.life.apply(move)

    async def _wait_for_request(self, timeout: float = math.inf) -> Move:
        """Wait until a request comes (its move) or ``timeout`` passes (a respawn)."""
        if self.life.request is None:
            with trio.CancelScope() as self._scope:
                await trio.sleep(timeout)
            self._scope = None
        request = self.life.request
        if request is Request.STOP:
            return Move.STOP
        return Move.HOLD if request is Request.HOLD else Move.RESPAWN

    def _signal_started(self) -> None:
        status, self._task_status = self._task_status, trio.TASK_STATUS_IGNORED
        status.started()

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
                self._deps.metrics.service_restarts.labels(service=self.name).inc()
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
        early, self._early_health = self._early_health, None
        if early is not None and early[0] == proc.pid:  # a spare that reported as it went live
            health.set(self.name, early[1])
        handover = self._deps.handover
        if handover is not None and self.spec.restart == "permanent" and not self._asked:
            handover.arm(self.name, proc.pid, self.history.at_once_in(now, now))

    def _disarm(self, *, keep: bool) -> None:
        """No spare goes live by itself from now on; one that already did is kept for the next
        spawn or stopped (``Handover.disarm``)."""
        if self._deps.handover is not None:
            self._deps.handover.disarm(self.name, keep=keep)

    async def _supervise(self, proc: ChildProcess) -> _Ended | None:
        """RUNNING until the process ends: how it ended on its own, or None when a request
        ended it (the lifecycle has moved on through DRAINING then)."""
        try:
            async with trio.open_nursery() as nursery:
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        nursery.start_soon(self._pump, stream)
                ended = await self._watch(proc)
                nursery.cancel_scope.deadline = trio.current_time() + OUTPUT_DRAIN
            return ended
        finally:
            if proc.returncode is None:  # we are being cancelled: never leave it running
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + KILL_REAP_DEADLINE
                    proc.kill()
                    await proc.wait()
            with trio.CancelScope(shield=True):
                await proc.aclose()

    async def _watch(self, proc: ChildProcess) -> _Ended | None:
        hb = self.timing.heartbeat_timeout
        first = hb + self.timing.start_grace if hb > 0 else math.inf
        rc: int | None = None
        if not self._asked:
            with trio.CancelScope(deadline=trio.current_time() + first) as self._scope:
                rc = await proc.wait()
            self._scope = None
        life = self.life
        if life.request is None and rc is not None:
            return _Ended(describe_returncode(rc), rc != 0, time.monotonic(), rc)
        if life.request is None:  # no heartbeat in time: hung
            self._deps.log("heartbeat_missed", level="warning", service=self.name, pid=proc.pid)
            self._disarm(keep=False)  # we end it: what runs next is decided after, not by a spare
            # A hung process gets the short grace, not the drain deadline: it drains nothing.
            rc = await _terminate(proc, min(self.timing.term_grace, self.spec.shutdown_deadline))
            return _Ended(HEARTBEAT_TIMEOUT_REASON, True, time.monotonic(), rc)
        life.apply(Move.DRAIN)
        if rc is None:
            rc = await self._drain(proc)
        move = life.after_drain()
        if move is not Move.STOP:  # an operator's stop or restart: drained, never a crash
            event = "service_held" if move is Move.HOLD else "service_restarting"
            self._deps.log(event, service=self.name, returncode=rc, by="operator")
        life.apply(move)
        return None

    async def _drain(self, proc: ChildProcess) -> int:
        """End the process a request ends: the node's stop lets it exit on its own first (it saw
        ``Shutdown`` on the bus); an operator's act or a reload sends SIGTERM at once."""
        if self.life.request is not Request.STOP or self._term_now:
            return await _terminate(proc, self.spec.shutdown_deadline)
        with trio.move_on_after(self.spec.shutdown_deadline):
            return await proc.wait()
        return await _terminate(proc, self.timing.term_grace)

    async def _pump(self, stream: trio.abc.ReceiveStream) -> None:
        await pump_lines(stream, partial(self._deps.output, self.name))

    # ---- after an exit ----------------------------------------------------------------------

    def _after_end(self, ended: _Ended) -> Move:
        """Report the end and judge it: CRASHED (a backoff), QUARANTINE, or FINISHED."""
        uptime = ended.detected_at - self._started_at if ended.returncode is not None else 0.0
        mode, deps = self.spec.restart, self._deps
        if ended.abnormal or mode == "permanent":
            deps.health.update(self.name, last_crash=ended.reason, last_crash_at=time.time())
            deps.bus.publish(ServiceCrashed(service=self.name, reason=ended.reason))
            deps.log(
                "service_crashed",
                level="warning",
                service=self.name,
                reason=ended.reason,
                uptime_s=round(uptime, 3),
                returncode=ended.returncode,
            )
        else:
            deps.log("service_exited", service=self.name, reason=ended.reason)
        if not (mode == "permanent" or (mode == "transient" and ended.abnormal)):
            self._disarm(keep=False)
            deps.health.update(self.name, state=ServiceState.STOPPED, pid=None)
            return Move.FINISHED
        decision = self.history.record_crash(time.monotonic(), uptime)
        # a spare armed for this crash went live as it happened: kept if the decision is what
        # it was armed for (restart at once; the arming made sure), else stopped again
        self._disarm(keep=isinstance(decision, Restart) and decision.delay == 0)
        if isinstance(decision, Quarantine):
            self._quarantine(ended.reason)
            return Move.QUARANTINE
        deps.health.update(self.name, state=ServiceState.BACKOFF, pid=None)
        if decision.delay > 0:
            deps.log(
                "restart_scheduled",
                service=self.name,
                reason=ended.reason,
                attempt=decision.attempt,
                delay_ms=round(decision.delay * 1000, 3),
            )
        self._pending_respawn = (ended.detected_at, decision.delay)
        return Move.CRASHED

    def _quarantine(self, reason: str) -> None:
        self._deps.health.update(self.name, state=ServiceState.QUARANTINED, pid=None)
        self._set_quarantined_metric(1)
        policy = self.history.policy
        self._deps.log(
            "service_quarantined",
            level="error",
            service=self.name,
            reason=reason,
            restart_cap=policy.restart_cap,
            restart_window_s=policy.restart_window,
        )

    def _set_quarantined_metric(self, value: int) -> None:
        if self._deps.metrics is not None:
            self._deps.metrics.service_quarantined.labels(service=self.name).set(value)


async def _terminate(proc: ChildProcess, grace: float) -> int:
    """SIGTERM (+ SIGCONT, so a stopped process can act on it), up to ``grace`` seconds, then
    SIGKILL; always reaps."""
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    with trio.move_on_after(grace):
        return await proc.wait()
    proc.kill()
    return await proc.wait()
