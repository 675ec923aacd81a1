"""KernelEvent codec: driven by specs/kernel_events.json, plus round-trip properties."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipc import events as E

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "specs" / "kernel_events.json").read_text("utf-8")
)


def _ids(key: str) -> list[str]:
    return [v["name"] for v in VECTORS[key]]


def test_exactly_four_variants_and_their_topics() -> None:
    assert {cls.__name__ for cls in E.EVENT_TYPES} == set(VECTORS["topics"])
    assert {cls.__name__: t for cls, t in E.TOPICS.items()} == VECTORS["topics"]
    assert set(E.EVENT_TYPES) == set(E.KernelEvent.__args__)


def test_every_variant_has_a_good_vector() -> None:
    assert {v["json"]["type"] for v in VECTORS["good"]} == set(VECTORS["topics"])


@pytest.mark.parametrize("vec", VECTORS["good"], ids=_ids("good"))
def test_good_vector(vec: dict) -> None:
    data = bytes.fromhex(vec["msgpack_hex"])
    ev = E.decode(data)
    assert E.encode(ev) == data  # the exact bus bytes are pinned
    assert E.to_wire(ev) == vec["json"]
    assert next(iter(E.to_wire(ev))) == "type"
    assert E.from_wire(vec["json"]) == ev
    assert json.loads(E.to_json(ev)) == vec["json"]
    assert "\n" not in E.to_json(ev)
    assert E.topic_of(ev) == vec["topic"]


@pytest.mark.parametrize("vec", VECTORS["bad_wire"], ids=_ids("bad_wire"))
def test_bad_wire_vector(vec: dict) -> None:
    with pytest.raises(E.EventDecodeError) as info:
        E.from_wire(vec["wire"])
    assert info.value.reason == vec["reason"]
    assert vec["message_contains"] in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("vec", VECTORS["bad_bytes"], ids=_ids("bad_bytes"))
def test_bad_bytes_vector(vec: dict) -> None:
    with pytest.raises(E.EventDecodeError) as info:
        E.decode(bytes.fromhex(vec["msgpack_hex"]))
    assert info.value.reason == vec["reason"]
    assert info.value.reason in VECTORS["reasons"]


def _packable(obj: object) -> bool:
    try:
        msgpack.packb(obj)
    except (OverflowError, TypeError):
        return False
    return True


_PACKABLE_BAD = [v for v in VECTORS["bad_wire"] if _packable(v["wire"])]


@pytest.mark.parametrize("vec", _PACKABLE_BAD, ids=[v["name"] for v in _PACKABLE_BAD])
def test_bad_wire_vector_is_also_rejected_as_bytes(vec: dict) -> None:
    data = msgpack.packb(vec["wire"], use_bin_type=True)
    with pytest.raises(E.EventDecodeError) as info:
        E.decode(data)
    assert info.value.reason == vec["reason"]


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(E.EventDecodeError, ValueError)


def test_constructors_reject_wrong_types() -> None:
    with pytest.raises(TypeError):
        E.Health("svc-echo", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        E.ConfigUpdated(True)
    with pytest.raises(ValueError):
        E.ConfigUpdated(-1)


def test_non_event_has_no_topic_or_wire_form() -> None:
    with pytest.raises(TypeError):
        E.topic_of("Shutdown")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        E.to_wire(object())  # type: ignore[arg-type]


_names = st.text(max_size=40)
events = st.one_of(
    st.builds(E.Health, _names, st.booleans()),
    st.builds(E.ConfigUpdated, st.integers(0, 2**64 - 1)),
    st.builds(E.ServiceCrashed, _names, st.text(max_size=200)),
    st.just(E.Shutdown()),
)


@given(events)
def test_round_trip(ev: E.KernelEvent) -> None:
    assert E.decode(E.encode(ev)) == ev
    assert E.from_wire(json.loads(E.to_json(ev))) == ev


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_typed_error(data: bytes) -> None:
    try:
        ev = E.decode(data)
    except E.EventDecodeError as exc:
        assert exc.reason in VECTORS["reasons"]
    else:
        assert E.decode(E.encode(ev)) == ev


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["type", "service", "ok", "version", "reason", "x"]),
        _json_values | st.sampled_from(list(VECTORS["topics"])),
    )
)
def test_arbitrary_maps_decode_or_raise_typed_error(obj: dict) -> None:
    try:
        ev = E.from_wire(obj)
    except E.EventDecodeError as exc:
        assert exc.reason in VECTORS["reasons"]
    else:
        assert E.to_wire(ev) == obj
