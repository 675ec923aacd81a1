"""Types the wire modules share without importing the kernel (layering: ipc imports no kernel)."""

from __future__ import annotations

from typing import Any

__all__ = ["MetricsLike"]

MetricsLike = Any
"""A ``kernel.metrics.Metrics``: ipc counts into its prometheus series (``bus_*_total``,
``busy_rejections_total``, ...) but cannot name the kernel's class."""
