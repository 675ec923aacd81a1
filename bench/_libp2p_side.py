"""py-libp2p's Kademlia doing what ``bench/dht.py --real`` makes our nodes do (run as a child
process with a Python that has ``libp2p`` installed; prints one JSON document).

N hosts on 127.0.0.1 in this one trio process (TCP, Noise, Yamux: libp2p's defaults), each a
``KadDHT`` in server mode, every one told only host 0; host N-1 provides ``keys`` keys; every
other host finds their providers (cold: the first time, warm: again) and finds peers.

    python bench/_libp2p_side.py N KEYS PAIRS SEED
"""

from __future__ import annotations

import json
import random
import sys
import time
from contextlib import AsyncExitStack

import multiaddr
import trio
from libp2p import generate_new_ed25519_identity, new_host
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service


def ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def main(n: int, keys: int, pairs: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    out: dict[str, list[float]] = {k: [] for k in (
        "findprovs_cold", "findprovs_warm", "findprovs_cold_net", "findprovs_warm_net",
        "findpeer_cold", "findpeer_warm", "provide", "put_to_found",
    )}  # fmt: skip
    misses = 0
    async with AsyncExitStack() as stack:
        hosts, dhts = [], []
        for _ in range(n):
            host = new_host(key_pair=generate_new_ed25519_identity())
            await stack.enter_async_context(host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]))
            dht = KadDHT(host, DHTMode.SERVER)
            await stack.enter_async_context(background_trio_service(dht))
            hosts.append(host)
            dhts.append(dht)
        boot = info_from_p2p_addr(hosts[0].get_addrs()[0])
        started = time.perf_counter()
        for host, dht in zip(hosts[1:], dhts[1:], strict=True):
            await host.connect(boot)
            await dht.add_peer(boot.peer_id)
        for dht in dhts[1:]:
            await dht.refresh_routing_table()
        join_ms = ms(started)
        tables = [dht.get_routing_table_size() for dht in dhts]
        source = dhts[-1]
        ids = [f"{rng.getrandbits(256):064x}" for _ in range(keys)]
        for key in ids:
            started = time.perf_counter()
            await source.provide("1220" + key)  # a sha2-256 multihash of the same digest
            out["provide"].append(ms(started))
            started = time.perf_counter()
            found = await dhts[2].find_providers("1220" + key)
            out["put_to_found"].append(ms(started) + out["provide"][-1])
            misses += not found
        for key in ids:
            for dht in dhts[:-1]:
                local = bool(dht.provider_store.get_providers(bytes.fromhex("1220" + key)))
                for phase in ("cold", "warm"):
                    started = time.perf_counter()
                    found = await dht.find_providers("1220" + key)
                    took = ms(started)
                    out[f"findprovs_{phase}"].append(took)
                    if not local:
                        out[f"findprovs_{phase}_net"].append(took)
                    misses += not found
        for _ in range(pairs):
            i, j = rng.sample(range(n), 2)
            for phase in ("cold", "warm"):
                started = time.perf_counter()
                info = await dhts[i].find_peer(hosts[j].get_id())
                out[f"findpeer_{phase}"].append(ms(started))
                misses += info is None
    return {"join_ms": join_ms, "tables": tables, "misses": misses, **out}


if __name__ == "__main__":
    n, keys, pairs, seed = (int(a) for a in sys.argv[1:5])
    result: dict[str, object] = {}

    async def run() -> None:
        result.update(await main(n, keys, pairs, seed))

    try:
        trio.run(run)
    except BaseException as exc:  # libp2p's services may complain on the way down
        if not result:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500]}))
            raise SystemExit(1) from None
    print(json.dumps(result))
