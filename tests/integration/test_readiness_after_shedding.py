"""Readiness recovers by itself after write shedding (issue: the restart-storm drill failed).

A burst of PUTs against a slow svc-storage makes the gateway shed writes (429) and report itself
not-ready. A load balancer honouring /readyz then sends nothing more, so /readyz must return to
200 on the clock alone, with no further request. Real node, real sockets on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.support.node_harness import RunningNode, http_request, poll_until, start_node

pytestmark = pytest.mark.slow

BURST = 60


async def _burst_of_puts(node: RunningNode, token: str) -> list[int]:
    host, port = node.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
    statuses: list[int] = []

    async def put(i: int) -> None:
        headers = {"authorization": f"Bearer {token}"}
        body = f"burst object {i}".encode()
        resp = await trio.to_thread.run_sync(
            lambda: http_request(host, int(port), "PUT", "/o", body, headers, timeout=30)
        )
        statuses.append(resp.status)

    async with trio.open_nursery() as nursery:
        for i in range(BURST):
            nursery.start_soon(put, i)
    return statuses


async def test_readyz_returns_to_200_after_shedding_without_another_request(
    tmp_path: Path,
) -> None:
    with trio.fail_after(90):
        async with start_node(tmp_path) as node:
            token = await node.mint(ops=["put"], ttl=600)
            slow = await node.post("/fault/svc-storage?fault=slow&delay_ms=400&duration_s=4")
            assert slow.status == 200, slow.body
            statuses = await _burst_of_puts(node, token)
            assert statuses.count(429) >= 20, statuses  # writes were shed...
            assert all(s in (200, 201, 429) for s in statuses), statuses
            degraded = await node.get("/readyz")
            assert degraded.status == 503, degraded.body  # ...and the gateway said so
            assert "svc-gateway" in degraded.json()["missing"]
            # No request reaches the gateway from here on: only the clock can clear it.
            await poll_until(
                lambda: _ready(node), timeout=30, what="/readyz 200 with no further write"
            )


async def _ready(node: RunningNode) -> bool:
    return (await node.get("/readyz")).status == 200
