"""What svc-dht exposes to the node (``kernel.exposes``): the seeds' DHT metrics and ``/dht``."""

from __future__ import annotations

from kernel.exposes import AdminRoute, Exposes, MetricSpec
from services.lib.transport_metrics import TRANSPORT_METRICS

__all__ = ["EXPOSES", "HOPS_BUCKETS", "LOOKUP_MS_BUCKETS"]

LOOKUP_MS_BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
HOPS_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10)
LOOKUP_WAIT = 30.0  # seconds the kernel waits for a lookup route (dht.lookup_timeout is 10)

EXPOSES = Exposes(
    metrics=(
        *TRANSPORT_METRICS,  # its own dials to other nodes
        MetricSpec(
            "ron_dht_lookup_ms",
            "histogram",
            "Lookups this node ran (find providers, find peer, joins), milliseconds.",
            buckets=LOOKUP_MS_BUCKETS,
        ),
        MetricSpec(
            "ron_dht_lookup_hops",
            "histogram",
            "Hops of this node's lookups (1 = a contact of ours answered).",
            buckets=HOPS_BUCKETS,
        ),
        MetricSpec(
            "ron_dht_missing_records",
            "gauge",
            "Objects this node provides whose record no other node took at the last attempt.",
        ),
        MetricSpec(
            "ron_dht_repair_bytes",
            "counter",
            "Bytes sent to place records again that were missing.",
        ),
        MetricSpec("dht_contacts", "gauge", "Contacts in the routing table."),
        MetricSpec("dht_records", "gauge", "Records held for other nodes."),
        MetricSpec(
            "dht_rejected",
            "counter",
            "Records and requests refused, by reason (signature, node_id, expired, expiry, "
            "oversized, replay, full, share, rate_limited).",
            ("reason",),
        ),
    ),
    routes=(
        # the routing table summary: the JSON of ``ronctl dht table --json``
        AdminRoute("/dht", plane="both", timeout=2.0),
        # lookups and announcing: control socket only (they make the node talk to others)
        AdminRoute("/dht/providers/{id}", timeout=LOOKUP_WAIT),
        AdminRoute("/dht/peers/{node_id}", timeout=LOOKUP_WAIT),
        AdminRoute("/dht/provide/{id}", methods=("POST",), timeout=LOOKUP_WAIT),
        AdminRoute("/dht/seed", methods=("POST",), timeout=LOOKUP_WAIT),
    ),
)
