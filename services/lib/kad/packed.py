"""Provider records packed into one table: ~110 bytes each instead of ~700 as Python objects.

An open-addressing hash table (linear probing) over one ``bytearray`` of fixed slots::

    slot = object key (32) | provider index (4, u32) | expires (4, u32 Unix s) | signature (64)

and a byte of state per slot (empty, used, deleted). A provider's key and addresses are kept
once per distinct (provider, addresses) pair, in a small table the slots point into
(``_providers``: a record's signature covers the addresses it was made with, so those are the
ones it is answered with); each provider's record count is kept too (the per-source share).
BLAKE3 keys are uniform, so their first 8 bytes are the hash.

Guarantees: at most one slot per (object, provider); a lookup scans one probe run (the table is
rebuilt when used and deleted slots pass ``MAX_LOAD``, to ``REBUILT_LOAD``); deleted slots
(expired, withdrawn) are reclaimed at the next rebuild; a provider entry whose last record went
is forgotten. Nothing here checks signatures: the caller does (``records.check``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .records import ProviderRecord

__all__ = ["PackedProviders"]

SLOT = 104
EMPTY, USED, DELETED = 0, 1, 2
MAX_LOAD = 0.85
REBUILT_LOAD = 0.72
MIN_SLOTS = 1024
_META = struct.Struct(">II")  # provider index, expires


class PackedProviders:
    def __init__(self) -> None:
        self._cap = MIN_SLOTS
        self._slots = bytearray(SLOT * self._cap)
        self._state = bytearray(self._cap)
        self._used = 0
        self._deleted = 0
        # (provider node key, addresses) -> index into _providers / _counts
        self._index: dict[tuple[int, tuple[str, ...]], int] = {}
        self._providers: list[tuple[int, bytes, tuple[str, ...]] | None] = []
        self._counts: list[int] = []  # slots pointing at each entry
        self._free: list[int] = []
        self._per_node: dict[int, int] = {}  # records of each provider node

    def __len__(self) -> int:
        return self._used

    def count_of(self, provider: int) -> int:
        return self._per_node.get(provider, 0)

    # -- the probe run ---------------------------------------------------------------------

    def _start(self, key: bytes | bytearray) -> int:
        return int.from_bytes(key[:8], "big") % self._cap

    def _run(self, key: bytes) -> Iterator[int]:
        """Every slot of ``key``'s probe run holding ``key`` (deleted ones skipped)."""
        i = self._start(key)
        slots, state = self._slots, self._state
        while state[i] != EMPTY:
            if state[i] == USED and slots[i * SLOT : i * SLOT + 32] == key:
                yield i
            i = (i + 1) % self._cap

    def _meta(self, i: int) -> tuple[int, int]:
        idx, expires = _META.unpack_from(self._slots, i * SLOT + 32)
        return idx, expires

    # -- changes ---------------------------------------------------------------------------

    def _entry_index(self, record: ProviderRecord) -> int:
        """The entry of the record's (provider, addresses), made if new (no slot counts yet)."""
        idx = self._index.get((record.provider, record.addrs))
        if idx is None:
            idx = self._free.pop() if self._free else len(self._providers)
            entry = (record.provider, record.public, record.addrs)
            if idx == len(self._providers):
                self._providers.append(entry)
                self._counts.append(0)
            else:
                self._providers[idx] = entry
            self._index[(record.provider, record.addrs)] = idx
        return idx

    def _node_of(self, idx: int) -> int:
        entry = self._providers[idx]
        assert entry is not None
        return entry[0]

    def _slot_of(self, raw: bytes, provider: int) -> int | None:
        for i in self._run(raw):
            if self._node_of(self._meta(i)[0]) == provider:
                return i
        return None

    def find(self, key: int, provider: int) -> ProviderRecord | None:
        i = self._slot_of(key.to_bytes(32, "big"), provider)
        return None if i is None else self._record(i, key)

    def put(self, record: ProviderRecord) -> bool:
        """Store or replace ``record``; True when it took a new slot (the caller bounds)."""
        raw = record.key.to_bytes(32, "big")
        idx = self._entry_index(record)
        held = self._slot_of(raw, record.provider)
        if held is not None:
            old = self._meta(held)[0]
            if old != idx:
                self._counts[idx] += 1
                self._release(old)
            self._write(held, raw, idx, record)
            return False
        if (self._used + self._deleted + 1) > MAX_LOAD * self._cap:
            self._rebuild(self._used + 1)
        i = self._start(raw)
        while self._state[i] == USED:
            i = (i + 1) % self._cap
        if self._state[i] == DELETED:
            self._deleted -= 1
        self._write(i, raw, idx, record)
        self._state[i] = USED
        self._used += 1
        self._counts[idx] += 1
        self._per_node[record.provider] = self._per_node.get(record.provider, 0) + 1
        return True

    def _write(self, i: int, raw: bytes, idx: int, record: ProviderRecord) -> None:
        base = i * SLOT
        self._slots[base : base + 32] = raw
        _META.pack_into(self._slots, base + 32, idx, record.expires)
        self._slots[base + 40 : base + SLOT] = record.sig

    def remove(self, key: int, provider: int) -> bool:
        i = self._slot_of(key.to_bytes(32, "big"), provider)
        if i is None:
            return False
        self._delete(i, self._meta(i)[0])
        return True

    def _delete(self, i: int, idx: int) -> None:
        self._state[i] = DELETED
        self._used -= 1
        self._deleted += 1
        node = self._node_of(idx)
        self._per_node[node] -= 1
        if not self._per_node[node]:
            del self._per_node[node]
        self._release(idx)

    def _release(self, idx: int) -> None:
        """One slot fewer points at entry ``idx``; the entry goes with its last slot."""
        self._counts[idx] -= 1
        if not self._counts[idx]:
            entry = self._providers[idx]
            assert entry is not None
            del self._index[(entry[0], entry[2])]
            self._providers[idx] = None
            self._free.append(idx)

    def expire(self, now: float) -> int:
        """Delete every record whose expiry passed; how many went."""
        gone = 0
        for i in range(self._cap):
            if self._state[i] == USED:
                idx, expires = self._meta(i)
                if expires <= now:
                    self._delete(i, idx)
                    gone += 1
        if self._deleted > self._used:
            self._rebuild(self._used)
        return gone

    def _rebuild(self, want: int) -> None:
        old_slots, old_state, old_cap = self._slots, self._state, self._cap
        self._cap = max(MIN_SLOTS, int(want / REBUILT_LOAD) + 1)
        self._slots = bytearray(SLOT * self._cap)
        self._state = bytearray(self._cap)
        self._deleted = 0
        for j in range(old_cap):
            if old_state[j] != USED:
                continue
            chunk = old_slots[j * SLOT : (j + 1) * SLOT]
            i = self._start(chunk[:32])
            while self._state[i] != EMPTY:
                i = (i + 1) % self._cap
            self._slots[i * SLOT : (i + 1) * SLOT] = chunk
            self._state[i] = USED

    # -- reads -----------------------------------------------------------------------------

    def _record(self, i: int, key: int) -> ProviderRecord:
        idx, expires = self._meta(i)
        entry = self._providers[idx]
        assert entry is not None
        node, public, addrs = entry
        sig = bytes(self._slots[i * SLOT + 40 : (i + 1) * SLOT])
        return ProviderRecord(key, node, addrs, expires, public, sig)

    def records(self, key: int) -> list[ProviderRecord]:
        return [self._record(i, key) for i in self._run(key.to_bytes(32, "big"))]
