"""``bench/dht.py --memory``: svc-dht's RSS with 100,000 records held and a full routing table.

A real micronode; the bench talks to its svc-dht's command socket (node-internal, as svc-overlay
does when it relays): ``add_providers`` batches of signed records (``--records``, from 50
providers) and pings from 2,000 fresh identities with their signed peer records (they fill the
table's buckets as far as k allows, spares included). RSS (VmRSS) and PSS (shared pages
counted by their share: svc-dht is forked from the node's fork server, whose imported modules
it shares) are read from ``/proc`` before, after, and 5 s later (nothing grows by itself).
"""

from __future__ import annotations

import random
import time
from contextlib import AsyncExitStack
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ipc.commands import CommandClient
from ipc.proto import dht
from ipc.proto.codec import call
from kernel.cli.chaos import target
from services.dht.wire import peer_to_wire
from services.lib.kad import Signer, text_of
from services.lib.kad.records import VALIDITY

PROVIDERS = 50
IDENTITIES = 2000


def _proc_mib(path: str, field: str) -> float:
    with open(path) as f:  # a tiny /proc read
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(pid: int) -> float:
    return _proc_mib(f"/proc/{pid}/status", "VmRSS:")


def pss_mib(pid: int) -> float:
    """Proportional set size: pages shared with the fork server count by their share."""
    return _proc_mib(f"/proc/{pid}/smaps_rollup", "Pss:")


async def run_memory(records: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(target.start_node("micronode"))
        version = await target.AdminView(node.admin).version()
        pid = next(s["pid"] for s in version["services"] if s["name"] == "svc-dht")
        client = await stack.enter_async_context(
            CommandClient.connect(node.control.parent, "svc-dht", max_inflight=8, timeout=60.0)  # type: ignore[union-attr]
        )
        await trio.sleep(1.0)
        idle, idle_pss = rss_mib(pid), pss_mib(pid)
        started = time.perf_counter()
        signers = [Signer(Ed25519PrivateKey.generate()) for _ in range(PROVIDERS)]
        expires = int(time.time()) + VALIDITY
        stored = 0
        per = records // PROVIDERS
        for signer in signers:
            keys = [rng.getrandbits(256) for _ in range(per)]
            for start in range(0, per, dht.MAX_BATCH):
                chunk = keys[start : start + dht.MAX_BATCH]
                recs = [signer.provider(k, ("10.0.0.1:9410",), expires) for k in chunk]
                added = await call(
                    client,
                    dht.LOCAL,
                    dht.AddProviders(
                        public=signer.public,
                        addrs=("10.0.0.1:9410",),
                        expires=expires,
                        keys=tuple(k.to_bytes(32, "big") for k in chunk),
                        sigs=tuple(r.sig for r in recs),
                    ),
                )
                stored += added.stored
        now = time.time()
        for i in range(IDENTITIES):
            fake = Signer(Ed25519PrivateKey.generate())
            record = fake.peer((f"10.{i >> 8 & 255}.{i & 255}.1:9410",), 1, int(now) + 600)
            await call(
                client,
                dht.LOCAL,
                dht.Ping(
                    sender=peer_to_wire(record),
                    via=text_of(fake.node),
                    ip=f"10.9.{i >> 8}.{i & 255}",
                ),
            )
        fill_s = time.perf_counter() - started
        table = await call(client, dht.LOCAL, dht.Table())
        full, full_pss = rss_mib(pid), pss_mib(pid)
        await trio.sleep(5.0)
        later, later_pss = rss_mib(pid), pss_mib(pid)
    return {
        "idle_mib": idle,
        "full_mib": full,
        "later_mib": later,
        "idle_pss": idle_pss,
        "full_pss": full_pss,
        "later_pss": later_pss,
        "records": table.records,
        "stored": stored,
        "contacts": table.contacts,
        "fill_s": fill_s,
    }
