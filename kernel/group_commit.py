"""The one step every group committer shares: take what is queued, up to a batch.

The store, the name index and the mailbox each make many requests durable with one fsync; this is
how each of them gathers the requests of one round, so the rule is written once: wait for the
first (unless told not to), then take whatever else is already queued, never more than ``most``.
"""

from __future__ import annotations

from typing import TypeVar

import trio

__all__ = ["take_batch"]

T = TypeVar("T")


async def take_batch(
    receive: trio.MemoryReceiveChannel[T], most: int, *, wait: bool = True
) -> list[T]:
    """The next round: the first item (awaited when ``wait``), then up to ``most`` in all of
    what is queued now, in arrival order; never waits for a second item."""
    batch = [await receive.receive()] if wait else []
    while len(batch) < most:
        try:
            batch.append(receive.receive_nowait())
        except trio.WouldBlock:
            break
    return batch
