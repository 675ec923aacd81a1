"""svc-mailbox's metrics after each commit: counters, and depth gauges over a bounded label set.

``mailbox_depth{mailbox}`` names at most ``labels`` mailboxes (the first ones seen since this
process started); every other mailbox is summed into ``mailbox="_other"``, so a client creating
mailboxes at will cannot grow the scrape without bound.
"""

from __future__ import annotations

from prometheus_client import Gauge

from kernel.metrics import Metrics
from services.mailbox.store import OUTBOX_KEY, Effects, MailDb

__all__ = ["OTHER", "DepthMeter"]

OTHER = "_other"


class DepthMeter:
    def __init__(self, metrics: Metrics, db: MailDb, labels: int) -> None:
        self.db = db
        self.labels = labels
        self._named: dict[str, Gauge] = {}  # mailbox -> its gauge child
        self._counters = tuple(
            metrics.counter(name)
            for name in (
                "mailbox_sent",
                "mailbox_delivered",
                "mailbox_acked",
                "mailbox_visibility_timeout",
                "mailbox_dlq",
            )
        )
        self._depth = metrics.gauge("mailbox_depth")
        self._outbox_depth = metrics.gauge("mailbox_outbox_depth")

    def show_all(self) -> None:
        """Set every gauge from the tables' usage (at start: the depth survived a restart)."""
        self._set(list(self.db.usage))

    def after_commit(self, fx: Effects) -> None:
        counts = (fx.sent, fx.delivered, fx.acked, fx.timeouts, fx.dead)
        for counter, n in zip(self._counters, counts, strict=True):
            if n:
                counter.inc(n)
        if fx.usage:
            self._set(list(fx.usage))

    def _set(self, keys: list[str]) -> None:
        other = False
        for key in keys:
            if key == OUTBOX_KEY:
                self._outbox_depth.set(self.db.outbox_depth())
                continue
            child = self._named.get(key)
            if child is None and len(self._named) < self.labels:
                child = self._named[key] = self._depth.labels(mailbox=key)
            if child is None:
                other = True
                continue
            count, _size, dead = self.db.usage.get(key, (0, 0, 0))
            child.set(count - dead)
        if other:
            rest = sum(
                count - dead
                for key, (count, _size, dead) in self.db.usage.items()
                if key != OUTBOX_KEY and key not in self._named
            )
            self._depth.labels(mailbox=OTHER).set(rest)
