"""Which verifiers of the node have applied which key-set version (what a revocation waits on).

Every verifier (``kernel.key_feed.KeyFeed``) long-polls ``Keys`` and names itself; the ``since``
of its poll is the version it has applied. Guarantees:

- ``wait_applied(v)`` returns once every *live* verifier has polled with ``since >= v``, or when
  its deadline passes, naming those still behind. A verifier is live while it has a poll open
  or polled within ``LIVE_S``: a KeyFeed never goes longer than that between polls, so one that
  did is gone (and a restarted one loads the whole set before it verifies anything).
- After a start, svc-passport has not heard from every verifier yet: ``wait_applied`` also waits
  until ``LIVE_S`` of uptime has passed, so a revoke just after a passport restart still waits
  for every verifier.
- Bounded: one entry per verifier name (at most ``MAX_VERIFIERS``; more are not tracked).
"""

from __future__ import annotations

import trio

__all__ = ["LIVE_S", "MAX_VERIFIERS", "Verifiers"]

LIVE_S = 2.0  # > a KeyFeed's longest gap between polls (its long-poll call timeout)
MAX_VERIFIERS = 64


class Verifiers:
    def __init__(self) -> None:
        self._started = trio.current_time()
        self._applied: dict[str, int] = {}
        self._seen: dict[str, float] = {}
        self._polling: dict[str, int] = {}
        # two events, set (and replaced) on their own changes: a poll's start is news to a revoke
        # waiting for acks, never to another verifier's long poll (they would answer each other
        # at once, forever)
        self._keys = trio.Event()  # the key set changed: long polls answer
        self._acks = trio.Event()  # a verifier applied a version (or went silent): revokes look

    def poll_started(self, name: str, since: int) -> None:
        if not name or (name not in self._applied and len(self._applied) >= MAX_VERIFIERS):
            return
        acked = self._applied.get(name) != since
        self._applied[name] = since
        self._seen[name] = trio.current_time()
        self._polling[name] = self._polling.get(name, 0) + 1
        if acked:
            self._acks.set()
            self._acks = trio.Event()

    def poll_ended(self, name: str) -> None:
        if name in self._polling:
            self._seen[name] = trio.current_time()
            self._polling[name] -= 1
            if not self._polling[name]:
                del self._polling[name]

    def keys_changed(self) -> None:
        """The key set changed (a rotation, a revocation, a key retired): every long poll
        answers now."""
        self._keys.set()
        self._keys = trio.Event()

    async def wait_keys(self, timeout: float) -> None:
        """A long poll's wait: until the key set changes, at most ``timeout`` s."""
        with trio.move_on_after(timeout):
            await self._keys.wait()

    def behind(self, version: int) -> list[str]:
        """The live verifiers that have not applied ``version`` yet."""
        now = trio.current_time()
        return sorted(n for n in self._applied if self._applied[n] < version and self._live(n, now))

    def _live(self, name: str, now: float) -> bool:
        return name in self._polling or now - self._seen[name] < LIVE_S

    async def wait_applied(self, version: int, timeout: float) -> tuple[str, ...]:
        """Wait until every live verifier has applied ``version``; those still behind when
        ``timeout`` passed (empty: all of them refuse what that version refuses)."""
        deadline = trio.current_time() + timeout
        while True:
            now = trio.current_time()
            behind = self.behind(version)
            warm_at = self._started + LIVE_S
            if (not behind and now >= warm_at) or now >= deadline:
                return tuple(behind)
            # Besides an ack (an event), time changes the answer: the end of the warm-up, and a
            # silent verifier ceasing to count as live.
            times = [deadline] + ([warm_at] if now < warm_at else [])
            times += [self._seen[n] + LIVE_S for n in behind if n not in self._polling]
            with trio.move_on_after(min(times) - now):
                await self._acks.wait()
