"""Predict quarantines from the crashes the drill saw (the restart cap of DESIGN.md §3).

The supervisor grants at most ``restart_cap`` restarts per ``restart_window`` seconds per child;
the crash that would exceed it quarantines the child; a release forgets the history. The drill
replays the crashes it observed on its own clock, so a crash whose verdict depends on a restart
granted within ``tolerance`` of the window's edge is ``ambiguous`` rather than a false alarm.
"""

from __future__ import annotations

import collections
from typing import Literal

import attrs

__all__ = ["QuarantineModel", "Verdict"]

Verdict = Literal["restart", "quarantine", "ambiguous"]


@attrs.define
class _Child:
    granted: collections.deque[float] = attrs.field(factory=collections.deque)
    expected: int = 0
    ambiguous: int = 0
    observed: int = 0
    last: Verdict | None = None  # verdict of the latest crash since the last release


class QuarantineModel:
    def __init__(self, restart_cap: int, restart_window: float, tolerance: float = 1.0) -> None:
        self.cap = restart_cap
        self.window = restart_window
        self.tolerance = tolerance
        self._children: dict[str, _Child] = collections.defaultdict(_Child)

    def crash(self, service: str, now: float) -> Verdict:
        """Record a crash seen at ``now``; what the supervisor should have decided."""
        child = self._children[service]
        granted = child.granted
        while granted and granted[0] <= now - self.window - self.tolerance:
            granted.popleft()
        sure = sum(1 for t in granted if t > now - self.window + self.tolerance)
        if sure >= self.cap:
            verdict: Verdict = "quarantine"
            child.expected += 1
        elif len(granted) < self.cap:
            verdict = "restart"
            granted.append(now)
        else:
            verdict = "ambiguous"
            child.ambiguous += 1
            granted.append(now)  # if it was restarted, it counts; if not, release clears it
        child.last = verdict
        return verdict

    def last_verdict(self, service: str) -> Verdict | None:
        return self._children[service].last

    def observed_quarantine(self, service: str) -> None:
        self._children[service].observed += 1

    def release(self, service: str) -> None:
        child = self._children[service]
        child.granted.clear()
        child.last = None

    def mismatches(self) -> list[str]:
        """Services whose observed quarantines differ from the prediction (one line each)."""
        out = []
        for name, c in sorted(self._children.items()):
            if not c.expected <= c.observed <= c.expected + c.ambiguous:
                out.append(
                    f"{name}: quarantined {c.observed}x, expected {c.expected}"
                    + (f" (+{c.ambiguous} ambiguous)" if c.ambiguous else "")
                )
        return out

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            name: {"expected": c.expected, "ambiguous": c.ambiguous, "observed": c.observed}
            for name, c in sorted(self._children.items())
        }
