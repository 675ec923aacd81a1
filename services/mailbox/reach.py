"""Which nodes the outbox can send to: a listed peer at once, any other node only once
svc-overlay located it (through the DHT).

Guarantees: a send to a node neither listed nor found is 404 ``node_unknown`` before anything
is queued (queueing it would only retry for the whole retention, DESIGN §8); a node found
once is remembered for ``REMEMBER`` s (at most ``MAX_KNOWN`` nodes, the oldest forgotten
first), so a burst of sends costs one lookup; when the lookup itself cannot be made (svc-dht
or svc-overlay down) the send is 503 ``unavailable``: the caller may retry.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable

import trio

from ipc import oap
from ipc.proto import mailbox as proto

__all__ = ["Reach"]

REMEMBER = 600.0
MAX_KNOWN = 1024
Locate = Callable[[str], Awaitable[object]]
"""svc-overlay's ``locate``: returns when the node is known, raises ``OapError`` otherwise."""


class Reach:
    def __init__(self, listed: frozenset[str], locate: Locate | None) -> None:
        self.listed = listed
        self.locate = locate  # None: no svc-overlay, only listed peers count
        self._found: collections.OrderedDict[str, float] = collections.OrderedDict()

    async def check(self, address: str) -> None:
        _name, node = proto.split_address(address)
        if node is None or node in self.listed:
            return
        now = trio.current_time()
        seen = self._found.get(node)
        if seen is not None and now - seen < REMEMBER:
            return
        if self.locate is None:
            raise oap.OapError("node_unknown", f"{node} is not one of this node's overlay.peers")
        try:
            await self.locate(node)
        except oap.OapError as exc:
            if exc.reason == "node_unknown":
                raise oap.OapError(
                    "node_unknown",
                    f"{node} is neither a listed peer nor found by the DHT",
                ) from None
            raise oap.OapError(
                "unavailable", f"cannot tell where {node} is now: {exc.reason}", retry_after=5
            ) from None
        self._found[node] = now
        self._found.move_to_end(node)
        while len(self._found) > MAX_KNOWN:
            self._found.popitem(last=False)
