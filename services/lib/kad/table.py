"""The routing table: for every bucket, the contacts we have talked to, oldest first.

Sans-IO (no clock, no socket): the caller says what happened (``seen``: a contact answered us or
asked us something and proved its id; ``failed``: it did not answer; ``ping_answered`` /
``ping_failed``: the outcome of a liveness check the table asked for) and passes ``now``.

Guarantees:

- a bucket holds at most ``k`` contacts, each really in that bucket, ordered least-recently-seen
  first; the table never holds its own key;
- a live contact is never pushed out by a new one: a full bucket keeps the newcomer in a bounded
  replacement cache and asks the caller to ping its oldest contact; only a failed ping (or an
  unanswered request while a replacement waits) removes a contact, and the newest waiting
  replacement takes its place; with no replacement a contact that fails keeps its place (it
  may come back: after a partition heals, both sides still know each other);
- at most ``per_subnet`` contacts of one /24 (IPv4) or /48 (IPv6) share a bucket, its
  replacement cache included (``keyspace.subnet_of``: loopback and private ranges are exempt):
  1,000 identities from one address cannot fill a bucket;
- memory is bounded: 256 buckets of ``k`` contacts and ``k`` replacements each.
"""

from __future__ import annotations

import collections
import functools
import heapq
from collections.abc import Iterable

import attrs

from .keyspace import BITS, bucket_of, subnet_of, text_of

__all__ = ["REFRESH_SPAN", "Contact", "RoutingTable", "Seen"]

REFRESH_SPAN = 16  # the buckets nearest us that a refresh keeps full (farther ones fill by use)


@attrs.frozen(slots=True)
class Contact:
    """A node as we reach it: its key and the host and port its DHT listens on."""

    key: int
    host: str
    port: int

    @property
    def addr(self) -> str:
        """Its peer address, ``node:<hex>@host:port`` (DESIGN §8's ADDR)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{text_of(self.key)}@{host}:{self.port}"


@attrs.frozen(slots=True)
class Seen:
    """What ``RoutingTable.seen`` did: ``added``, ``updated`` (moved to the newest end),
    ``self``, ``subnet`` (refused: its block has ``per_subnet`` contacts in the bucket) or
    ``waiting`` (the bucket is full: it waits as a replacement; ``ping`` is the oldest contact,
    to check, None when a check is already under way)."""

    outcome: str
    ping: Contact | None = None


_subnet = functools.lru_cache(maxsize=4096)(subnet_of)


@attrs.define(slots=True)
class _Bucket:
    contacts: dict[int, Contact] = attrs.field(factory=dict)  # oldest first
    spares: collections.deque[Contact] = attrs.field(factory=collections.deque)
    fails: dict[int, int] = attrs.field(factory=dict)
    pinging: int | None = None  # the key whose liveness check is under way
    touched: float = 0.0

    def crowded(self, contact: Contact, per_subnet: int) -> bool:
        block = _subnet(contact.host)
        if block is None:
            return False
        same = sum(
            1
            for other in (*self.contacts.values(), *self.spares)
            if other.key != contact.key and _subnet(other.host) == block
        )
        return same >= per_subnet


class RoutingTable:
    def __init__(self, own: int, *, k: int = 20, per_subnet: int = 2) -> None:
        if k < 1 or per_subnet < 1:
            raise ValueError("k and per_subnet must be >= 1")
        self.own = own
        self.k = k
        self.per_subnet = per_subnet
        self._buckets = [_Bucket() for _ in range(BITS)]
        self._all: dict[int, Contact] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, key: int) -> bool:
        return key in self._all

    def get(self, key: int) -> Contact | None:
        return self._all.get(key)

    def contacts(self) -> list[Contact]:
        return list(self._all.values())

    def bucket_sizes(self) -> dict[int, int]:
        """Contacts per non-empty bucket (bucket index: 255 = the farthest half of the space)."""
        return {i: len(b.contacts) for i, b in enumerate(self._buckets) if b.contacts}

    def bucket(self, index: int) -> list[Contact]:
        """The contacts of bucket ``index``, least-recently-seen first."""
        return list(self._buckets[index].contacts.values())

    def seen(self, contact: Contact, now: float) -> Seen:
        """``contact`` proved its key to us (it answered, or it asked over a pinned link)."""
        index = bucket_of(self.own, contact.key)
        if index < 0:
            return Seen("self")
        bucket = self._buckets[index]
        bucket.touched = now
        bucket.fails.pop(contact.key, None)
        if contact.key in bucket.contacts:
            old = bucket.contacts.pop(contact.key)
            if old != contact and bucket.crowded(contact, self.per_subnet):
                bucket.contacts[contact.key] = old  # it moved into a full block: keep the old
            else:
                bucket.contacts[contact.key] = self._all[contact.key] = contact
            if bucket.pinging == contact.key:
                bucket.pinging = None
            return Seen("updated")
        if bucket.crowded(contact, self.per_subnet):
            return Seen("subnet")
        if len(bucket.contacts) < self.k:
            bucket.contacts[contact.key] = self._all[contact.key] = contact
            return Seen("added")
        self._spare(bucket, contact)
        if bucket.pinging is not None:
            return Seen("waiting")
        oldest = next(iter(bucket.contacts.values()))
        bucket.pinging = oldest.key
        return Seen("waiting", ping=oldest)

    def _spare(self, bucket: _Bucket, contact: Contact) -> None:
        for spare in list(bucket.spares):
            if spare.key == contact.key:
                bucket.spares.remove(spare)
        bucket.spares.append(contact)
        while len(bucket.spares) > self.k:
            bucket.spares.popleft()

    def ping_answered(self, key: int, now: float) -> None:
        """The contact we were asked to check is alive: it stays, as the newest."""
        contact = self._all.get(key)
        if contact is not None:
            self.seen(contact, now)

    def ping_failed(self, key: int) -> None:
        """The contact we were asked to check did not answer: out, the newest spare in."""
        self._remove(key)

    def failed(self, key: int) -> None:
        """``key`` did not answer a request: replaced by the newest waiting spare if there is
        one; else it keeps its place (Kademlia's rule: a contact that may come back is worth
        more than an empty slot; after a partition both sides still know each other)."""
        index = bucket_of(self.own, key)
        if index < 0 or key not in self._all:
            return
        bucket = self._buckets[index]
        bucket.fails[key] = bucket.fails.get(key, 0) + 1
        if bucket.spares:
            self._remove(key)

    def fails(self, key: int) -> int:
        """Requests ``key`` failed in a row since it last answered (0: it is live)."""
        index = bucket_of(self.own, key)
        return self._buckets[index].fails.get(key, 0) if index >= 0 else 0

    def _remove(self, key: int) -> None:
        index = bucket_of(self.own, key)
        if index < 0:
            return
        bucket = self._buckets[index]
        if bucket.pinging == key:
            bucket.pinging = None
        bucket.fails.pop(key, None)
        if bucket.contacts.pop(key, None) is None:
            return
        del self._all[key]
        while bucket.spares:
            spare = bucket.spares.pop()
            if not bucket.crowded(spare, self.per_subnet):
                bucket.contacts[spare.key] = self._all[spare.key] = spare
                return

    def remove(self, key: int) -> None:
        """Forget ``key`` now (an operator's ``peers rm``, a node that proved another id)."""
        self._remove(key)

    def closest(self, target: int, n: int | None = None) -> list[Contact]:
        """The ``n`` (default ``k``) contacts nearest ``target``, nearest first."""
        return heapq.nsmallest(n or self.k, self._all.values(), key=lambda c: c.key ^ target)

    def stale(self, now: float, after: float) -> list[int]:
        """The buckets to refresh (by a lookup of a key in them): from one nearer than the
        nearest filled bucket out to the farthest, at most the ``REFRESH_SPAN`` farthest (a
        nearer bucket is empty in any network below 2**16 * k nodes), unless something
        happened in them within ``after`` s. None while the table is empty."""
        filled = [i for i, b in enumerate(self._buckets) if b.contacts]
        if not filled:
            return []
        low = max(min(filled) - 1, BITS - REFRESH_SPAN)
        return [i for i in range(low, BITS) if now - self._buckets[i].touched >= after]

    def load(self, contacts: Iterable[Contact], now: float) -> int:
        """Contacts from a saved table (a macronode's warm restart): added as if seen; the
        rules hold as for any other. Returns how many were taken."""
        return sum(1 for c in contacts if self.seen(c, now).outcome == "added")
