"""What svc-mailbox checks in a request before it reaches the tables (the typed protocol has
already checked shapes and ranges)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ipc import oap
from ipc.proto import mailbox as proto

__all__ = ["check_send"]

KEY_MAX = proto.KEY_MAX
_MSG_ID = re.compile(r"[0-9a-f]{32}")


def check_send(
    address: str, messages: Sequence[proto.Outgoing], node_id: str, origin: str | None = None
) -> tuple[str, bool]:
    """``(where the messages go, whether that is another node)``: a mailbox name of this node,
    or a whole ``name@node:<hex>`` address for the outbox. Raises ``OapError``: 422
    ``bad_name``, 413 ``too_large`` for a body over ``MAX_BODY``, 422 ``schema_invalid`` for an
    empty body, a key of more than ``KEY_MAX`` characters, a malformed ``msg_id`` or one without
    an ``origin`` (only a forwarding node, stamped by svc-overlay, chooses its ids)."""
    name, node = proto.split_address(address)
    for n, msg in enumerate(messages):
        if len(msg.body) > proto.MAX_BODY:
            raise oap.OapError(
                "too_large", f"message {n}: {len(msg.body)} bytes is over {proto.MAX_BODY}"
            )
        if not msg.body:
            raise oap.OapError("schema_invalid", f"message {n}: a message has at least one byte")
        if msg.key is not None and not 1 <= len(msg.key) <= KEY_MAX:
            raise oap.OapError("schema_invalid", f"message {n}: a key is 1-{KEY_MAX} characters")
        if msg.msg_id is not None and _MSG_ID.fullmatch(msg.msg_id) is None:
            raise oap.OapError("schema_invalid", f"message {n}: msg_id is 32 lowercase hex digits")
        if msg.msg_id is not None and origin is None:
            raise oap.OapError(
                "schema_invalid", f"message {n}: msg_id is set only by a forwarding node"
            )
    if node is None or node == node_id:
        return name, False
    return address, True
