"""The packed provider table against a dict of records: the same answers through any history
of puts (new, replacing, with new addresses), removals, expiries and rebuilds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.lib.kad.packed import MIN_SLOTS, PackedProviders
from services.lib.kad.records import ProviderRecord

# keys that share their first 8 bytes (one probe run) and ones that do not
KEYS = [(p << 192) | low for p in (1, 2, 2**63) for low in (0, 5, 7)]
PROVIDERS = [11, 12, 13]
records = st.builds(
    lambda key, prov, addr, expires, sig: ProviderRecord(
        key, prov, (f"10.0.0.{addr}:1",), expires, bytes([prov]) * 32, bytes([sig]) * 64
    ),
    st.sampled_from(KEYS),
    st.sampled_from(PROVIDERS),
    st.integers(1, 2),
    st.integers(100, 110),
    st.integers(0, 255),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), records),
        st.tuples(st.just("remove"), st.tuples(st.sampled_from(KEYS), st.sampled_from(PROVIDERS))),
        st.tuples(st.just("expire"), st.integers(100, 112)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops)
def test_the_packed_table_answers_as_a_dict_of_records(ops):
    table = PackedProviders()
    model: dict[tuple[int, int], ProviderRecord] = {}
    for op, arg in ops:
        if op == "put":
            new = table.put(arg)
            assert new == ((arg.key, arg.provider) not in model)
            model[(arg.key, arg.provider)] = arg
        elif op == "remove":
            assert table.remove(*arg) == (arg in model)
            model.pop(arg, None)
        else:
            gone = table.expire(arg)
            expired = [k for k, r in model.items() if r.expires <= arg]
            assert gone == len(expired)
            for k in expired:
                del model[k]
        assert len(table) == len(model)
        for key in KEYS:
            want = {r for (k, _), r in model.items() if k == key}
            assert set(table.records(key)) == want
        for prov in PROVIDERS:
            assert table.count_of(prov) == sum(1 for (_, p) in model if p == prov)


def test_a_hundred_thousand_records_grow_the_table_and_stay_findable():
    table = PackedProviders()
    pub = bytes(32)
    for i in range(5 * MIN_SLOTS):
        key = (i * 0x9E3779B97F4A7C15) % (1 << 256)
        table.put(ProviderRecord(key, i % 7, ("h:1",), 10**9, pub, bytes(64)))
    assert len(table) == 5 * MIN_SLOTS
    for i in range(0, 5 * MIN_SLOTS, 97):
        key = (i * 0x9E3779B97F4A7C15) % (1 << 256)
        (record,) = table.records(key)
        assert record.provider == i % 7
    assert table.expire(10**9) == 5 * MIN_SLOTS and len(table) == 0
