"""What the transport reports (the seeds' transport metrics), as calls a service implements.

The transport lives in ``ipc`` and knows no metrics registry; svc-overlay passes a ``Meter``
that feeds the node's Prometheus families. The base class counts nothing (tests, SDK clients).
"""

from __future__ import annotations

__all__ = ["Meter"]


class Meter:
    def dialed(self, result: str) -> None:
        """One dial ended: ``ok``, ``refused``, ``timeout``, ``tls_error``, ``pin_mismatch``."""

    def accepted(self) -> None:
        """One TCP connection accepted (before any handshake)."""

    def handshake(self, seconds: float) -> None:
        """One TLS handshake completed, in ``seconds``."""

    def tls_failure(self) -> None:
        """One TLS handshake failed (either side)."""

    def rejected(self, reason: str) -> None:
        """One connection or request refused for ``reason`` (``peer_limit``, ``busy`` ...)."""

    def io_timeout(self, op: str) -> None:
        """One ``read``/``write``/``idle``/``handshake`` wait ran out."""

    def moved(self, direction: str, size: int) -> None:
        """``size`` bytes went ``in`` or ``out`` on a connection."""

    def pq_fallback(self) -> None:
        """One connection fell back to plain TLS (``pq.mode = hybrid``, the peer could not)."""

    def inflight(self, delta: int) -> None:
        """Connections open changed by ``delta``."""
