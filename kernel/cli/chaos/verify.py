"""After the storm: turn what was observed into pass/fail checks, and read every write back.

Each ``Check`` is one invariant of issue 5 with a one-line detail. A check that cannot be made
(no workload, the node runs on another host) passes with a detail that says it was skipped, so the
report always lists the same checks.
"""

from __future__ import annotations

import collections
import json
import math

import attrs
import trio

from ipc import manifest
from kernel.cli.chaos.http import HttpError, request
from kernel.cli.chaos.procs import descendants_of, identify, is_alive, service_of
from kernel.cli.chaos.storm import StormState
from kernel.cli.chaos.workload import Workload, object_bytes
from kernel.faults import CRASH_FAULTS

__all__ = ["Check", "ReadBack", "judge", "percentile", "read_back"]

READ_CONCURRENCY = 8
READ_ATTEMPTS = 5
READ_RETRY_DELAY = 1.0
RSS_GROWTH_LIMIT = 64 * 1024 * 1024


@attrs.frozen
class Check:
    name: str
    ok: bool
    detail: str


@attrs.define
class ReadBack:
    objects: int = 0
    identical: int = 0
    chunked: int = 0  # of the identical: objects over 1 MiB (chunks under a manifest)
    largest: int = 0  # bytes of the largest identical one
    lost: list[str] = attrs.field(factory=list)  # 404: acknowledged, now gone
    corrupt: list[str] = attrs.field(factory=list)  # 200 with other bytes
    unreadable: list[str] = attrs.field(factory=list)  # never answered 200/404
    names: int = 0
    names_ok: int = 0
    names_wrong: list[str] = attrs.field(factory=list)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _get_until_definite(url: str) -> tuple[int, bytes] | None:
    """(status, body) for a 200 or 404; None when every attempt failed otherwise."""
    for attempt in range(READ_ATTEMPTS):
        try:
            resp = await request("GET", url, timeout=10.0)
            if resp.status in (200, 404):
                return resp.status, resp.body
        except HttpError:
            pass
        if attempt + 1 < READ_ATTEMPTS:
            await trio.sleep(READ_RETRY_DELAY)
    return None


async def read_back(workload: Workload) -> ReadBack:
    """GET every acknowledged object and name once the node is ready again."""
    result = ReadBack()
    ledger = workload.ledger
    limiter = trio.CapacityLimiter(READ_CONCURRENCY)

    async def one_object(obj_id: str) -> None:
        obj = ledger.objects[obj_id]
        async with limiter:
            answer = await _get_until_definite(f"{workload.gateway}/o/{obj_id}")
        if answer is None:
            result.unreadable.append(obj_id)
        elif answer[0] == 404:
            result.lost.append(obj_id)
        elif answer[1] != object_bytes(obj.seed, obj.size):
            result.corrupt.append(obj_id)
        else:
            result.identical += 1
            result.chunked += obj.size > manifest.CHUNK
            result.largest = max(result.largest, obj.size)

    async def one_name(name: str) -> None:
        record = ledger.names[name]
        async with limiter:
            answer = await _get_until_definite(f"{workload.gateway}/names/{name}")
        got: object = None
        if answer is not None and answer[0] == 200:
            try:
                got = json.loads(answer[1]).get("id")
            except (ValueError, AttributeError):
                got = None
        if got == record.acked_id or got in record.maybe:
            result.names_ok += 1
        else:
            result.names_wrong.append(f"{name} -> {got} (acked {record.acked_id})")

    result.objects = len(ledger.order)
    acked_names = [n for n, r in ledger.names.items() if r.acked_id is not None]
    result.names = len(acked_names)
    async with trio.open_nursery() as nursery:
        for obj_id in list(ledger.order):
            nursery.start_soon(one_object, obj_id)
        for name in acked_names:
            nursery.start_soon(one_name, name)
    return result


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def judge(state: StormState, readback: ReadBack | None) -> list[Check]:
    """Every invariant of the drill, in report order."""
    checks: list[Check] = []
    checks += _data_checks(state, readback)
    checks.append(mail_check(state))
    checks.append(_restart_check(state))
    mismatches = state.model.mismatches()
    checks.append(
        Check(
            "quarantine_exactly_at_cap",
            not mismatches,
            "; ".join(mismatches)
            or f"{len(state.quarantines)} quarantine(s), each when the cap "
            f"({state.policy.get('restart_cap')} per {state.policy.get('restart_window')} s) "
            "was exceeded",
        )
    )
    checks.append(_healthz_check(state))
    checks.append(process_check(state))
    bound = state.options.ready_bound
    checks.append(
        Check(
            "ready_again_within_bound",
            state.ready_after is not None,
            f"ready {state.ready_after:.2f} s after the storm (bound {bound:g} s)"
            if state.ready_after is not None
            else f"not ready within {bound:g} s after the storm",
        )
    )
    before, after = state.rss_before, state.rss_after
    if before is None or after is None:
        checks.append(Check("supervisor_rss", True, "skipped: the node is not on this host"))
    else:
        growth = after - before
        checks.append(
            Check(
                "supervisor_rss",
                growth <= RSS_GROWTH_LIMIT,
                f"{before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB "
                f"(limit +{RSS_GROWTH_LIMIT / 2**20:.0f} MiB)",
            )
        )
    if state.errors:
        checks.append(Check("drill_observers", False, "; ".join(state.errors[:3])))
    return checks


def _data_checks(state: StormState, rb: ReadBack | None) -> list[Check]:
    wl = state.workload
    if wl is None or rb is None:
        skipped = "skipped: no workload (the node has no gateway, or --no-workload)"
        return [
            Check("acked_writes_read_back", True, skipped),
            Check("acked_names_resolve", True, skipped),
            Check("no_corruption_during_storm", True, skipped),
        ]
    bad = rb.lost + rb.corrupt + rb.unreadable
    detail = f"{rb.identical}/{rb.objects} acknowledged objects read back byte-identical"
    if bad:
        detail += (
            f"; LOST {len(rb.lost)}, corrupt {len(rb.corrupt)}, unreadable {len(rb.unreadable)}"
            f" (e.g. {bad[0]})"
        )
    c = wl.counts
    during = f"read mismatches {c.read_mismatch}, wrong ids acked {c.wrong_id}"
    return [
        Check("acked_writes_read_back", not bad, detail),
        Check(
            "acked_names_resolve",
            not rb.names_wrong,
            f"{rb.names_ok}/{rb.names} acknowledged names resolve to their last acknowledged id"
            + (f"; wrong: {rb.names_wrong[0]}" if rb.names_wrong else ""),
        ),
        Check("no_corruption_during_storm", c.read_mismatch == 0 and c.wrong_id == 0, during),
    ]


def mail_check(state: StormState) -> Check:
    """Every acknowledged send received and acked; nothing acked came back (issue 14)."""
    mail = state.mail
    if mail is None:
        return Check("acked_messages_delivered_once", True, "skipped: no mailbox workload")
    led = mail.ledger
    lost, unsettled = led.lost(), led.unsettled()
    ok = not lost and not unsettled and not led.came_back and bool(state.mail_drained)
    detail = (
        f"{len(led.acked_sends)} acknowledged sends, {len(led.acked)} acked after processing; "
        f"{led.redelivered} redeliveries of never-acked deliveries, "
        f"{len(led.came_back)} after an ack"
    )
    if led.dead_lettered:
        detail += f"; {led.dead_lettered} dead-lettered (max_deliver) and redriven"
    if lost or unsettled:
        detail += f"; LOST {len(lost)}, unsettled {len(unsettled)} (e.g. {(lost + unsettled)[0]})"
    if not state.mail_drained:
        detail += "; not drained in time"
    return Check("acked_messages_delivered_once", ok, detail)


def _restart_check(state: StormState) -> Check:
    landed: collections.Counter[str] = collections.Counter(
        f.service for f in state.faults if f.outcome == "landed" and f.fault in CRASH_FAULTS
    )
    crashed: collections.Counter[str] = collections.Counter(s for _, s, _ in state.crashes)
    problems = []
    for service in sorted(set(landed) | set(crashed) | set(state.restarts_after)):
        delta = state.restarts_after.get(service, 0.0) - state.restarts_before.get(service, 0.0)
        if not (delta == landed[service] == crashed[service]):
            problems.append(
                f"{service}: injected {landed[service]}, crashed {crashed[service]}, "
                f"restarts_total +{delta:g}"
            )
    problems += [f"unexpected crash: {s} ({r}) at {t:.1f}s" for t, s, r in state.unexpected_crashes]
    problems += state.reason_mismatches
    problems += [f"no crash seen for {u}" for u in state.unsettled]
    total = sum(landed.values())
    return Check(
        "restarts_match_crashes_injected",
        not problems,
        "; ".join(problems[:4])
        or f"{total} crash(es) injected = {total} crashes seen = {total} restarts in /metrics",
    )


def _healthz_check(state: StormState) -> Check:
    latencies = [lat for _, lat, ok in state.healthz if ok]
    failed = sum(1 for _, _, ok in state.healthz if not ok)
    p99 = percentile(latencies, 0.99)
    return Check(
        "admin_plane_answered",
        failed == 0 and bool(state.healthz),
        f"/healthz {len(state.healthz) - failed}/{len(state.healthz)} answered, "
        f"p50 {_fmt_ms(percentile(latencies, 0.5))}, p99 {_fmt_ms(p99)}, "
        f"max {_fmt_ms(max(latencies) if latencies else None)}",
    )


def process_check(state: StormState) -> Check:
    """Children of the supervisor are exactly its current services (no zombie); every earlier
    service process is gone (no orphan)."""
    if not state.node.pid or identify(state.node.pid) is None:
        return Check("no_orphans_or_zombies", True, "skipped: the node is not on this host")
    below = descendants_of(state.node.pid)
    current = {pid for pid in state.current_pids.values() if pid}
    zombies = sorted(pid for pid, st in below.items() if st == "Z")
    # helpers of the supervisor (e.g. a fork server) are fine; a *service* process it no longer
    # lists is not
    strays = sorted(pid for pid in set(below) - current if service_of(pid) is not None)
    old_alive = sorted(
        pid for pid, proc in state.procs_seen.items() if pid not in current and is_alive(proc)
    )
    problems = []
    if zombies:
        problems.append(f"zombie children {zombies}")
    if strays:
        problems.append(f"service processes the supervisor does not list {strays}")
    if old_alive:
        problems.append(f"replaced service processes still alive (orphans) {old_alive}")
    return Check(
        "no_orphans_or_zombies",
        not problems,
        "; ".join(problems)
        or f"{len(state.procs_seen)} service processes seen, "
        f"{len(current)} running, all others reaped",
    )


def after_stop_check(state: StormState, returncode: int | None) -> Check:
    """For a node the drill started: it stopped with exit 0 and left no process behind."""
    left = sorted(pid for pid, proc in state.procs_seen.items() if is_alive(proc))
    ok = returncode == 0 and not left
    detail = f"node exited {returncode}"
    detail += f"; processes left behind {left}" if left else "; no process left behind"
    return Check("clean_stop", ok, detail)
