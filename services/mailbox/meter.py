"""svc-mailbox's metrics after each commit: counters, and depth gauges over a bounded label set.

``mailbox_depth{mailbox}`` names at most ``labels`` mailboxes (the first ones seen since this
process started); every other mailbox is summed into ``mailbox="_other"``, so a client creating
mailboxes at will cannot grow the scrape without bound.
"""

from __future__ import annotations

from typing import Any

from services.mailbox.store import OUTBOX_KEY, Effects, MailDb

__all__ = ["OTHER", "DepthMeter"]

OTHER = "_other"


class DepthMeter:
    def __init__(self, metrics: Any, db: MailDb, labels: int) -> None:
        self.m = metrics
        self.db = db
        self.labels = labels
        self._named: dict[str, Any] = {}  # mailbox -> its gauge child

    def show_all(self) -> None:
        """Set every gauge from the tables' usage (at start: the depth survived a restart)."""
        self._set(list(self.db.usage))

    def after_commit(self, fx: Effects) -> None:
        m = self.m
        for counter, n in (
            (m.mailbox_sent, fx.sent),
            (m.mailbox_delivered, fx.delivered),
            (m.mailbox_acked, fx.acked),
            (m.mailbox_visibility_timeout, fx.timeouts),
            (m.mailbox_dlq, fx.dead),
        ):
            if n:
                counter.inc(n)
        if fx.usage:
            self._set(list(fx.usage))

    def _set(self, keys: list[str]) -> None:
        other = False
        for key in keys:
            if key == OUTBOX_KEY:
                self.m.mailbox_outbox_depth.set(self.db.outbox_depth())
                continue
            child = self._named.get(key)
            if child is None and len(self._named) < self.labels:
                child = self._named[key] = self.m.mailbox_depth.labels(mailbox=key)
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
            self.m.mailbox_depth.labels(mailbox=OTHER).set(rest)
