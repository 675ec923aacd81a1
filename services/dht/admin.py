"""svc-dht's admin routes (``ronctl dht ...``; DESIGN §8): the table summary on both planes,
lookups and announcing on the control socket only (they make the node talk to others)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ipc.proto import dht
from kernel.admin_calls import AdminAnswer, AdminCall, Answer, BadRequest, answer_json, json_body
from services.dht.local import Local

__all__ = ["admin_routes"]


def _request(cls: type, **fields: object) -> object:
    try:
        return cls(**fields)
    except (ValueError, TypeError) as exc:
        raise BadRequest(str(exc)) from None


def admin_routes(local: Local) -> Mapping[str, Answer]:
    async def table(_call: AdminCall) -> AdminAnswer:
        return answer_json(200, attrs.asdict(local.table()))

    async def providers(call: AdminCall) -> AdminAnswer:
        req = _request(dht.FindProvs, id=call.params.get("id", ""))
        assert isinstance(req, dht.FindProvs)
        found = await local.findprovs(req)
        doc = {
            "providers": [attrs.asdict(p) for p in found.providers],
            "hops": found.hops,
            "complete": found.complete,
        }
        return answer_json(200, doc)

    async def peer(call: AdminCall) -> AdminAnswer:
        req = _request(dht.FindPeer, node_id=call.params.get("node_id", ""))
        assert isinstance(req, dht.FindPeer)
        return answer_json(200, attrs.asdict(await local.findpeer(req)))

    async def provide(call: AdminCall) -> AdminAnswer:
        req = _request(dht.Provide, id=call.params.get("id", ""))
        assert isinstance(req, dht.Provide)
        provided = await local.provide(req)
        doc = {"id": req.id, "nodes": provided.nodes}
        return answer_json(200, doc, audit={"act": "dht_provide", "id": req.id})

    async def seed(call: AdminCall) -> AdminAnswer:
        addr = json_body(call).get("addr")
        if not isinstance(addr, str):
            raise BadRequest('expected {"addr": "<node id>@<host>:<port>"}')
        req = _request(dht.Seed, addr=addr)
        assert isinstance(req, dht.Seed)
        return answer_json(200, attrs.asdict(await local.seed(req)))

    return {
        "/dht": table,
        "/dht/providers/{id}": providers,
        "/dht/peers/{node_id}": peer,
        "/dht/provide/{id}": provide,
        "/dht/seed": seed,
    }
