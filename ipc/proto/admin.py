"""The admin relay (``app_proto_id`` 0x00A0): one HTTP request of an admin plane, to the service
that declared its route (``kernel.exposes.AdminRoute``), and the service's answer.

Why one generic call instead of a typed op per view: the kernel relays routes of services it does
not know; it only needs the route's template, the request's parts and an HTTP-shaped answer. The
service parses its own query and body (it owns their meaning) and answers JSON. Every service's
command socket serves it (``kernel.service``), beside the service's own protocol.
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from ipc.proto.codec import Request, ServiceProtocol

__all__ = ["ADMIN", "ADMIN_PROTO", "MAX_BODY", "AdminAnswer", "AdminCall"]

ADMIN_PROTO: Final = 0x00A0
MAX_BODY: Final = 16 * 1024  # the planes' request bodies are a few small JSON fields


@attrs.frozen
class AdminAnswer:
    """``status`` (an HTTP status) and ``body`` (JSON, the response's whole body); ``audit``
    when the call changed the node: a JSON object ``{"act": "pin", ...details}`` for the node's
    audit log (the kernel adds the caller); ``retry_after`` (seconds, 0 = none) for 429/503."""

    status: int = attrs.field(validator=attrs.validators.ge(100))
    body: bytes
    audit: bytes = b""
    retry_after: int = 0


@attrs.frozen
class AdminCall(Request[AdminAnswer]):
    """``method`` on ``route`` (the declared template) with the template's ``params``, the
    query (every value of each key) and the body (at most ``MAX_BODY`` bytes)."""

    OP: ClassVar[str] = "call"
    REPLY: ClassVar[type] = AdminAnswer
    route: str
    method: str
    params: dict[str, str] = attrs.field(factory=dict)
    query: dict[str, list[str]] = attrs.field(factory=dict)
    body: bytes = attrs.field(default=b"", validator=attrs.validators.max_len(MAX_BODY))


ADMIN: Final = ServiceProtocol(
    service="admin relay", app_proto_id=ADMIN_PROTO, requests=(AdminCall,)
)
