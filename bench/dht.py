"""DHT benchmark: ``services/lib/kad`` on a simulated 10,000-node network (``--sim N``).

``--sim N`` builds N nodes with real routing tables (``bench/_kadsim.py``: per-pair RTT
log-normal around ``--rtt-ms``, ``--loss`` per message each way costing a TCP retransmission,
``--timeout`` for a node that is gone) and measures, with the very code svc-dht runs:

* find-node (a lookup of an existing node's id): hops p50/p95/p99 (the seeds' SLO: p99 <= 5),
  success (the node itself answered), messages per lookup, simulated latency p50/p95;
  beside it the same lookups unhedged (``hedge_delay`` = timeout: the baseline of the hedge);
* find-providers (objects provided on their k nearest nodes; a lookup stops at the first
  provider record): success, hops, messages, latency;
* both again with ``--churn`` (default 20 %) of the nodes gone without notice (they stay in
  every table: the lookups meet their timeouts);
* providing ``--objects`` (default 100,000) objects from one node: by sweep (one lookup per
  keyspace region, one batch per node of the region: ``services/lib/kad/sweep.py``, simulated
  whole) vs one lookup and k stores per object (its lookup cost sampled over ``--lookups``
  objects and scaled): messages, and the ratio (target >= 10x fewer).

    python bench/dht.py --sim 10000 [--lookups 1000] [--objects 100000] [--churn 0.2]

``--real N`` (e.g. 24): N real micronodes on loopback, one bootstrap (``bench/_dht_real.py``)
side by side in the same run with N py-libp2p Kademlia hosts doing the same provide,
find-providers and find-peer (``bench/_libp2p_side.py``, run by ``--libp2p-python``: a Python
with ``pip install libp2p``; default: this one). Latencies are what the caller waits for: our
nodes' svc-dht over its command socket (what svc-overlay asks), py-libp2p's ``KadDHT`` called
in its own process. "net" rows: the finds from nodes that held no record themselves.

    python bench/dht.py --real 24 [--keys 5] [--pairs 40] [--libp2p-python PATH]

``--memory 100000``: svc-dht's RSS in a real micronode holding that many records and a full
table, beside its idle RSS in the same run (``bench/_dht_memory.py``; target < 64 MiB).

Prints one table. Deterministic schedules for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._kadsim import Network, Outcome  # noqa: E402
from services.lib.kad import (  # noqa: E402
    assign,
    estimate_size,
    region_bits,
    region_middle,
    regions,
)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def row(name: str, outs: list[Outcome]) -> str:
    hops = [o.hops for o in outs if o.ok]
    ms = [o.ms for o in outs if o.ok]
    ok = sum(o.ok for o in outs) / len(outs) * 100
    msgs = statistics.mean(o.messages for o in outs)
    return (
        f"| {name} | {len(outs)} | {pct(hops, 50):.0f} / {pct(hops, 95):.0f} / {pct(hops, 99):.0f}"
        f" | {ok:.2f} % | {msgs:.1f} | {pct(ms, 50):.0f} / {pct(ms, 95):.0f} |"
    )


def find_nodes(net: Network, n: int, rng: random.Random) -> list[Outcome]:
    alive = net.alive()
    return [net.lookup(rng.choice(alive), rng.choice(alive))[1] for _ in range(n)]


def find_providers(net: Network, objects: list[int], rng: random.Random) -> list[Outcome]:
    alive = net.alive()
    return [net.lookup(rng.choice(alive), obj, want=1)[1] for obj in objects]


def sweep_cost(net: Network, source: int, keys: list[int]) -> tuple[int, int, int]:
    """Messages to provide ``keys`` from ``source`` by sweep: (lookups, batches, regions)."""
    own_near = [c.key for c in net.tables[source].closest(source)]
    bits = region_bits(estimate_size(source, own_near), net.k)
    lookups = batches = 0
    by_region = regions(keys, bits)
    for prefix, members in by_region.items():
        lk, _ = net.lookup(source, region_middle(prefix, bits), k=2 * net.k)
        lookups += lk.sent
        batches += len(assign(members, [c.key for c in lk.result()], net.k))
    return lookups, batches, len(by_region)


def real_rows(ours: dict, theirs: dict) -> list[str]:
    rows = []
    names = (
        ("put_to_found", "PUT on node N -> first GET elsewhere / provide + find"),
        ("findprovs_cold", "find-providers, cold (all readers)"),
        ("findprovs_warm", "find-providers, warm (all readers)"),
        ("findprovs_cold_net", "find-providers, cold, net (no local record)"),
        ("findprovs_warm_net", "find-providers, warm, net (no local record)"),
        ("findpeer_cold", "find-peer, cold"),
        ("findpeer_warm", "find-peer, warm"),
    )
    for key, label in names:
        a, b = ours.get(key) or [], theirs.get(key) or []
        ratio = f"{pct(a, 95) / pct(b, 95):.2f}x" if a and b and pct(b, 95) > 0 else "-"
        rows.append(
            f"| {label} | {len(a)} | {pct(a, 50):.1f} / {pct(a, 95):.1f} | {len(b)} | "
            f"{pct(b, 50):.1f} / {pct(b, 95):.1f} | {ratio} |"
        )
    return rows


def run_real(args: argparse.Namespace) -> None:
    import json
    import subprocess

    import trio

    from bench._dht_real import run_ours

    started = time.monotonic()
    ours = trio.run(run_ours, args.real, args.keys, args.pairs, args.seed)
    side = ROOT / "bench" / "_libp2p_side.py"
    python = args.libp2p_python or sys.executable
    done = subprocess.run(
        [python, "-P", str(side), str(args.real), str(args.keys), str(args.pairs), str(args.seed)],
        capture_output=True,
        timeout=1800,
        check=False,
    )
    try:
        theirs = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        theirs = {"error": done.stderr.decode()[-300:] or "no output"}
    print(f"\n## bench/dht.py --real {args.real}: our nodes vs py-libp2p's Kademlia\n")
    print(
        f"keys {args.keys}, find-peer pairs {args.pairs}; times in ms (p50 / p95); "
        "ratio = our p95 / their p95 (below 1: ours is faster)\n"
    )
    if "error" in theirs:
        print(f"py-libp2p could not run here: {theirs['error']}")
    print("| operation | n | ours | n | py-libp2p | ratio (p95) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(real_rows(ours, theirs)))
    print(
        f"\njoin: ours {ours['join_ms']:.0f} ms (tables {ours['tables']}), py-libp2p "
        f"{theirs.get('join_ms', 0):.0f} ms (tables {theirs.get('tables')}); "
        f"misses: ours {ours['misses']}, theirs {theirs.get('misses')}"
    )
    print(f"({time.monotonic() - started:.0f} s)")


def run_memory_bench(args: argparse.Namespace) -> None:
    import trio

    from bench._dht_memory import run_memory

    r = trio.run(run_memory, args.memory, args.seed)
    print(f"\n## bench/dht.py --memory {args.memory}: svc-dht's RSS in a real micronode\n")
    print("| svc-dht | records | contacts | RSS MiB | PSS MiB | RSS vs idle |")
    print("|---|---|---|---|---|---|")
    print(
        f"| idle (baseline, same run) | 0 | - | {r['idle_mib']:.1f} | {r['idle_pss']:.1f} | 1.00x |"
    )
    for label, key in (("full table", "full"), ("the same, 5 s later", "later")):
        print(
            f"| {r['records']:,} records, {label} | {r['records']:,} | {r['contacts']} | "
            f"{r[key + '_mib']:.1f} | {r[key + '_pss']:.1f} | "
            f"{r[key + '_mib'] / r['idle_mib']:.2f}x |"
        )
    print(f"\ntarget: RSS under 64 MiB; filled in {r['fill_s']:.0f} s ({r['stored']:,} stored)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=int, default=0, help="real nodes side by side (24)")
    parser.add_argument("--keys", type=int, default=5, help="--real: objects provided")
    parser.add_argument("--pairs", type=int, default=40, help="--real: find-peer pairs")
    parser.add_argument("--libp2p-python", help="--real: a Python with libp2p installed")
    parser.add_argument("--memory", type=int, default=0, help="records held for the RSS run")
    parser.add_argument("--sim", type=int, default=10_000, help="simulated nodes")
    parser.add_argument("--lookups", type=int, default=1000, help="lookups per row")
    parser.add_argument("--objects", type=int, default=100_000, help="objects provided by sweep")
    parser.add_argument("--churn", type=float, default=0.2, help="share of nodes gone")
    parser.add_argument("--rtt-ms", type=float, default=60.0)
    parser.add_argument("--loss", type=float, default=0.01, help="per message, each way")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per query")
    parser.add_argument("--hedge-delay", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.real:
        run_real(args)
        return
    if args.memory:
        run_memory_bench(args)
        return
    started = time.monotonic()
    net = Network(
        args.sim,
        rtt_ms=args.rtt_ms,
        loss=args.loss,
        timeout=args.timeout,
        hedge_delay=args.hedge_delay,
        seed=args.seed,
    )
    rng = random.Random(args.seed)
    objects = [rng.getrandbits(256) for _ in range(args.lookups)]
    for obj in objects:  # each provided by one node, stored on its k nearest
        net.holders[obj] = set(net.nearest_alive(obj, net.k))
    print(f"built {args.sim} tables in {time.monotonic() - started:.0f} s", file=sys.stderr)
    rows = [row("find-node", find_nodes(net, args.lookups, rng))]
    hedge = net.hedge_delay
    net.hedge_delay = net.timeout
    rows.append(row("find-node, unhedged (baseline)", find_nodes(net, args.lookups, rng)))
    net.hedge_delay = hedge
    rows.append(row("find-providers", find_providers(net, objects, rng)))
    net.churn(args.churn)
    share = f"{args.churn * 100:.0f} % gone"
    rows.append(row(f"find-node, {share}", find_nodes(net, args.lookups, rng)))
    net.hedge_delay = net.timeout
    rows.append(row(f"find-node, {share}, unhedged", find_nodes(net, args.lookups, rng)))
    net.hedge_delay = hedge
    rows.append(row(f"find-providers, {share}", find_providers(net, objects, rng)))
    net.dead = set()
    source = net.keys[0]
    keys = [rng.getrandbits(256) for _ in range(args.objects)]
    lookups, batches, n_regions = sweep_cost(net, source, keys)
    sample = [net.lookup(source, key)[0].sent for key in keys[: min(args.lookups, 200)]]
    per_object = round(statistics.mean(sample) * len(keys)) + net.k * len(keys)
    swept = lookups + batches
    print(f"\n## bench/dht.py --sim {args.sim}: services/lib/kad on a simulated network\n")
    print(
        f"k = {net.k}, alpha = {net.alpha}, RTT median {args.rtt_ms:.0f} ms, loss "
        f"{args.loss * 100:.1f} % each way, timeout {args.timeout} s, hedge {hedge} s\n"
    )
    print("| lookups | n | hops p50 / p95 / p99 | success | messages / lookup | ms p50 / p95 |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n| providing {len(keys):,} objects | messages | per object | ratio |")
    print("|---|---|---|---|")
    print(
        f"| sweep ({n_regions} regions: {lookups:,} lookup messages + {batches:,} batches)"
        f" | {swept:,} | {swept / len(keys):.3f} | {per_object / swept:.1f}x fewer |"
    )
    print(
        f"| one lookup + {net.k} stores per object (baseline; lookup cost sampled over "
        f"{len(sample)}) | {per_object:,} | {per_object / len(keys):.1f} | 1.0x |"
    )
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
