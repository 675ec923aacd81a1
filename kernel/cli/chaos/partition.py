"""The partition drill (``ronctl chaos partition``): split local nodes in two, then heal.

It starts ``nodes`` micronodes chained to the first one through the DHT (``--bootstrap``),
lets each PUT an object, and splits them into group A (the first ``split`` nodes) and group B
with the ``partition`` fault (``kernel.faults``) in every node's svc-overlay and svc-dht: each
side's transport drops the other side's node ids for ``duration`` seconds. During the split
every node PUTs another object and every node GETs every other node's objects through its own
gateway; after the heal it does again. Verdict (each check can fail):

- during the split, a GET inside a group answers 200 with the right bytes; across the split
  503 (a client may retry), never 404 (the object exists) and never 200 (the split leaks);
- after the heal, every cross-group GET succeeds within ``heal_bound``;
- ``ron_dht_missing_records`` is 0 on every node within ``heal_bound`` of the heal.

The JSON report holds the probes and the missing-records samples on one time axis (seconds
since the split); ``partition_plot`` draws them.
"""

from __future__ import annotations

import json
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import trio

from kernel.cli.chaos import target
from kernel.cli.chaos.http import HttpError, request

__all__ = ["PartitionOptions", "run_partition"]

PROBE_TIMEOUT = 40.0  # one GET through a gateway (a fetch across the split answers 503 sooner)
POLL = 0.5
CROSS_EVERY = 3.0  # seconds between two GETs of one object across the split


@attrs.frozen
class PartitionOptions:
    nodes: int = 6
    split: int = 3
    duration: float = 30.0
    heal_bound: float = 60.0
    join_bound: float = 60.0
    profile: str = "micronode"
    log_dir: Path | None = None


@attrs.define
class _Node:
    handle: target.NodeHandle
    view: target.AdminView
    node_id: str
    token: str | None
    group: str
    objects: list[tuple[str, bytes, str]] = attrs.field(factory=list)  # (id, bytes, phase)


@attrs.define
class _Drill:
    options: PartitionOptions
    nodes: list[_Node] = attrs.field(factory=list)
    t0: float = 0.0
    heal_at: float = 0.0
    probes: list[dict[str, Any]] = attrs.field(factory=list)
    missing: list[dict[str, Any]] = attrs.field(factory=list)
    checks: list[dict[str, Any]] = attrs.field(factory=list)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3) if self.t0 else 0.0

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append({"name": name, "ok": ok, "detail": detail})


async def run_partition(options: PartitionOptions) -> dict[str, Any]:
    if not 1 <= options.split < options.nodes:
        raise ValueError("--split must leave at least one node on each side")
    drill = _Drill(options)
    async with AsyncExitStack() as stack:
        await _start(drill, stack)
        await _joined(drill)
        for node in drill.nodes:
            await _put(node, f"before the split, from {node.node_id}", "before")
        await _split(drill)
        async with trio.open_nursery() as sampling:
            sampling.start_soon(_sample_missing, drill)
            for node in drill.nodes:
                await _put(node, f"during the split, from {node.node_id}", "split")
            await _probe_all(drill, "split")
            await trio.sleep(max(0.0, drill.options.duration - drill.now()))
            drill.heal_at = drill.now()
            await _after_heal(drill)
            sampling.cancel_scope.cancel()
    return _report(drill)


async def _sample_missing(drill: _Drill) -> None:
    """``ron_dht_missing_records`` of every node, once a second, for the picture."""
    sample = 0
    while True:
        at = drill.now()
        for node in drill.nodes:
            try:
                scrape = await node.view.metrics()
            except HttpError:
                continue
            value = scrape.get(("ron_dht_missing_records", ()), 0.0)
            drill.missing.append({"t": at, "node": node.node_id, "value": value, "round": sample})
        sample += 1
        await trio.sleep(1.0)


async def _start(drill: _Drill, stack: AsyncExitStack) -> None:
    opts = drill.options
    boot: list[str] = []
    for i in range(opts.nodes):
        log = opts.log_dir / f"node{i + 1}.log" if opts.log_dir else None
        extra = ["--bootstrap", boot[0]] if boot else []
        handle = await stack.enter_async_context(
            target.start_node(opts.profile, log_path=log, extra_args=extra)
        )
        view = target.AdminView(handle.admin, handle.control)
        node_id = str((await view.version())["node_id"])
        if not boot:
            boot.append(f"{node_id}@{handle.urls['overlay'].removeprefix('tcp://')}")
        token = await view.mint_token(ttl=3600, ops=("put",))
        group = "A" if i < opts.split else "B"
        drill.nodes.append(_Node(handle, view, node_id, token, group))


async def _joined(drill: _Drill) -> None:
    deadline = time.monotonic() + drill.options.join_bound
    want = len(drill.nodes) - 1
    counts: list[int] = []
    while time.monotonic() < deadline:
        counts = [int((await n.view.get("/dht"))["contacts"]) for n in drill.nodes]
        if min(counts) >= want:
            break
        await trio.sleep(POLL)
    drill.check(
        "joined",
        bool(counts) and min(counts) >= 1,
        f"contacts per node {counts} (each told only node 1)",
    )


async def _put(node: _Node, text: str, phase: str) -> None:
    body = (text + "\n").encode() * 64
    headers = [("content-type", "application/octet-stream")]
    if node.token:
        headers.append(("authorization", f"Bearer {node.token}"))
    resp = await request("PUT", node.handle.urls["gateway"] + "/o", body=body, headers=headers)
    if resp.status not in (200, 201):
        raise HttpError(f"PUT on {node.node_id[:16]}: HTTP {resp.status}")
    obj_id = json.loads(resp.body)["id"]
    node.objects.append((obj_id, body, phase))


async def _split(drill: _Drill) -> None:
    groups = {g: [n.node_id for n in drill.nodes if n.group == g] for g in ("A", "B")}
    drill.t0 = time.monotonic()
    for node in drill.nodes:
        others = groups["B" if node.group == "A" else "A"]
        for service in ("svc-overlay", "svc-dht"):
            path = (
                f"/fault/{service}?fault=partition&duration_s={drill.options.duration}"
                f"&peers={','.join(others)}"
            )
            status, body = await node.view.post(path)
            if status != 200:
                raise HttpError(f"partition of {service} refused: HTTP {status} {body}")


async def _get(drill: _Drill, at: _Node, obj: tuple[str, bytes, str], owner: _Node) -> int:
    """One GET of ``obj`` through ``at``'s gateway; its status (0: no answer), recorded."""
    obj_id, body, phase = obj
    started = drill.now()
    try:
        resp = await request(
            "GET", at.handle.urls["gateway"] + f"/o/{obj_id}", timeout=PROBE_TIMEOUT
        )
        status = resp.status if resp.status != 200 or resp.body == body else -200
    except HttpError:
        status = 0
    drill.probes.append(
        {
            "t": started,
            "ms": round((drill.now() - started) * 1000),
            "from": at.node_id,
            "to": owner.node_id,
            "same_group": at.group == owner.group,
            "id": obj_id,
            "object_phase": phase,
            "status": status,
        }
    )
    return status


async def _probe_all(drill: _Drill, phase: str) -> None:
    async with trio.open_nursery() as nursery:
        for at in drill.nodes:
            for owner in drill.nodes:
                if owner is at:
                    continue
                for obj in owner.objects:
                    nursery.start_soon(_probe_until_settled, drill, at, obj, owner, phase)
    split = [p for p in drill.probes if p["t"] < drill.options.duration]
    same = [p for p in split if p["same_group"]]
    cross = [p for p in split if not p["same_group"]]
    last = {(p["from"], p["id"]): p["status"] for p in same}  # probes are in time order
    drill.check(
        "split: fetches inside a group succeed",
        len(last) == _pairs(drill, True) and all(s == 200 for s in last.values()),
        f"{sum(s == 200 for s in last.values())} of {_pairs(drill, True)} in the end; "
        f"probes: {_tally(same)}",
    )
    drill.check(
        "split: fetches across answer 503, never 404",
        bool(cross) and all(p["status"] == 503 for p in cross),
        _tally(cross),
    )


async def _probe_until_settled(
    drill: _Drill, at: _Node, obj: tuple[str, bytes, str], owner: _Node, phase: str
) -> None:
    """Inside a group, GET until 200 (the provider record may still be on its way); across,
    every few seconds while the split lasts: the answer must be 503 whenever it is asked."""
    deadline = drill.options.duration * 0.8
    if at.group != owner.group:
        while True:
            await _get(drill, at, obj, owner)
            if drill.now() + CROSS_EVERY >= deadline:
                return
            await trio.sleep(CROSS_EVERY)
    while drill.now() < deadline:  # polling another process's state: no event to wait on
        if await _get(drill, at, obj, owner) == 200:
            return
        await trio.sleep(POLL)


async def _after_heal(drill: _Drill) -> None:
    bound = drill.heal_at + drill.options.heal_bound
    pending = [
        (at, obj, owner)
        for at in drill.nodes
        for owner in drill.nodes
        if at.group != owner.group
        for obj in owner.objects
    ]
    healed_at = None
    while pending and drill.now() < bound:
        still = []
        for at, obj, owner in pending:
            if await _get(drill, at, obj, owner) != 200:
                still.append((at, obj, owner))
        pending = still
        if pending:
            await trio.sleep(POLL)
    if not pending:
        healed_at = drill.now()
    drill.check(
        "heal: fetches across succeed",
        not pending,
        f"all within {healed_at - drill.heal_at:.1f} s of the heal"
        if healed_at is not None
        else f"{len(pending)} cross-group fetches still failing after {drill.options.heal_bound} s",
    )
    zero_at = None
    while drill.now() < bound + drill.options.heal_bound:
        values = []
        for node in drill.nodes:
            scrape = await node.view.metrics()
            values.append(scrape.get(("ron_dht_missing_records", ()), 0.0))
        if not any(values):
            zero_at = drill.now()
            break
        await trio.sleep(POLL)
    drill.check(
        "heal: ron_dht_missing_records back to 0",
        zero_at is not None,
        f"0 on every node {zero_at - drill.heal_at:.1f} s after the heal"
        if zero_at is not None
        else "missing records stayed above 0",
    )


def _pairs(drill: _Drill, same: bool) -> int:
    """How many (reader, object) pairs there are inside (or across) the groups."""
    total = 0
    for at in drill.nodes:
        for owner in drill.nodes:
            if owner is not at and (at.group == owner.group) == same:
                total += len(owner.objects)
    return total


def _tally(probes: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for p in probes:
        status = p["status"]
        key = {200: "200", -200: "wrong bytes", 0: "no answer"}.get(status, str(status))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{v} x {k}" for k, v in sorted(counts.items())) or "no probes"


def _report(drill: _Drill) -> dict[str, Any]:
    return {
        "drill": "partition",
        "passed": all(c["ok"] for c in drill.checks),
        "nodes": [{"node_id": n.node_id, "group": n.group} for n in drill.nodes],
        "duration_s": drill.options.duration,
        "heal_at": drill.heal_at,
        "checks": drill.checks,
        "probes": drill.probes,
        "missing": drill.missing,
    }
