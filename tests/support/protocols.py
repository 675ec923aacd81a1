"""Speaking the typed service protocols from tests: by op name, or as raw maps for the server
to judge (so a test can send what a typed client never would)."""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

from ipc import oap
from ipc.proto.codec import Requester, ServiceProtocol, call


async def call_op(
    client: Requester, protocol: ServiceProtocol, op: str, **fields: Any
) -> dict[str, Any]:
    """The reply to a typed ``op`` request built from ``fields``, as a dict for comparisons."""
    reply = await call(client, protocol, protocol.request_class(op)(**fields))
    return attrs.asdict(reply)


def raw_request(app_proto_id: int, op: str, **fields: Any) -> oap.Frame:
    """A REQ frame with the map ``{"op": op, **fields}`` as it is, valid or not."""
    payload = msgpack.packb({"op": op, **fields}, use_bin_type=True)
    return oap.Frame(flags=oap.REQ, app_proto_id=app_proto_id, payload=payload)
