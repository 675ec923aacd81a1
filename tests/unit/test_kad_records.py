"""Signed records and the bounded record store: forged, replayed, foreign, expired and oversized
records are refused with their reason; one source cannot take more than its share."""

from __future__ import annotations

import random

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.lib.kad import (
    RecordStore,
    Rejected,
    Signer,
    assign,
    check,
    estimate_size,
    key_of,
    region_bits,
    region_middle,
    regions,
)
from services.lib.kad.records import MAX_ADDRS, VALIDITY

NOW = 1_800_000_000
OBJ = key_of("b3:" + "ab" * 32)


@pytest.fixture(scope="module")
def signers():
    return Signer(Ed25519PrivateKey.generate()), Signer(Ed25519PrivateKey.generate())


def reason(record) -> str:
    with pytest.raises(Rejected) as info:
        check(record, NOW)
    return info.value.reason


def test_a_signed_record_checks_and_every_forgery_is_refused_with_its_reason(signers):
    alice, mallory = signers
    good = alice.provider(OBJ, ("127.0.0.1:7000",), NOW + 60)
    check(good, NOW)
    check(alice.peer(("127.0.0.1:7000",), seq=3, expires=NOW + 60), NOW)
    assert reason(attrs.evolve(good, key=OBJ ^ 1)) == "signature"
    assert reason(attrs.evolve(good, addrs=("6.6.6.6:1",))) == "signature"
    assert reason(attrs.evolve(good, sig=bytes(64))) == "signature"
    # Mallory signs a record claiming to be Alice: her key is not Alice's node id
    forged = attrs.evolve(mallory.provider(OBJ, ("6.6.6.6:1",), NOW + 60), provider=alice.node)
    assert reason(forged) == "node_id"
    assert reason(alice.provider(OBJ, (), NOW)) == "expired"
    assert reason(alice.provider(OBJ, (), NOW + 10 * VALIDITY)) == "expiry"
    assert reason(alice.provider(OBJ, ("a:1",) * (MAX_ADDRS + 1), NOW + 60)) == "oversized"
    assert reason(alice.peer(("x" * 1000,), seq=1, expires=NOW + 60)) == "oversized"


def test_the_store_bounds_each_source_and_refuses_replays(signers):
    alice, mallory = signers
    store = RecordStore(max_records=5, per_source=3)
    outcomes = [store.add_provider(mallory.provider(OBJ + i, (), NOW + 60)) for i in range(5)]
    assert outcomes == ["stored"] * 3 + ["share"] * 2
    assert store.put_peer(alice.peer(("h:1",), seq=2, expires=NOW + 60)) == "stored"
    assert store.put_peer(alice.peer(("h:2",), seq=1, expires=NOW + 60)) == "replay"
    assert store.peer(alice.node, NOW).addrs == ("h:1",)
    assert store.put_peer(alice.peer(("h:3",), seq=3, expires=NOW + 60)) == "refreshed"
    assert store.add_provider(alice.provider(OBJ, (), NOW + 30)) == "stored"
    assert store.add_provider(alice.provider(OBJ + 9, (), NOW + 60)) == "full"
    assert [r.provider for r in store.providers(OBJ, NOW)] == [mallory.node, alice.node]
    assert store.providers(OBJ, NOW + 40) == [store.providers(OBJ, NOW)[0]]
    assert len(store) == 5
    assert store.expire(NOW + 45) == 1 and len(store) == 4
    assert store.expire(NOW + 61) == 4 and len(store) == 0 and store.counts()["peers"] == 0


def test_sweep_regions_hold_k_to_2k_nodes_and_assign_the_true_k_nearest():
    rng = random.Random(11)
    nodes = [rng.getrandbits(256) for _ in range(10_000)]
    own = nodes[0]
    near = sorted(nodes[1:], key=lambda n: n ^ own)[:20]
    size = estimate_size(own, near)
    assert 5_000 <= size <= 20_000
    bits = region_bits(size, 20)
    keys = [rng.getrandbits(256) for _ in range(2_000)]
    by_region = regions(keys, bits)
    assert sum(len(v) for v in by_region.values()) == len(keys)
    prefix, members = next(iter(by_region.items()))
    middle = region_middle(prefix, bits)
    assert middle >> (256 - bits) == prefix
    in_region = [n for n in nodes if n >> (256 - bits) == prefix]
    assert 20 <= len(in_region) <= 60
    batches = assign(members, in_region, 20)
    for key in members[:50]:
        truth = set(sorted(nodes, key=lambda n: n ^ key)[:20])
        assert {n for n, ks in batches.items() if key in ks} == truth
