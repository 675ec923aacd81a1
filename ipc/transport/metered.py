"""ron-transport's reports (``Meter``) into a node's metric families (the names
``services.lib.transport_metrics`` declares); ``metrics`` is the process's registry
(``kernel.metrics.Metrics``), seen through the small protocol below so ipc stays below kernel."""

from __future__ import annotations

from typing import Any, Protocol

from .meter import Meter

__all__ = ["Families", "NodeMeter"]


class Families(Protocol):
    """Metric families by name (prometheus-client objects: Any to this layer)."""

    @property
    def rejected(self) -> Any: ...

    def counter(self, name: str) -> Any: ...

    def gauge(self, name: str) -> Any: ...

    def histogram(self, name: str) -> Any: ...


class NodeMeter(Meter):
    """The transport's reports, into the node's metrics."""

    def __init__(self, metrics: Families) -> None:
        self._dials = metrics.counter("transport_dials")
        self._accepts = metrics.counter("transport_accepts")
        self._handshake = metrics.histogram("handshake_latency_seconds")
        self._tls_failures = metrics.counter("tls_handshake_failures")
        self._rejected = metrics.rejected
        self._io_timeouts = metrics.counter("io_timeouts")
        self._pq_fallback = metrics.counter("pq_fallback")
        self._inflight = metrics.gauge("conn_inflight")
        self._bytes = {"in": metrics.counter("bytes_in"), "out": metrics.counter("bytes_out")}

    def dialed(self, result: str) -> None:
        self._dials.labels(backend="tls", result=result).inc()

    def accepted(self) -> None:
        self._accepts.inc()

    def handshake(self, seconds: float) -> None:
        self._handshake.observe(seconds)

    def tls_failure(self) -> None:
        self._tls_failures.inc()

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason=reason).inc()

    def io_timeout(self, op: str) -> None:
        self._io_timeouts.labels(op=op).inc()

    def pq_fallback(self) -> None:
        self._pq_fallback.inc()

    def inflight(self, delta: int) -> None:
        self._inflight.inc(delta)

    def moved(self, direction: str, size: int) -> None:
        self._bytes["in" if direction == "in" else "out"].inc(size)
