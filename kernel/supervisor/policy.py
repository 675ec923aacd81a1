"""Crash-only restart policy (DESIGN.md §3): pure arithmetic, no I/O, no clock of its own.

Rules, per child:

* A *streak* is a run of crashes with no stable run between them. A crash whose process ran for at
  least ``stable_after`` seconds starts a new streak. The first crash of a streak restarts at once
  (delay 0); the n-th (n >= 2) waits ``uniform(d/2, d)`` with ``d = min(max_backoff,
  min_backoff * 2**(n-2))``.
* Independently of streaks, at most ``restart_cap`` restarts may be granted within any
  ``restart_window`` (a restart granted at ``t`` counts for crashes at ``now < t + window``). A
  crash that would exceed the cap gets ``Quarantine`` instead: the child stays down until an
  operator releases it, and ``release()`` forgets all history.

The caller supplies ``now`` (non-decreasing, any monotonic clock) and ``uptime``; jitter comes from
an injected ``random.Random``, so a seeded RNG gives a reproducible schedule.
"""

from __future__ import annotations

import collections
import random
from typing import Protocol

import attrs

__all__ = [
    "CrashHistory",
    "Decision",
    "PolicySettings",
    "Quarantine",
    "Restart",
    "RestartPolicy",
]

# 2**62 times any sane min_backoff is far above any max_backoff, and never overflows a float.
_MAX_EXPONENT = 62


class PolicySettings(Protocol):
    """The part of ``cfg.supervisor`` the policy reads (durations in seconds)."""

    @property
    def stable_after(self) -> float: ...
    @property
    def min_backoff(self) -> float: ...
    @property
    def max_backoff(self) -> float: ...
    @property
    def restart_cap(self) -> int: ...
    @property
    def restart_window(self) -> float: ...


def _non_negative(_inst: object, attr: attrs.Attribute, value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{attr.name} must be >= 0, got {value!r}")


def _positive(_inst: object, attr: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be > 0, got {value!r}")


@attrs.frozen
class RestartPolicy:
    """The knobs of DESIGN.md §3, validated fail-closed. Durations are seconds."""

    stable_after: float = attrs.field(default=10.0, converter=float, validator=_non_negative)
    min_backoff: float = attrs.field(default=0.1, converter=float, validator=_non_negative)
    max_backoff: float = attrs.field(default=30.0, converter=float, validator=_non_negative)
    restart_cap: int = attrs.field(default=5, converter=int)
    restart_window: float = attrs.field(default=60.0, converter=float, validator=_positive)

    @restart_cap.validator
    def _check_cap(self, _attr: attrs.Attribute, value: int) -> None:
        if value < 1:
            raise ValueError(f"restart_cap must be >= 1, got {value}")

    def __attrs_post_init__(self) -> None:
        if self.min_backoff > self.max_backoff:
            raise ValueError(
                f"min_backoff ({self.min_backoff}) must be <= max_backoff ({self.max_backoff})"
            )

    @classmethod
    def from_config(cls, sup: PolicySettings) -> RestartPolicy:
        """Build from a ``cfg.supervisor``-shaped object (duck-typed attributes, seconds)."""
        return cls(
            stable_after=sup.stable_after,
            min_backoff=sup.min_backoff,
            max_backoff=sup.max_backoff,
            restart_cap=sup.restart_cap,
            restart_window=sup.restart_window,
        )

    def bound(self, n: int) -> float:
        """Upper bound ``d`` of the delay for the n-th crash of a streak (0 for n <= 1).

        Non-decreasing in ``n`` and never above ``max_backoff``.
        """
        if n <= 1:
            return 0.0
        return min(self.max_backoff, self.min_backoff * 2.0 ** min(n - 2, _MAX_EXPONENT))


@attrs.frozen
class Restart:
    """Restart after ``delay`` seconds; ``attempt`` is the crash's position in its streak."""

    delay: float
    attempt: int


@attrs.frozen
class Quarantine:
    """Do not restart until released: the restart cap for the window is used up."""


Decision = Restart | Quarantine


class CrashHistory:
    """One child's crash record. Memory is bounded by ``restart_cap`` timestamps.

    ``policy`` may be swapped between crashes (config reload): new knobs apply to the next crash.
    """

    def __init__(self, policy: RestartPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng if rng is not None else random.Random()
        self._streak = 0
        # times of the most recent granted restarts; only the last `restart_cap` can matter
        self._restarts: collections.deque[float] = collections.deque()

    @property
    def streak(self) -> int:
        """Crashes in the current streak (0 after ``release()`` or before any crash)."""
        return self._streak

    def record_crash(self, now: float, uptime: float) -> Decision:
        """Record a crash at ``now`` of a process that ran ``uptime`` seconds; decide what to do."""
        policy = self.policy
        if uptime >= policy.stable_after:
            self._streak = 0
        self._streak += 1
        horizon = now - policy.restart_window
        while self._restarts and self._restarts[0] <= horizon:
            self._restarts.popleft()
        while len(self._restarts) > policy.restart_cap:  # the cap may have shrunk on reload
            self._restarts.popleft()
        if len(self._restarts) >= policy.restart_cap:
            return Quarantine()
        self._restarts.append(now)
        d = policy.bound(self._streak)
        delay = 0.0 if d == 0.0 else min(d, self._rng.uniform(d / 2, d))
        return Restart(delay=delay, attempt=self._streak)

    def at_once_in(self, now: float, started_at: float) -> float:
        """Seconds from ``now`` until a crash of the process started at ``started_at`` would
        be restarted at once (``Restart(delay=0)``), the history staying as it is: its run must
        be stable (a new streak) unless the streak's next delay is 0 anyway, and the cap must
        have room. Never decreases the room ``record_crash`` checks: a crash at or after that
        time gets delay 0 (until the policy itself is changed)."""
        policy = self.policy
        at = now
        if policy.bound(self._streak + 1) > 0:
            at = max(at, started_at + policy.stable_after)
        recent = [t for t in self._restarts if t > now - policy.restart_window]
        if len(recent) >= policy.restart_cap:
            at = max(at, recent[len(recent) - policy.restart_cap] + policy.restart_window)
        return at - now

    def release(self) -> None:
        """Forget everything: the next crash is treated like a first crash."""
        self._streak = 0
        self._restarts.clear()
