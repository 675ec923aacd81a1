"""The lookup state machine on small simulated networks: it finds the true k nearest, stays
within alpha (plus bounded hedges), and a hostile answer cannot grow it."""

from __future__ import annotations

import heapq
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from services.lib.kad import Contact, Lookup, RoutingTable
from services.lib.kad.lookup import SHORTLIST

K = 8


def network(size: int, seed: int) -> dict[int, RoutingTable]:
    rng = random.Random(seed)
    keys = [rng.getrandbits(64) for _ in range(size)]
    tables = {key: RoutingTable(key, k=K) for key in keys}
    for table in tables.values():  # as Kademlia fills them: every bucket up to k, in any order
        for other in rng.sample(keys, size):
            table.seen(Contact(other, "127.0.0.1", 1), 0.0)
    return tables


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(30, 120), alpha=st.integers(1, 4))
def test_a_lookup_on_a_lossless_network_finds_the_true_k_nearest(seed, size, alpha):
    tables = network(size, seed)
    rng = random.Random(seed)
    source = rng.choice(list(tables))
    target = rng.getrandbits(64)
    lk = Lookup(target, tables[source].closest(target), own=source, k=K, alpha=alpha)
    now = 0.0
    while not lk.done:
        batch = lk.next_queries(now)
        assert len(batch) <= alpha
        assert batch, "not done, yet nothing to ask"
        for contact in batch:
            lk.answered(contact.key, tables[contact.key].closest(target))
        now += 0.01
    truth = heapq.nsmallest(K, (k for k in tables if k != source), key=lambda k: k ^ target)
    assert [c.key for c in lk.result()] == truth
    assert lk.hops >= 1 and lk.sent >= len(truth)


def test_slow_nodes_are_hedged_but_in_flight_stays_bounded():
    seeds = [Contact(i, "127.0.0.1", 1) for i in range(1, 40)]
    lk = Lookup(0, seeds, own=999, k=20, alpha=3, hedge_delay=0.25)
    assert len(lk.next_queries(0.0)) == 3
    assert lk.next_queries(0.1) == []  # all three still young
    assert len(lk.next_queries(0.3)) == 3  # they are slow: three hedges
    assert lk.next_queries(10.0) == []  # never more than 2 * alpha in flight
    lk.failed(1)
    assert len(lk.next_queries(10.0)) == 1


def test_an_answer_with_ten_thousand_contacts_adds_at_most_k():
    lk = Lookup(0, [Contact(1 << 60, "127.0.0.1", 1)], own=999, k=20)
    (seed,) = lk.next_queries(0.0)
    flood = [Contact(i, "127.0.0.1", 1) for i in range(2, 10_002)]
    lk.answered(seed.key, flood)
    assert len(lk._order) <= 1 + 20 <= SHORTLIST * 20
    assert len(lk.next_queries(0.0)) == 3


def test_a_value_lookup_stops_at_the_first_value_and_reports_its_hop():
    seeds = [Contact(i, "127.0.0.1", 1) for i in (8, 9, 10)]
    lk = Lookup(0, seeds, own=999, k=20, want=1)
    first = lk.next_queries(0.0)
    lk.answered(first[0].key, [Contact(2, "127.0.0.1", 1)])
    (nearer,) = [c for c in lk.next_queries(0.1) if c.key == 2]
    lk.answered(nearer.key, [], values=1)
    assert lk.done and lk.hops == 2 and lk.next_queries(0.2) == []


def test_our_own_key_is_never_asked():
    lk = Lookup(5, [Contact(5, "127.0.0.1", 1), Contact(6, "127.0.0.1", 1)], own=5)
    assert [c.key for c in lk.next_queries(0.0)] == [6]
