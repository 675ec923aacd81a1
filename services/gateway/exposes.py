"""What svc-gateway exposes to the node (``kernel.exposes``): the chunk reads of manifest
objects (how many chunks serving took: a Range reads only the chunks it covers)."""

from __future__ import annotations

from kernel.exposes import Exposes, MetricSpec

__all__ = ["EXPOSES"]

EXPOSES = Exposes(
    metrics=(
        MetricSpec(
            "object_chunk_reads",
            "counter",
            "Chunks of manifest objects read and verified to serve them (specs/objects.md).",
        ),
    ),
)
