"""Mailbox requests from peers and SDK clients: who may make them, and the relay to svc-mailbox.

Guarantees:

- a request with a token in its capability segment is allowed only as far as the token allows
  the ``mail`` op on that mailbox (its ``prefix`` caveat is matched against the mailbox address,
  ``max_size`` against the largest body);
- without a token, only one thing is allowed: a send forwarded by a configured peer node
  (``overlay.peers``, pinned by TLS) from its outbox, every message carrying its id, to a
  mailbox of this node (no relaying onwards); it is relayed with ``origin`` = that node's id,
  so its ids are scoped to it; anything else is 401 ``cap_required``;
- a send is relayed with ``owner`` = the verified token's (``caps.owner``: its share of
  mailboxes), never what the client wrote there;
- a client (a token, or open writes) may not choose a message id nor an origin: 422
  ``schema_invalid`` (a chosen id could pre-empt a forwarded message and swallow it);
- with ``auth.writes = "open"`` everything else is allowed (development only).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import attrs

from ipc import caps, oap
from ipc.proto import mailbox
from ipc.proto.codec import Request
from services.lib.tokens import TokenGate
from services.overlay.upload import check_token

__all__ = ["authorize_mail"]


def authorize_mail(
    gate: TokenGate | None,
    frame: oap.Frame,
    request: Request[object],
    *,
    peer_id: str | None,
    federation: AbstractSet[str],
    node_id: str,
) -> mailbox.Send | None:
    """Raise the ``OapError`` that refuses ``request`` (a ``mailbox.PROTOCOL`` request); None:
    relay it as it is; a ``Send``: relay that one instead (the forward, stamped with its
    origin)."""
    address = getattr(request, "mailbox", None)
    forwarded = isinstance(request, mailbox.Send) and not frame.cap and peer_id in federation
    if isinstance(request, mailbox.Send) and not forwarded and _chooses_ids(request):
        raise oap.OapError(
            "schema_invalid", "msg_id and origin are set only by a node forwarding its outbox"
        )
    if frame.cap or (gate is None and not forwarded):
        if not isinstance(request, mailbox.Send):
            check_token(gate, frame, "mail", address, None)
            return None
        size = max(len(m.body) for m in request.messages)
        token = check_token(gate, frame, "mail", address, size)
        # the owner is the verified token's, whatever the client wrote there
        return attrs.evolve(request, owner=caps.owner(token) if token is not None else None)
    if forwarded and isinstance(request, mailbox.Send) and peer_id is not None:
        _name, node = mailbox.split_address(request.mailbox)
        if node not in (None, node_id):
            raise oap.OapError("bad_name", "a forwarded message must be for this node")
        if all(m.msg_id is not None for m in request.messages):
            return attrs.evolve(request, origin=peer_id, owner=None)  # its share: the origin
    raise oap.OapError(
        "cap_required", "a mailbox request needs a capability token in the cap segment"
    )


def _chooses_ids(request: mailbox.Send) -> bool:
    return request.origin is not None or any(m.msg_id is not None for m in request.messages)
