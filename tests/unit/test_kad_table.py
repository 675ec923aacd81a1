"""The routing table against a reference model: buckets, least-recently-seen order, ping-before-
evict (a live contact is never pushed out), the /24 rule, ``closest`` as a brute-force sort."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from services.lib.kad import Contact, RoutingTable, bucket_of, random_key_in, subnet_of

K = 3
HOSTS = ["1.2.3.4", "1.2.3.5", "1.2.3.6", "1.2.4.1", "9.9.9.9", "127.0.0.1", "10.0.0.1"]

contacts = st.builds(
    Contact, key=st.integers(0, 2**7), host=st.sampled_from(HOSTS), port=st.just(7000)
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("seen"), contacts),
        st.tuples(
            st.sampled_from(["failed", "ping_failed", "ping_answered"]), st.integers(1, 2**7)
        ),
    ),
    max_size=120,
)


def check_invariants(table: RoutingTable) -> None:
    keys = [c.key for c in table.contacts()]
    assert len(keys) == len(set(keys)) and table.own not in keys
    for index, size in table.bucket_sizes().items():
        bucket = table.bucket(index)
        assert size == len(bucket) <= table.k
        assert all(bucket_of(table.own, c.key) == index for c in bucket)
        blocks = [subnet_of(c.host) for c in bucket if subnet_of(c.host) is not None]
        assert all(blocks.count(b) <= table.per_subnet for b in blocks)


@settings(max_examples=400, deadline=None)
@given(own=st.integers(0, 2**7), ops=ops, target=st.integers(0, 2**8))
def test_the_table_keeps_its_rules_through_any_history(own, ops, target):
    table = RoutingTable(own, k=K)
    waiting: set[int] = set()
    for op, arg in ops:
        before = {c.key for c in table.contacts()}
        if op == "seen":
            seen = table.seen(arg, 1.0)
            if seen.outcome == "waiting":
                waiting.add(arg.key)
                assert seen.ping is None or seen.ping.key in before
            if seen.outcome in ("added", "updated"):
                bucket = table.bucket(bucket_of(own, arg.key))
                assert bucket[-1].key == arg.key  # the newest end
        else:
            getattr(table, op)(*((arg, 1.0) if op == "ping_answered" else (arg,)))
        after = {c.key for c in table.contacts()}
        if op in ("failed", "ping_failed"):
            assert before - after <= {arg}  # only the one that did not answer goes
            assert after - before <= waiting  # and only a waiting spare comes in
        else:
            assert before <= after  # nobody live is evicted for a newcomer
        check_invariants(table)
    brute = sorted(table.contacts(), key=lambda c: c.key ^ target)[:K]
    assert table.closest(target) == brute


def test_a_thousand_identities_from_one_address_block_cannot_fill_a_bucket():
    rng = random.Random(7)
    own = rng.getrandbits(256)
    table = RoutingTable(own, k=20)
    honest = [
        Contact(own ^ (1 << 255) ^ rng.getrandbits(200), f"5.6.{i}.1", 7000) for i in range(5)
    ]
    for contact in honest:
        assert table.seen(contact, 0.0).outcome == "added"
    outcomes = [
        table.seen(Contact(own ^ (1 << 255) ^ rng.getrandbits(250), "66.6.6.6", 7000 + i), 1.0)
        for i in range(1000)
    ]
    bucket = table.bucket(255)
    assert sum(1 for c in bucket if c.host == "66.6.6.6") == 2
    assert {c.key for c in honest} <= {c.key for c in bucket}
    assert sum(1 for o in outcomes if o.outcome == "subnet") == 998


def test_a_full_bucket_asks_for_one_ping_and_keeps_the_live_contact():
    own = 0
    table = RoutingTable(own, k=2)
    a, b, c = (Contact((1 << 10) + i, "127.0.0.1", 7000 + i) for i in range(3))
    table.seen(a, 0.0)
    table.seen(b, 0.0)
    first = table.seen(c, 1.0)
    assert first.outcome == "waiting" and first.ping == a
    assert table.seen(Contact((1 << 10) + 3, "127.0.0.1", 1), 1.0).ping is None  # one check
    table.ping_answered(a.key, 2.0)
    assert [x.key for x in table.bucket(10)] == [b.key, a.key]
    table.ping_failed(b.key)
    assert c.key not in table and len(table.bucket(10)) == 2  # the newest spare took the place


def test_refresh_targets_fall_in_their_bucket_and_stale_buckets_are_the_near_ones():
    rng = random.Random(3)
    own = rng.getrandbits(256)
    for bucket in (0, 1, 77, 255):
        assert bucket_of(own, random_key_in(own, bucket, rng)) == bucket
    table = RoutingTable(own)
    assert table.stale(100.0, 10.0) == []
    table.seen(Contact(own ^ (1 << 250), "127.0.0.1", 1), 95.0)
    stale = table.stale(100.0, 10.0)
    assert 250 not in stale and stale == [b for b in range(249, 256) if b != 250]


def test_a_contact_that_fails_keeps_its_place_until_a_live_one_can_take_it():
    table = RoutingTable(0, k=2)
    a, b = Contact(1 << 10, "127.0.0.1", 1), Contact((1 << 10) + 1, "127.0.0.1", 2)
    table.seen(a, 0.0)
    for _ in range(10):  # a partition: it fails and fails, and nobody waits for its slot
        table.failed(a.key)
    assert a.key in table and table.fails(a.key) == 10
    table.seen(a, 1.0)  # the partition healed: it answers again
    assert table.fails(a.key) == 0
    table.seen(b, 1.0)
    table.seen(Contact((1 << 10) + 2, "127.0.0.1", 3), 2.0)  # the bucket is full: a spare waits
    table.failed(a.key)
    assert a.key not in table and (1 << 10) + 2 in table
