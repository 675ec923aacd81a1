"""An iterative Kademlia lookup as a state machine: who to ask next, when it is done.

Sans-IO: the caller sends the queries ``next_queries`` names, reports each outcome
(``answered`` with the contacts the node gave, or ``failed``) and passes ``now``. The same
object drives svc-dht's real lookups and ``bench/dht.py``'s simulated ones.

Guarantees:

- at most ``alpha`` queries are in flight that are younger than ``hedge_delay``: a query older
  than that no longer holds its slot, so one slow node delays a lookup by ``hedge_delay``, not by
  its timeout (a hedge); hedges are bounded too (never more than ``2 * alpha`` in flight);
- only the ``k`` nearest candidates not known to have failed are asked, nearest first; a node is
  asked at most once; our own key is never a candidate;
- at most ``k`` contacts are taken from one answer (the nearest ``k`` of its first ``50 k``: an
  answer with 10,000 contacts costs no more than one with 1,000), and at most ``SHORTLIST * k``
  candidates are kept (the farthest unasked ones are forgotten first);
- it is done when the ``k`` nearest live candidates have all answered, when nothing is left to
  ask, or (a value lookup) as soon as ``want`` values were reported by ``answered``;
- ``hops`` is the hop (1 = a seed we asked) of the answer that gave the first value, else of
  the nearest node that answered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from .table import Contact

__all__ = ["SHORTLIST", "Lookup"]

SHORTLIST = 8  # candidates kept per k
NEW, ASKED, ANSWERED, FAILED = "new", "asked", "answered", "failed"


@attrs.define(slots=True)
class _Candidate:
    contact: Contact
    hop: int
    state: str = NEW
    sent: float = 0.0


class Lookup:
    def __init__(
        self,
        target: int,
        seeds: Iterable[Contact],
        *,
        own: int,
        k: int = 20,
        alpha: int = 3,
        hedge_delay: float = 0.25,
        want: int = 0,
    ) -> None:
        self.target = target
        self.own = own
        self.k = k
        self.alpha = alpha
        self.hedge_delay = hedge_delay
        self.want = want
        self.found = 0
        self.value_hop = 0
        self.sent = 0  # queries sent: the messages this lookup cost
        self._cands: dict[int, _Candidate] = {}
        self._order: list[_Candidate] = []
        self._add(seeds, hop=1)

    def _add(self, contacts: Iterable[Contact], hop: int) -> None:
        fresh = [c for c in contacts if c.key != self.own and c.key not in self._cands]
        if not fresh:
            return
        for contact in fresh:
            cand = _Candidate(contact, hop)
            self._cands[contact.key] = cand
            self._order.append(cand)
        self._order.sort(key=lambda c: c.contact.key ^ self.target)
        limit = SHORTLIST * self.k
        while len(self._order) > limit:
            victim = next((c for c in reversed(self._order) if c.state == NEW), None)
            if victim is None:
                break
            self._order.remove(victim)
            del self._cands[victim.contact.key]

    def _live(self) -> list[_Candidate]:
        """The ``k`` nearest candidates not known to have failed."""
        out = []
        for cand in self._order:
            if cand.state != FAILED:
                out.append(cand)
                if len(out) == self.k:
                    break
        return out

    @property
    def done(self) -> bool:
        if self.want and self.found >= self.want:
            return True
        live = self._live()
        if all(c.state == ANSWERED for c in live):
            return True
        return not any(c.state in (NEW, ASKED) for c in self._order)

    def next_queries(self, now: float) -> list[Contact]:
        """The nodes to ask now (marked as asked): fill the free slots, nearest first."""
        if self.done:
            return []
        asked = [c for c in self._order if c.state == ASKED]
        young = sum(1 for c in asked if now - c.sent < self.hedge_delay)
        room = min(self.alpha - young, 2 * self.alpha - len(asked))
        out: list[Contact] = []
        for cand in self._live():
            if room <= 0:
                break
            if cand.state == NEW:
                cand.state, cand.sent = ASKED, now
                out.append(cand.contact)
                room -= 1
        self.sent += len(out)
        return out

    def answered(self, key: int, contacts: Sequence[Contact], *, values: int = 0) -> None:
        """``key`` answered with ``contacts`` (nearer nodes) and ``values`` values."""
        cand = self._cands.get(key)
        if cand is None or cand.state not in (ASKED, FAILED):
            return
        cand.state = ANSWERED
        if values and not self.found:
            self.value_hop = cand.hop
        self.found += values
        nearest = sorted(contacts[: 50 * self.k], key=lambda c: c.key ^ self.target)[: self.k]
        self._add(nearest, hop=cand.hop + 1)

    def failed(self, key: int) -> None:
        """``key`` did not answer (timeout, refusal, a broken connection)."""
        cand = self._cands.get(key)
        if cand is not None and cand.state == ASKED:
            cand.state = FAILED

    def gaps(self) -> int:
        """Nodes among the ``k`` nearest that we heard of but could not ask (they failed): what a
        value lookup may have missed. 0 means every one of the nearest answered."""
        failed = answered = 0
        for cand in self._order:
            if cand.state == ANSWERED:
                answered += 1
            elif cand.state == FAILED:
                failed += 1
            if answered + failed >= self.k:
                break
        return failed

    def result(self) -> list[Contact]:
        """The ``k`` nearest nodes that answered, nearest first."""
        return [c.contact for c in self._order if c.state == ANSWERED][: self.k]

    @property
    def hops(self) -> int:
        if self.found:
            return self.value_hop
        nearest = next((c for c in self._order if c.state == ANSWERED), None)
        return nearest.hop if nearest else 0
