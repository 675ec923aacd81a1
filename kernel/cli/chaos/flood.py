"""The bus-flood drill: publish far beyond capacity while a subscriber is stalled.

What it shows, against a running node (same host: it joins the node's bus in its runtime dir):

1. no publisher blocked: every ``publish()`` call returns at once (the slowest one is reported);
   what does not fit the bounded outbox is dropped and counted (``bus_dropped_total``);
2. the stalled subscriber loses events at the proxy without slowing anyone, and counts what it
   lost when it reads again (``bus_lagged_total``, ``bus_receiver_lag_total``): every flood event
   it did not get is accounted for as lag (a marker published after the flood closes the tail);
3. afterwards the supervisor's own events still get through: ``POST /reload`` (control socket)
   makes the
   supervisor publish ``ConfigUpdated{version}``, which both the (drained) stalled subscriber and
   a fresh one must receive; no service crashed or lost readiness because of the flood.

The drill process records into the node's metrics directory, so the drops and lag it counts show
in the node's /metrics like everyone else's.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import trio

from ipc import events
from ipc.bus import Bus
from ipc.plain import JsonObject
from kernel.cli.chaos.target import AdminView
from kernel.cli.common import CTL_SOCKET
from kernel.metrics import Metrics

__all__ = ["FloodOptions", "FloodResult", "run_flood"]

FLOOD_SERVICE = "chaos.flood"  # the Health events of the flood name no real service
BLOCKED_AFTER = 0.05  # a publish() call longer than this would mean the publisher blocked
# ... unless the OS took the CPU away mid-call (a shared 2-core CI: one 87 ms call was seen). A
# publisher that blocks does so on every call once its outbox is full (thousands of calls), so
# a few slow calls are preemption, not blocking.
PREEMPTIONS_ALLOWED = 3
DRAIN_IDLE = 0.5
EVENT_TIMEOUT = 10.0
BUS_METRICS = ("bus_dropped_total", "bus_lagged_total", "bus_receiver_lag_total")


@attrs.frozen
class FloodOptions:
    events: int = 50_000  # phase 2: one checkpoint per publish, so about one bus message each
    bursts: int = 3  # phase 1: bursts of 2 x capacity publishes with no checkpoint in between
    capacity: int = 4096  # the flooding publisher's outbox
    stalled_capacity: int = 64  # the stalled subscriber's receive queue


@attrs.define
class FloodResult:
    attempted: int = 0
    published: int = 0
    dropped: int = 0
    max_publish_s: float = 0.0
    slow_calls: int = 0  # publish() calls longer than BLOCKED_AFTER
    flood_s: float = 0.0
    stalled_received: int = 0  # flood events the stalled subscriber got after all
    stalled_gaps: int = 0
    stalled_lag_events: int = 0
    config_version: int | None = None
    stalled_saw_config: bool = False
    fresh_saw_config: bool = False
    restarts_during: float = 0.0
    ready_after: bool = False
    node_metric_deltas: dict[str, float] = attrs.field(factory=dict)
    checks: list[JsonObject] = attrs.field(factory=list)

    @property
    def passed(self) -> bool:
        return all(c["ok"] for c in self.checks)


def _bus_metrics(scrape: dict) -> dict[str, float]:
    totals = dict.fromkeys(BUS_METRICS, 0.0)
    for (name, _labels), value in scrape.items():
        if name in totals:
            totals[name] += value
    return totals


def _restarts(scrape: dict) -> float:
    return sum(v for (name, _), v in scrape.items() if name == "service_restarts_total")


async def _wait_config(bus: Bus, version: int, result: FloodResult) -> bool:
    with trio.move_on_after(EVENT_TIMEOUT):
        while True:
            event = await bus.recv()
            if isinstance(event, events.ConfigUpdated) and event.version == version:
                return True
            if isinstance(event, events.Health) and event.service == FLOOD_SERVICE:
                result.stalled_received += 1
    return False


async def run_flood(runtime_dir: Path, admin_url: str, options: FloodOptions) -> FloodResult:
    """Run the drill against the node whose runtime dir is ``runtime_dir``."""
    admin = AdminView(admin_url, runtime_dir / CTL_SOCKET)
    result = FloodResult()
    before = parse_scrape_metrics(await admin.metrics())
    metrics = Metrics(runtime_dir / "metrics", amnesia=False)
    flood_event = events.Health(service=FLOOD_SERVICE, ok=True)
    async with (
        Bus.connect(
            runtime_dir, topics=("kernel",), capacity=options.stalled_capacity, metrics=metrics
        ) as stalled,
        Bus.connect(runtime_dir, topics=(), capacity=options.capacity, metrics=metrics) as pub,
    ):
        started = time.perf_counter()
        took: list[float] = []

        def timed_publish() -> None:
            t = time.perf_counter()
            pub.publish(flood_event)
            took.append(time.perf_counter() - t)

        # Phase 1: more than the outbox holds between two flushes: the publisher must drop.
        for _ in range(options.bursts):
            for _ in range(2 * options.capacity):
                timed_publish()
            await trio.lowlevel.checkpoint()
        # Phase 2: many small bus messages: the stalled subscriber's queue overflows at the proxy.
        for _ in range(options.events):
            timed_publish()
            await trio.lowlevel.checkpoint()
        await pub.flushed()
        result.flood_s = time.perf_counter() - started
        result.max_publish_s = max(took, default=0.0)
        result.slow_calls = sum(1 for t in took if t >= BLOCKED_AFTER)
        result.attempted = options.bursts * 2 * options.capacity + options.events
        result.published, result.dropped = pub.stats.published, pub.stats.dropped
        # The stalled subscriber reads again: what it gets plus the gaps it counts.
        with trio.move_on_after(EVENT_TIMEOUT):
            while True:
                with trio.move_on_after(DRAIN_IDLE) as idle:
                    event = await stalled.recv()
                    if isinstance(event, events.Health) and event.service == FLOOD_SERVICE:
                        result.stalled_received += 1
                if idle.cancelled_caught:
                    break
        # A marker closes the tail: a loss after the last delivered event becomes a visible gap.
        pub.publish(flood_event)
        await pub.flushed()
        result.published += 1
        async with Bus.connect(runtime_dir, topics=("kernel.config",), metrics=metrics) as fresh:
            status, body = await admin.post("/reload")
            if status == 200:
                result.config_version = int(body.get("config_version", 0))
                result.stalled_saw_config = await _wait_config(
                    stalled, result.config_version, result
                )
                result.fresh_saw_config = await _wait_config(fresh, result.config_version, result)
        result.stalled_gaps = stalled.stats.lagged
        result.stalled_lag_events = stalled.stats.lag_events
    metrics.close()
    after_scrape = await admin.metrics()
    after = parse_scrape_metrics(after_scrape)
    result.node_metric_deltas = {k: after[k] - before[k] for k in BUS_METRICS}
    result.restarts_during = after["restarts"] - before["restarts"]
    result.ready_after = await admin.ready()
    result.checks = _checks(result)
    return result


def parse_scrape_metrics(scrape: dict) -> dict[str, float]:
    out = _bus_metrics(scrape)
    out["restarts"] = _restarts(scrape)
    return out


def _check(name: str, ok: bool, detail: str) -> JsonObject:
    return {"name": name, "ok": ok, "detail": detail}


def _checks(r: FloodResult) -> list[JsonObject]:
    missing = r.published - r.stalled_received
    return [
        _check(
            "publisher_never_blocked",
            r.slow_calls <= PREEMPTIONS_ALLOWED,
            f"{r.attempted} publishes in {r.flood_s:.2f} s, slowest call "
            f"{r.max_publish_s * 1e6:.0f} us, {r.slow_calls} over "
            f"{BLOCKED_AFTER * 1e3:.0f} ms",
        ),
        _check(
            "drops_counted",
            r.published + r.dropped == r.attempted + 1 and r.dropped > 0,
            f"{r.published} queued + {r.dropped} dropped at the publisher "
            f"(bus_dropped_total +{r.node_metric_deltas.get('bus_dropped_total', 0):g})",
        ),
        _check(
            "lag_counted",
            r.stalled_lag_events >= missing and r.stalled_gaps > 0,
            f"stalled subscriber got {r.stalled_received}, missed {missing}, counted "
            f"{r.stalled_lag_events} in {r.stalled_gaps} gaps "
            f"(bus_lagged_total +{r.node_metric_deltas.get('bus_lagged_total', 0):g})",
        ),
        _check(
            "supervisor_events_get_through",
            r.stalled_saw_config and r.fresh_saw_config,
            f"ConfigUpdated{{version: {r.config_version}}} reached the stalled subscriber: "
            f"{r.stalled_saw_config}, a fresh one: {r.fresh_saw_config}",
        ),
        _check(
            "node_unharmed",
            r.restarts_during == 0 and r.ready_after,
            f"restarts during the flood {r.restarts_during:g}, ready after: {r.ready_after}",
        ),
    ]
