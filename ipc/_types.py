"""Types the wire modules share without importing the kernel (layering: ipc imports no kernel)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Count", "Labelled", "LabelledGauge", "MetricsLike", "Settable"]


class Count(Protocol):
    """A counter series (prometheus-client's ``Counter``, or one labelled child of it)."""

    def inc(self, amount: float = 1) -> None: ...


class Labelled(Protocol):
    """A counter family with labels."""

    def labels(self, *values: str, **labels: str) -> Count: ...


class Settable(Protocol):
    """A gauge series (a labelled child of prometheus-client's ``Gauge``)."""

    def set(self, value: float) -> None: ...


class LabelledGauge(Protocol):
    """A gauge family with labels."""

    def labels(self, *values: str, **labels: str) -> Settable: ...


class MetricsLike(Protocol):
    """What ipc counts into (``kernel.metrics.Metrics``), which it cannot import."""

    @property
    def bus_published(self) -> Count: ...
    @property
    def bus_dropped(self) -> Count: ...
    @property
    def bus_lagged(self) -> Count: ...
    @property
    def bus_receiver_lag(self) -> Count: ...
    @property
    def bus_no_receivers(self) -> Count: ...
    @property
    def busy_rejections(self) -> Labelled: ...
