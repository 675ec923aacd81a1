"""The records this node holds for others: provider records by object, peer records by node.

Synchronous, ``now`` passed in (Unix seconds, as the records' expiry). The caller checks a
record (``records.check``) before it offers it here; the store applies the bounds. Provider
records (the many) are packed (``packed``: ~110 bytes each); peer records are few.

Guarantees:

- at most ``max_records`` records in all and at most ``per_source`` from one node (the
  provider, or the node a peer record speaks for): past either the record is refused
  (``full`` / ``share``) and nothing already held is evicted for it, so a flood from one source
  cannot push out others' records;
- one provider record per (object, provider) and one peer record per node: a newer one
  replaces it (a provider record with a later expiry, a peer record with a higher ``seq``);
  an older or equal ``seq`` is refused as ``replay``;
- expired records are never answered, and ``expire`` drops them (the count stays exact).
"""

from __future__ import annotations

from .packed import PackedProviders
from .records import PeerRecord, ProviderRecord

__all__ = ["RecordStore"]


class RecordStore:
    def __init__(self, *, max_records: int = 1_000_000, per_source: int = 100_000) -> None:
        self.max_records = max_records
        self.per_source = per_source
        self._providers = PackedProviders()
        self._peers: dict[int, PeerRecord] = {}

    def __len__(self) -> int:
        return len(self._providers) + len(self._peers)

    def _room(self, source: int) -> str:
        if len(self) >= self.max_records:
            return "full"
        held = self._providers.count_of(source) + (source in self._peers)
        if held >= self.per_source:
            return "share"
        return ""

    def add_provider(self, record: ProviderRecord) -> str:
        """``stored``, ``refreshed`` (replaced a held one), or the refusal's reason."""
        old = self._providers.find(record.key, record.provider)
        if old is not None:
            if record.expires <= old.expires:
                return "refreshed" if record.expires == old.expires else "replay"
            self._providers.put(record)
            return "refreshed"
        refusal = self._room(record.provider)
        if refusal:
            return refusal
        self._providers.put(record)
        return "stored"

    def providers(self, key: int, now: float, limit: int = 20) -> list[ProviderRecord]:
        """Current provider records of ``key`` (the latest-expiring first), at most ``limit``."""
        live = [r for r in self._providers.records(key) if r.expires > now]
        live.sort(key=lambda r: -r.expires)
        return live[:limit]

    def drop_provider(self, keys: set[int], provider: int) -> int:
        """Forget ``provider``'s records of ``keys`` (its objects are gone); how many went."""
        return sum(self._providers.remove(key, provider) for key in keys)

    def put_peer(self, record: PeerRecord) -> str:
        """``stored``, ``refreshed`` (a higher ``seq`` replaced the held one), or the refusal."""
        old = self._peers.get(record.node)
        if old is not None:
            if record.seq <= old.seq:
                return "refreshed" if record == old else "replay"
            self._peers[record.node] = record
            return "refreshed"
        refusal = self._room(record.node)
        if refusal:
            return refusal
        self._peers[record.node] = record
        return "stored"

    def peer(self, node: int, now: float) -> PeerRecord | None:
        record = self._peers.get(node)
        return record if record is not None and record.expires > now else None

    def expire(self, now: float) -> int:
        """Drop every expired record; how many went."""
        gone = self._providers.expire(now)
        for node in [n for n, r in self._peers.items() if r.expires <= now]:
            del self._peers[node]
            gone += 1
        return gone

    def counts(self) -> dict[str, int]:
        """Records held by kind (the ``dht_records`` gauge and ``GET /dht``)."""
        return {"providers": len(self._providers), "peers": len(self._peers)}
