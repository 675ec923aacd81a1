"""A network partition, injected (the partition drill, ``ronctl chaos partition``).

The process-wide set of node ids this process is cut off from, each until a deadline (trio
time). While a node is cut: a dial to it fails at once (``DialError("partitioned")``), a
connection it makes to us is closed right after the handshake, and an open connection with it
fails its next send or receive (``ChannelClosed``): from both sides it looks like a network
that drops everything, which is what the drill must survive. Nothing here is reachable from
the network: only the node's control socket injects it (``kernel.faults``).
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

__all__ = ["cut", "cut_off", "heal"]

_cut: dict[str, float] = {}


def cut(node_ids: Iterable[str], seconds: float) -> None:
    """Cut this process off from ``node_ids`` for ``seconds``."""
    until = trio.current_time() + seconds
    for node_id in node_ids:
        _cut[node_id] = until


def heal() -> None:
    _cut.clear()


def cut_off(node_id: str | None) -> bool:
    """Whether this process is cut off from ``node_id`` now (cheap when nothing is cut)."""
    if not _cut or node_id is None:
        return False
    until = _cut.get(node_id)
    if until is None:
        return False
    if trio.current_time() >= until:
        del _cut[node_id]
        return False
    return True
