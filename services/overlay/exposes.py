"""What svc-overlay exposes to the node (``kernel.exposes``): ron-transport's metrics (the
seeds' names) and the ``/peers`` view."""

from __future__ import annotations

from kernel.exposes import AdminRoute, Exposes
from services.lib.transport_metrics import TRANSPORT_METRICS

__all__ = ["EXPOSES"]

EXPOSES = Exposes(
    metrics=TRANSPORT_METRICS,
    # the peers: node id, address, state, bytes, last error, the negotiated PQ posture
    routes=(
        AdminRoute("/peers", plane="both", timeout=2.0),
        # list a peer at runtime (PUT {"addr"}) or drop one: ``ronctl peers add | rm``
        AdminRoute("/peers/{node_id}", methods=("PUT", "DELETE"), timeout=15.0),
    ),
)
