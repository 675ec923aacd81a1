"""One client session to a peer: dial, prove both ids, run the reader, do the PQ exchange.

What svc-overlay's fetches and svc-dht's queries both need before their first request, in one
place. Guarantees: the returned client's reader and the channel's writer run in ``nursery``;
a ``pq.mode = required`` peer that cannot do the exchange is a ``DialError("pq_refused")``
(counted) and its connection is closed; a fallback is counted (``meter.pq_fallback``).
"""

from __future__ import annotations

import ssl

import trio

from .addr import PeerAddr
from .certs import NodeCertificate
from .client import PeerClient
from .endpoints import DialError, Limits, dial
from .meter import Meter
from .pq_exchange import PqRefused, dialer_exchange

__all__ = ["open_session"]


async def open_session(
    addr: PeerAddr,
    cert: NodeCertificate,
    nursery: trio.Nursery,
    *,
    limits: Limits,
    meter: Meter,
    tls: bool = True,
    context: ssl.SSLContext | None = None,
    pq_mode: str = "off",
) -> tuple[PeerClient, str]:
    """A ready client to ``addr`` and its PQ posture (``pq``, ``fallback``, ``off``)."""
    conn = await dial(addr, cert, nursery, limits=limits, meter=meter, tls=tls, context=context)
    client = PeerClient(conn)
    await nursery.start(client.run)
    try:
        posture = await dialer_exchange(
            client,
            pq_mode,
            dialer=cert.node_id,
            listener=addr.node_id,
            timeout=limits.handshake_timeout,
        )
    except PqRefused as exc:
        await conn.channel.aclose()
        meter.dialed("pq_refused")
        raise DialError("pq_refused", str(exc)) from None
    if posture == "fallback":
        meter.pq_fallback()
    return client, posture
