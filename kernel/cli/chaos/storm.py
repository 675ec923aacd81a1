"""The restart-storm engine: workload + seeded faults + probes against one node, then settle.

While the storm lasts (``duration``), concurrently and under one nursery:
- the workload runs through the gateway (if the node has one and ``workload`` is on), and the
  mailbox workload beside it when the node runs svc-mailbox (``kernel.cli.chaos.mail_workload``);
- the injector follows the seeded schedule through ``POST /fault/{service}`` (control socket); a
  planned
  fault whose target is not ready or still has a fault in flight is skipped (and reported);
- an /events subscription records every ``ServiceCrashed`` and matches it to the fault that caused
  it (a crash nobody injected is an invariant break);
- a poller reads /version and /readyz: readiness, pids (for the orphan check) and quarantines,
  which it releases at once when ``release_quarantined`` is on, after checking them against the
  restart-cap model;
- a prober measures /healthz (the admin plane must keep answering);
- progress goes to stderr.

Then: wait for every fault in flight to show its crash, release quarantines, measure the time until
/readyz is 200 again. ``kernel.cli.chaos.verify`` turns the resulting ``StormState`` into checks.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from typing import IO

import attrs
import trio

from ipc.plain import JsonObject
from kernel.cli.chaos.http import HttpError, follow_lines, request
from kernel.cli.chaos.mail_workload import MAILBOX_SERVICE, MailWorkload
from kernel.cli.chaos.procs import ProcId, identify, rss_bytes
from kernel.cli.chaos.quarantine import QuarantineModel
from kernel.cli.chaos.schedule import PlannedFault, plan_faults
from kernel.cli.chaos.target import AdminView, NodeHandle, restarts_by_service
from kernel.cli.chaos.workload import Workload, WorkloadOptions
from kernel.faults import CRASH_FAULTS, PANIC_EXIT_CODE

__all__ = ["EXPECTED_REASON", "StormOptions", "StormState", "run_storm"]

EXPECTED_REASON = {
    "kill": "signal SIGKILL",
    "panic": f"exit {PANIC_EXIT_CODE}",
    "hang": "heartbeat timeout",
}
POLL_EVERY = 0.1
HEALTHZ_EVERY = 0.05
HEALTHZ_TIMEOUT = 2.0
PROGRESS_EVERY = 0.5


WRITE_TOKEN_SLACK = 600.0  # the workload's token outlives the storm by this much (read-back)


@attrs.frozen
class StormOptions:
    duration: float = 20.0
    interval: float = 1.0
    faults: tuple[str, ...] = ("kill", "panic", "hang")
    seed: int = 1
    rate: float = 20.0
    concurrency: int = 16
    max_size: int = 4 * 1024 * 1024
    services: tuple[str, ...] = ()  # empty: every service of the node
    slow_delay_ms: int = 200
    slow_duration_s: float = 2.0
    ready_bound: float = 30.0
    settle_timeout: float = 60.0
    workload: bool = True
    release_quarantined: bool = True


@attrs.define
class FaultRecord:
    t: float
    service: str
    fault: str
    outcome: str  # "landed", "skipped: ...", "refused: ..."
    pid: int | None = None
    crash_t: float | None = None
    crash_reason: str | None = None


@attrs.define
class StormState:
    """Everything the drill observed; times are seconds since the storm started."""

    options: StormOptions
    node: NodeHandle
    plan: list[PlannedFault]
    policy: JsonObject
    model: QuarantineModel
    workload: Workload | None = None
    mail: MailWorkload | None = None  # the mailbox workload (when the node runs svc-mailbox)
    mail_drained: bool | None = None  # after the storm: every acknowledged send acked in time
    faults: list[FaultRecord] = attrs.field(factory=list)
    crashes: list[tuple[float, str, str]] = attrs.field(factory=list)
    unexpected_crashes: list[tuple[float, str, str]] = attrs.field(factory=list)
    reason_mismatches: list[str] = attrs.field(factory=list)
    quarantines: list[tuple[float, str]] = attrs.field(factory=list)
    releases: list[tuple[float, str]] = attrs.field(factory=list)
    readiness: list[tuple[float, bool]] = attrs.field(factory=list)
    healthz: list[tuple[float, float, bool]] = attrs.field(factory=list)  # t, latency, ok
    restarts_before: dict[str, float] = attrs.field(factory=dict)
    restarts_after: dict[str, float] = attrs.field(factory=dict)
    procs_seen: dict[int, ProcId] = attrs.field(factory=dict)
    current_pids: dict[str, int | None] = attrs.field(factory=dict)
    states: dict[str, str] = attrs.field(factory=dict)
    rss_before: int | None = None
    rss_after: int | None = None
    storm_end: float | None = None
    unsettled: list[str] = attrs.field(factory=list)  # faults whose crash never showed
    ready_after: float | None = None  # seconds from the storm's end to /readyz 200
    started_wall: float = attrs.field(factory=time.time)
    errors: list[str] = attrs.field(factory=list)  # drill-side problems (probe failures...)


class _Storm:
    def __init__(self, state: StormState, out: IO[str]) -> None:
        self.s = state
        self.admin = AdminView(state.node.admin, state.node.control)
        self.out = out
        self._t0 = time.monotonic()
        self._t0_trio = trio.current_time()
        self._pending: dict[str, collections.deque[FaultRecord]] = collections.defaultdict(
            collections.deque
        )
        self._quarantined: set[str] = set()
        self.settled = trio.Event()

    def now(self) -> float:
        return time.monotonic() - self._t0

    # ---- observers --------------------------------------------------------------------------

    def on_event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if event.get("type") != "ServiceCrashed":
            return
        t, service, reason = self.now(), str(event.get("service")), str(event.get("reason"))
        self.s.crashes.append((t, service, reason))
        self.s.model.crash(service, t)
        queue = self._pending.get(service)
        if not queue:
            self.s.unexpected_crashes.append((t, service, reason))
        else:
            rec = queue.popleft()
            rec.crash_t, rec.crash_reason = t, reason
            if reason != EXPECTED_REASON[rec.fault]:
                self.s.reason_mismatches.append(
                    f"{service}: {rec.fault} ended as {reason!r}, "
                    f"expected {EXPECTED_REASON[rec.fault]!r}"
                )
        if self.s.storm_end is not None and not any(self._pending.values()):
            self.settled.set()

    async def follow_crashes(self, *, task_status: trio.TaskStatus[None]) -> None:
        url = self.admin.base + "/events?topic=kernel.service.crashed"
        await follow_lines(url, self.on_event, task_status=task_status)
        self.s.errors.append("the admin plane ended the /events stream during the drill")

    async def poll(self) -> None:
        while True:
            try:
                await self._poll_once()
            except (HttpError, ValueError) as exc:
                self.s.errors.append(f"poll: {exc}")
            await trio.sleep(POLL_EVERY)

    async def _poll_once(self) -> None:
        version = await self.admin.version()
        for svc in version.get("services", []):
            name, pid, state = svc["name"], svc.get("pid"), svc.get("state")
            self.s.states[name] = state
            self.s.current_pids[name] = pid
            if pid and pid not in self.s.procs_seen:
                proc = identify(pid)
                if proc is not None:
                    self.s.procs_seen[pid] = proc
            if state == "quarantined" and name not in self._quarantined:
                if self.s.model.last_verdict(name) is None:
                    continue  # its crash event is still on the way: decide on the next poll
                self._quarantined.add(name)
                self.s.quarantines.append((self.now(), name))
                self.s.model.observed_quarantine(name)
            if name in self._quarantined and self.s.options.release_quarantined:
                await self.release(name)
        ready = await self.admin.ready()
        if not self.s.readiness or self.s.readiness[-1][1] != ready:
            self.s.readiness.append((self.now(), ready))

    async def release(self, name: str) -> None:
        status, _ = await self.admin.post(f"/release/{name}")
        if status in (200, 409):  # 409: it is not quarantined (any more)
            self._quarantined.discard(name)
            self.s.model.release(name)
            self.s.releases.append((self.now(), name))

    async def probe_healthz(self) -> None:
        while True:
            started = time.monotonic()
            try:
                resp = await request("GET", self.admin.base + "/healthz", timeout=HEALTHZ_TIMEOUT)
                ok = resp.status == 200
            except HttpError:
                ok = False
            self.s.healthz.append((self.now(), time.monotonic() - started, ok))
            await trio.sleep(HEALTHZ_EVERY)

    # ---- the injector -----------------------------------------------------------------------

    async def inject(self) -> None:
        opts = self.s.options
        for planned in self.s.plan:
            await trio.sleep_until(self._t0_trio + planned.at)
            await self.inject_one(planned.service, planned.fault, opts)

    async def inject_one(self, service: str, fault: str, opts: StormOptions) -> None:
        t = self.now()
        state = self.s.states.get(service)
        if state != "ready":
            self.s.faults.append(FaultRecord(t, service, fault, f"skipped: {state}"))
            return
        if self._pending.get(service):
            self.s.faults.append(FaultRecord(t, service, fault, "skipped: fault in flight"))
            return
        query = f"fault={fault}&delay_ms={opts.slow_delay_ms}&duration_s={opts.slow_duration_s}"
        # Pending before the request: the crash can reach us before the answer does.
        rec = FaultRecord(t, service, fault, "landing")
        self.s.faults.append(rec)
        if fault in CRASH_FAULTS:
            self._pending[service].append(rec)
        try:
            status, body = await self.admin.post(f"/fault/{service}?{query}")
            why = "" if status == 200 else body.get("detail") or body.get("error") or str(status)
        except HttpError as exc:
            why = str(exc)
        if not why:
            rec.outcome, rec.pid = "landed", body.get("pid")
            return
        rec.outcome = f"refused: {why}"
        if rec in self._pending[service]:
            self._pending[service].remove(rec)
        elif rec.crash_t is not None:  # a crash we matched to it was not ours after all
            self.s.unexpected_crashes.append((rec.crash_t, service, rec.crash_reason or "?"))

    # ---- progress ---------------------------------------------------------------------------

    def progress_line(self) -> str:
        s = self.s
        landed = sum(1 for f in s.faults if f.outcome == "landed")
        skipped = len(s.faults) - landed
        ready = s.readiness[-1][1] if s.readiness else False
        text = (
            f"[{min(self.now(), s.options.duration):6.1f}/{s.options.duration:g}s] "
            f"faults {landed} (skipped {skipped})  crashes {len(s.crashes)}  "
            f"quarantines {len(s.quarantines)}  ready {'yes' if ready else 'no'}"
        )
        if s.workload is not None:
            c = s.workload.counts
            text += f"  | acked {c.ok['put']}/{c.ok['name']} (obj/name)  errors {c.errors}"
        if s.mail is not None:
            text += f"  mail {len(s.mail.ledger.acked_sends)}/{len(s.mail.ledger.acked)}"
        return text

    async def show_progress(self) -> None:
        tty = self.out.isatty()
        last_line = 0.0
        while True:
            await trio.sleep(PROGRESS_EVERY)
            if tty:
                self.out.write("\r" + self.progress_line() + "\x1b[K")
                self.out.flush()
            elif time.monotonic() - last_line >= 5:
                last_line = time.monotonic()
                print(self.progress_line(), file=self.out, flush=True)

    # ---- the whole storm --------------------------------------------------------------------

    async def run(self) -> None:
        s, opts = self.s, self.s.options
        node_proc = identify(s.node.pid) if s.node.pid else None
        s.rss_before = rss_bytes(s.node.pid) if node_proc else None
        s.restarts_before = restarts_by_service(await self.admin.metrics())
        async with trio.open_nursery() as observers:
            await observers.start(self.follow_crashes)
            await self._poll_once()
            self._t0 = time.monotonic()
            self._t0_trio = trio.current_time()
            s.readiness = [(0.0, s.readiness[-1][1])] if s.readiness else []
            observers.start_soon(self.poll)
            observers.start_soon(self.show_progress)
            async with trio.open_nursery() as storm:
                storm.cancel_scope.deadline = self._t0_trio + opts.duration
                storm.start_soon(self.probe_healthz)
                storm.start_soon(self.inject)
                if s.workload is not None:
                    storm.start_soon(s.workload.run)
                if s.mail is not None:
                    storm.start_soon(s.mail.run)
            s.storm_end = self.now()
            if not any(self._pending.values()):
                self.settled.set()
            with trio.move_on_after(opts.settle_timeout):
                await self.settled.wait()
            s.unsettled = [
                f"{rec.service}: {rec.fault} at {rec.t:.1f}s"
                for queue in self._pending.values()
                for rec in queue
            ]
            with trio.move_on_after(opts.ready_bound):
                while True:
                    for name in list(self._quarantined):
                        await self.release(name)
                    if await self.admin.ready():
                        s.ready_after = self.now() - s.storm_end
                        break
                    await trio.sleep(POLL_EVERY)
            await self._poll_once()
            observers.cancel_scope.cancel()
        if self.out.isatty():
            self.out.write("\r" + self.progress_line() + "\x1b[K\n")
        else:
            print(self.progress_line(), file=self.out, flush=True)
        s.restarts_after = restarts_by_service(await self.admin.metrics())
        s.rss_after = rss_bytes(s.node.pid) if node_proc else None


async def run_storm(
    node: NodeHandle, options: StormOptions, out: IO[str] = sys.stderr
) -> StormState:
    """Run one storm against ``node`` and return what was observed (not yet judged)."""
    admin = AdminView(node.admin, node.control)
    version = await admin.version()
    names = tuple(s["name"] for s in version.get("services", []))
    targets = options.services or names
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ValueError(
            f"unknown service(s): {', '.join(unknown)} (the node runs {', '.join(names)})"
        )
    policy = dict(version.get("supervisor") or {"restart_cap": 5, "restart_window": 60.0})
    plan = plan_faults(
        seed=options.seed,
        duration=options.duration,
        interval=options.interval,
        faults=options.faults,
        services=targets,
    )
    state = StormState(
        options=options,
        node=node,
        plan=plan,
        policy=policy,
        model=QuarantineModel(int(policy["restart_cap"]), float(policy["restart_window"])),
    )
    storm = _Storm(state, out)
    if options.workload and node.gateway:
        wl_opts = WorkloadOptions(
            seed=options.seed,
            rate=options.rate,
            concurrency=options.concurrency,
            max_size=options.max_size,
        )
        with_mail = MAILBOX_SERVICE in names
        token = await AdminView(node.admin, node.control).mint_token(
            ttl=options.duration + WRITE_TOKEN_SLACK,
            ops=("put", "name", "mail") if with_mail else ("put", "name"),
        )
        state.workload = Workload(node.gateway, wl_opts, clock=storm.now, token=token)
        if with_mail:
            state.mail = MailWorkload(node.gateway, token, seed=options.seed, rate=options.rate / 2)
    await storm.run()
    return state
