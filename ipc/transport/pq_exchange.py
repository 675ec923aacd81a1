"""Both ends of the PQ exchange over an open connection (``ipc.transport.pq`` has the crypto).

Dialer: ``dialer_exchange`` right after connecting, before any other request. Listener:
``listener_answer`` for the ``pq`` request. Each installs the keys on its channel once the
answer is on its way, so only object payloads after the exchange are sealed.
"""

from __future__ import annotations

from ipc import oap
from ipc.proto import overlay

from . import pq
from .channel import Channel
from .client import PeerClient

__all__ = ["PqRefused", "dialer_exchange", "listener_answer"]


class PqRefused(Exception):
    """``pq.mode = required`` and the other end cannot (or would not) do it."""


async def dialer_exchange(
    client: PeerClient, mode: str, *, dialer: str | None, listener: str, timeout: float
) -> str:
    """The posture of this connection: ``pq``, ``fallback`` or ``off``; ``PqRefused`` if
    ``mode`` is ``required`` and the listener did not complete the exchange."""
    if mode == "off":
        return "off"
    key, ek = pq.new_keypair()
    try:
        reply = await client.call(overlay.PEER, overlay.Pq(ek=ek), timeout=timeout)
        theirs_can = reply.mode != "off" and bool(reply.ct)
    except oap.OapError as exc:  # an older node without the op, or one that refused it
        if exc.reason not in ("schema_invalid", "unknown_app_proto"):
            raise
        theirs_can, reply = False, None
    outcome = pq.negotiate(mode, theirs_can)
    if outcome == "refused":
        said = reply.mode if reply is not None else "no PQ exchange"
        raise PqRefused(f"pq.mode = required, and {listener} answered {said}")
    if outcome == "pq" and reply is not None:
        secret = pq.decapsulate(key, reply.ct)
        to_listener, to_dialer = pq.derive_keys(secret, dialer, listener)
        client.conn.channel.install_pq(pq.Sealer(to_listener), pq.Opener(to_dialer))
    return outcome


def listener_answer(
    channel: Channel, request: overlay.Pq, mode: str, *, dialer: str | None, listener: str
) -> tuple[overlay.PqReply, bool]:
    """(the reply, whether keys were installed). The caller sends the reply first; the keys
    are installed here, before that reply is queued, but it carries no APP_E2E flag."""
    if mode == "off":
        return overlay.PqReply(mode="off"), False
    try:
        secret, ct = pq.encapsulate(request.ek)
    except pq.PqError as exc:
        raise oap.OapError("schema_invalid", str(exc)) from None
    to_listener, to_dialer = pq.derive_keys(secret, dialer, listener)
    channel.install_pq(pq.Sealer(to_dialer), pq.Opener(to_listener))
    return overlay.PqReply(mode=mode, ct=ct), True
