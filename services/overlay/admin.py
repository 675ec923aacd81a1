"""svc-overlay's admin routes: the peers view (both planes) and, on the control socket, listing
a peer at runtime or dropping one (``ronctl peers add ADDR | rm NODE_ID``, no restart).

Guarantees: ``PUT /peers/{node_id}`` with ``{"addr": ADDR}`` lists the node (its ADDR must name
the same node id) for fetches and as a federation peer, and hands it to svc-dht to join
through (best effort: the peer is listed even if svc-dht cannot reach it now); ``DELETE``
stops listing it and closes its connection (404 when it was not listed). Both are audited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableSet

import attrs

from ipc.transport import BadPeerAddr, PeerAddr
from kernel.admin_calls import (
    AdminAnswer,
    AdminCall,
    Answer,
    BadRequest,
    answer_json,
    error_answer,
    json_body,
)
from services.overlay.fetch import Fetcher
from services.overlay.serve import PeerServer

__all__ = ["admin_routes"]

Seed = Callable[[str], Awaitable[None]]
"""Hand an ADDR to svc-dht to join through (``dht.Seed``); never raises."""


def admin_routes(
    fetcher: Fetcher, server: PeerServer, federation: MutableSet[str], seed: Seed | None
) -> Mapping[str, Answer]:
    async def peers(_call: AdminCall) -> AdminAnswer:
        views = [*fetcher.peers(), *server.inbound_peers()]
        return answer_json(200, {"peers": [attrs.asdict(v) for v in views]})

    async def peer(call: AdminCall) -> AdminAnswer:
        node_id = call.params.get("node_id", "")
        if call.method == "DELETE":
            if not fetcher.remove_peer(node_id):
                return error_answer(404, "not_found", f"{node_id:.80} is not a listed peer")
            federation.discard(node_id)
            audit = {"act": "peer_remove", "node_id": node_id}
            return answer_json(200, {"node_id": node_id, "listed": False}, audit=audit)
        text = json_body(call).get("addr")
        try:
            addr = PeerAddr.parse(text if isinstance(text, str) else "")
        except BadPeerAddr as exc:
            raise BadRequest(str(exc)) from None
        if addr.node_id != node_id:
            raise BadRequest(f"the address names {addr.node_id}, not {node_id:.80}")
        changed = fetcher.add_peer(addr)
        federation.add(addr.node_id)
        if seed is not None:
            await seed(str(addr))
        audit = {"act": "peer_add", "node_id": node_id, "addr": str(addr)}
        doc = {"node_id": node_id, "addr": str(addr), "listed": True, "changed": changed}
        return answer_json(200, doc, audit=audit)

    return {"/peers": peers, "/peers/{node_id}": peer}
