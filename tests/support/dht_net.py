"""svc-dht's parts on an in-memory network: each node a real ``DhtState`` + ``Responder`` +
``Lookups`` + ``Providing``; a query is the target's ``Responder.answer`` called with the
asker's id stamped in as svc-overlay would (``via``, ``ip``) and its own peer record as
``sender``. No sockets: what the seam tests is svc-dht's logic, not the transport."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ipc import oap
from services.dht.answers import Responder
from services.dht.links import Unreachable
from services.dht.lookups import Lookups
from services.dht.providing import Providing
from services.dht.settings import DhtSettings
from services.dht.state import DhtState, Stats
from services.dht.wire import peer_to_wire
from services.lib.kad import Contact, Signer, text_of


class Counted(Stats):
    def __init__(self) -> None:
        self.rejections: dict[str, int] = {}

    def rejected(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1


@attrs.define
class Node:
    state: DhtState
    responder: Responder
    lookups: Lookups
    providing: Providing
    contact: Contact
    stats: Counted


class Net:
    def __init__(self, settings: DhtSettings | None = None, wall: Callable[[], float] = time.time):
        self.settings = settings or DhtSettings(k=8, rate=1e9, burst=10**9)
        self.wall = wall
        self.nodes: dict[int, Node] = {}
        self.down: set[int] = set()
        self.messages = 0  # queries delivered (or tried)

    def add(self, host: str = "127.0.0.1", port: int | None = None) -> Node:
        signer = Signer(Ed25519PrivateKey.generate())
        port = port or 7000 + len(self.nodes)
        stats = Counted()
        state = DhtState(signer, (f"{host}:{port}",), self.settings, stats=stats, wall=self.wall)
        contact = Contact(signer.node, host, port)

        async def ask(target: Contact, request: Any, timeout: float) -> Any:
            return await self.deliver(contact, state, target, request)

        lookups = Lookups(state, ask)
        node = Node(
            state, Responder(state), lookups, Providing(state, lookups, ask), contact, stats
        )
        self.nodes[signer.node] = node
        return node

    async def deliver(self, source: Contact, state: DhtState, target: Contact, request: Any) -> Any:
        self.messages += 1
        node = self.nodes.get(target.key)
        if node is None or target.key in self.down:
            raise Unreachable("refused")
        stamped = attrs.evolve(
            request, sender=peer_to_wire(state.record()), via=text_of(source.key), ip=source.host
        )
        try:
            return await node.responder.answer(stamped)
        except oap.OapError as exc:
            raise Unreachable(exc.reason, answered=True) from None
