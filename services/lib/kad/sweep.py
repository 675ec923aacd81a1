"""Sweep providing: announce many objects with messages per keyspace region, not per object.

The keys are grouped by their top ``bits`` bits, ``bits`` chosen so a region holds about ``k``
to ``2k`` nodes (``region_bits``, from an estimate of the network's size). Every key of a
region has its ``k`` nearest nodes inside the region when the region holds at least ``k``
(XOR: sharing the prefix makes them nearer than anyone outside it), so one lookup of the
region's middle for its ``2k`` nearest nodes finds them all, and ``assign`` gives each node one
batch: the keys it is among the ``k`` nearest of. 100,000 objects in a 10,000-node network
cost ~500 lookups and batches, not 100,000 lookups.

Pure functions; ``bench/dht.py`` counts their messages against one lookup per object.
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Iterable, Sequence

from .keyspace import BITS

__all__ = ["assign", "estimate_size", "region_bits", "region_middle", "regions"]


def estimate_size(own: int, nearest: Sequence[int]) -> int:
    """The network's size, estimated from the keys of the nodes nearest ``own``: the i-th
    nearest of N uniform keys is expected at distance i * 2**256 / (N + 1) (a least-squares fit
    over the given ones). 1 + len(nearest) when they are too few to say more."""
    dists = sorted(key ^ own for key in nearest)
    if not dists:
        return 1
    space = 1 << BITS
    num = sum(i * i for i in range(1, len(dists) + 1))
    den = sum(i * (d / space) for i, d in enumerate(dists, start=1))
    if den <= 0:
        return 1 + len(dists)
    return max(1 + len(dists), round(num / den) - 1)


def region_bits(size: int, k: int) -> int:
    """Prefix bits of a region holding ``k`` to ``2k`` of ``size`` nodes (0: the whole space)."""
    return max(0, math.floor(math.log2(size / k))) if size > k else 0


def regions(keys: Iterable[int], bits: int) -> dict[int, list[int]]:
    """The keys by region (their top ``bits`` bits)."""
    out: dict[int, list[int]] = collections.defaultdict(list)
    shift = BITS - bits
    for key in keys:
        out[key >> shift].append(key)
    return dict(out)


def region_middle(prefix: int, bits: int) -> int:
    """The key in the middle of a region: the lookup target that finds its nodes."""
    shift = BITS - bits
    return (prefix << shift) | (1 << (shift - 1)) if shift else prefix


def assign(keys: Iterable[int], nodes: Sequence[int], k: int) -> dict[int, list[int]]:
    """For each node, the keys it is among the ``k`` nearest of (among ``nodes``)."""
    out: dict[int, list[int]] = collections.defaultdict(list)
    for key in keys:
        for node in heapq.nsmallest(k, nodes, key=lambda n: n ^ key):
            out[node].append(key)
    return dict(out)
