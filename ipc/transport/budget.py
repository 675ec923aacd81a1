"""``SendBudget``: the bytes a listener holds to send at once, in all and per source.

Why: a peer that asks for objects and never reads makes every stream hold its block (read from
the store, framed, queued for the writer) until the write timeout; with anyone able to mint an
identity, hundreds of such connections held gigabytes. Every block a stream prepares is taken
from this budget first and given back once it is written (``Channel.send_many``'s
``on_written``), or when its connection closes.

Guarantees:

- at most ``total`` bytes are held at once, and at most ``per_key`` for any one key (a source
  IP, a node id): one source cannot take the whole budget;
- a request larger than a share is clamped to it, so every request can eventually be granted;
- a ``Grant`` gives its bytes back once, however often ``release`` is called;
- waiting for room is a checkpoint and cancel-safe (nothing is held by a cancelled wait).
"""

from __future__ import annotations

from collections import Counter

import trio

__all__ = ["Grant", "SendBudget"]


class Grant:
    __slots__ = ("_budget", "_keys", "n")

    def __init__(self, budget: SendBudget, keys: tuple[str, ...], n: int) -> None:
        self._budget: SendBudget | None = budget
        self._keys = keys
        self.n = n

    def release(self) -> None:
        if self._budget is not None:
            budget, self._budget = self._budget, None
            budget._give_back(self._keys, self.n)


class SendBudget:
    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = min(per_key, total)
        self.used = 0
        self._by_key: Counter[str] = Counter()
        self._freed = trio.Event()

    def _fits(self, keys: tuple[str, ...], n: int) -> bool:
        return self.used + n <= self.total and all(
            self._by_key[k] + n <= self.per_key for k in keys
        )

    async def acquire(self, keys: tuple[str, ...], n: int) -> Grant:
        """``n`` bytes (at most a share) charged to the total and to each of ``keys``."""
        n = min(n, self.per_key)
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._fits(keys, n):
            await self._freed.wait()
        self.used += n
        for k in keys:
            self._by_key[k] += n
        return Grant(self, keys, n)

    def _give_back(self, keys: tuple[str, ...], n: int) -> None:
        self.used -= n
        for k in keys:
            self._by_key[k] -= n
            if not self._by_key[k]:
                del self._by_key[k]
        self._freed.set()
        self._freed = trio.Event()
