"""Waiting for the node's identity: services that need the node id (or its key) ask the identity
service (``kernel.exposes.ROLE_IDENTITY``).

It makes (or finds) the identity key at start; a service started beside it asks until
it answers, so a restart of either in any order converges without a fixed start order.
"""

from __future__ import annotations

import trio

from ipc import oap
from ipc.proto import passport
from ipc.proto.codec import Requester, call

__all__ = ["IDENTITY_WAIT", "wait_identity"]

IDENTITY_WAIT = 30.0  # seconds the identity service gets to come up before a service gives up
_RETRY = 0.2


async def wait_identity(
    client: Requester, *, wait: float = IDENTITY_WAIT
) -> passport.IdentityReply | None:
    """The identity service's ``Identity`` reply; None if it did not answer within ``wait`` s."""
    with trio.move_on_after(wait):
        while True:
            try:
                reply: passport.IdentityReply = await call(
                    client, passport.PROTOCOL, passport.Identity(), timeout=2.0
                )
                return reply
            except oap.OapError:
                await trio.sleep(_RETRY)
    return None
