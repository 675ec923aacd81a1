"""What svc-storage exposes to the node (``kernel.exposes``): its usage gauges and the store
housekeeping routes of the control socket (``ronctl ls``, ``pin add|rm|ls``, ``gc``)."""

from __future__ import annotations

from kernel.exposes import AdminRoute, Exposes, MetricSpec

__all__ = ["EXPOSES", "GC_TIMEOUT"]

GC_TIMEOUT = 600.0  # a GC of a million objects takes well under this (one stat each)

EXPOSES = Exposes(
    metrics=(
        MetricSpec(
            "storage_bytes",
            "gauge",
            "Bytes of objects svc-storage holds (its quota is storage_quota_bytes).",
        ),
        MetricSpec("storage_objects", "gauge", "Objects svc-storage holds."),
        MetricSpec(
            "storage_quota_bytes",
            "gauge",
            "svc-storage's max_bytes: a PUT that would go over it is refused 507.",
        ),
    ),
    routes=(
        AdminRoute("/store/objects"),
        AdminRoute("/store/pins"),
        AdminRoute("/store/pins/{id}", methods=("PUT", "DELETE")),
        AdminRoute("/store/gc", methods=("POST",), timeout=GC_TIMEOUT),
    ),
)
