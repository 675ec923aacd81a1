"""ron-transport's metric families (the seeds' names: ``transport_dials_total`` ...), declared
by every service that dials or listens over the transport (svc-overlay, svc-dht); the node
merges the equal declarations. ``ipc.transport.metered.NodeMeter`` reports into them."""

from __future__ import annotations

from kernel.exposes import MetricSpec

__all__ = ["HANDSHAKE_BUCKETS", "TRANSPORT_METRICS"]

HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""The seeds' fixed buckets for ``handshake_latency_seconds`` (seconds)."""

TRANSPORT_METRICS = (
    MetricSpec(
        "transport_dials",
        "counter",
        "Dials to peers, by backend and result.",
        ("backend", "result"),
    ),
    MetricSpec("transport_accepts", "counter", "Connections accepted from peers."),
    MetricSpec(
        "handshake_latency_seconds",
        "histogram",
        "Connect to a completed TLS handshake (pin checked).",
        buckets=HANDSHAKE_BUCKETS,
    ),
    MetricSpec("tls_handshake_failures", "counter", "TLS handshakes that failed, either side."),
    MetricSpec("io_timeouts", "counter", "Transport waits that ran out, by op.", ("op",)),
    MetricSpec("bytes_in", "counter", "Bytes received from peers."),
    MetricSpec("bytes_out", "counter", "Bytes sent to peers."),
    MetricSpec("conn_inflight", "gauge", "Peer connections svc-overlay's listener serves now."),
    MetricSpec(
        "pq_fallback",
        "counter",
        "Peer connections that fell back to plain TLS (pq.mode = hybrid).",
    ),
)
"""ron-transport's families (the seeds' names): each service that dials or listens declares
them in its ``EXPOSES`` (the node merges equal declarations)."""
