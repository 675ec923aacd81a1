"""Our side of ``bench/dht.py --real``: N real micronodes (``ronctl run``, every service its own
process) on 127.0.0.1, each told only node 1 (``--bootstrap``); node N stores ``keys`` objects
(``PUT /o``: svc-dht provides them by itself); every other node finds their providers through
its svc-dht (``findprovs`` on the command socket, what svc-overlay's fetch asks: cold, then
warm), then ``findpeer`` for random pairs; and the time from a PUT on node N to the first
successful GET through node 3's gateway (which never listed node N).
"""

from __future__ import annotations

import json
import random
import time
from contextlib import AsyncExitStack
from typing import Any

import trio

from ipc.commands import CommandClient
from ipc.proto import dht
from ipc.proto.codec import call
from kernel.cli.chaos import target
from kernel.cli.chaos.http import HttpError, request

JOIN_BOUND = 120.0


def ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def run_ours(n: int, keys: int, pairs: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    out: dict[str, list[float]] = {k: [] for k in (
        "findprovs_cold", "findprovs_warm", "findprovs_cold_net", "findprovs_warm_net",
        "findpeer_cold", "findpeer_warm", "put_to_found",
    )}  # fmt: skip
    misses = 0
    async with AsyncExitStack() as stack:
        nodes: list[target.NodeHandle] = []
        ids: list[str] = []
        for _ in range(n):
            extra = ["--bootstrap", f"{ids[0]}@{nodes[0].urls['overlay'][6:]}"] if nodes else []
            node = await stack.enter_async_context(target.start_node("micronode", extra_args=extra))
            nodes.append(node)
            ids.append(str((await target.AdminView(node.admin).version())["node_id"]))
        clients = [
            await stack.enter_async_context(
                CommandClient.connect(node.control.parent, "svc-dht", max_inflight=4, timeout=30.0)  # type: ignore[union-attr]
            )
            for node in nodes
        ]
        started = time.perf_counter()
        deadline = time.monotonic() + JOIN_BOUND
        while time.monotonic() < deadline:
            tables = [(await call(c, dht.LOCAL, dht.Table())).contacts for c in clients]
            if min(tables) >= min(n - 1, 8):
                break
            await trio.sleep(0.2)
        join_ms = ms(started)
        source = nodes[-1]
        view = target.AdminView(source.admin, source.control)
        token = await view.mint_token(ttl=3600, ops=("put",))
        headers = [("content-type", "application/octet-stream")]
        headers += [("authorization", f"Bearer {token}")] if token else []
        objects = []
        for k in range(keys):
            body = f"object {k} of the bench, seed {seed}, {rng.random()}\n".encode() * 50
            started = time.perf_counter()
            resp = await request("PUT", source.gateway + "/o", body=body, headers=headers)
            assert resp.status in (200, 201), resp.status
            obj_id = json.loads(resp.body)["id"]
            objects.append(obj_id)
            while True:
                try:
                    got = await request("GET", nodes[2].gateway + f"/o/{obj_id}", timeout=30)
                except HttpError:
                    got = None
                if got is not None and got.status == 200 and got.body == body:
                    break
                await trio.sleep(0.02)
            out["put_to_found"].append(ms(started))
        for obj_id in objects:
            for client in clients[:-1]:
                for phase in ("cold", "warm"):
                    started = time.perf_counter()
                    found = await call(client, dht.LOCAL, dht.FindProvs(id=obj_id))
                    took = ms(started)
                    out[f"findprovs_{phase}"].append(took)
                    if found.hops > 0:  # not held here: a lookup over the network
                        out[f"findprovs_{phase}_net"].append(took)
                    misses += not found.providers
        for _ in range(pairs):
            i, j = rng.sample(range(n), 2)
            for phase in ("cold", "warm"):
                started = time.perf_counter()
                try:
                    await call(clients[i], dht.LOCAL, dht.FindPeer(node_id=ids[j]))
                except Exception:  # counted: a bench reports, it does not stop
                    misses += 1
                out[f"findpeer_{phase}"].append(ms(started))
    return {"join_ms": join_ms, "tables": tables, "misses": misses, **out}
