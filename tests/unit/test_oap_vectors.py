"""OAP/1 codec against the vectors in specs/ (every vector, whole and split) and the canon."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from ipc.oap import (
    COMP,
    MAX_FRAME,
    REASONS,
    REQ,
    Frame,
    FrameDecoder,
    OapError,
    decode,
    encode,
    raise_for_status,
)
from tests.support.oap_vector_bytes import spec_bytes, vector_bytes

SPECS = Path(__file__).resolve().parents[2] / "specs"
DOC = json.loads((SPECS / "oap_vectors.json").read_text())
VECTORS: list[dict[str, Any]] = DOC["frames"]
CANON = json.loads((SPECS / "oap_reasons.json").read_text())["reasons"]
KNOWN_KEYS = {"name", "hex", "segments", "frame", "error", "stream", "splits", "encode"}
KNOWN_KEYS |= {"raises", "max_frame", "note"}
# Every failure the decoder itself can produce; each must be pinned by at least one vector.
DECODER_REASONS = {
    "bad_version",
    "reserved_flags",
    "bad_length",
    "cap_len_overflow",
    "truncated",
    "trailing_bytes",
    "bad_compression",
    "frame_too_large",
    "inflate_too_large",
}


def to_frame(fields: dict[str, Any]) -> Frame:
    return Frame(
        ver=fields["ver"],
        flags=fields["flags"],
        code=fields["code"],
        app_proto_id=fields["app_proto_id"],
        tenant_id=fields["tenant_id"],
        corr_id=fields["corr_id"],
        cap=spec_bytes(fields["cap"]),
        payload=spec_bytes(fields["payload"]),
    )


def split_sets(vec: dict[str, Any], data: bytes) -> list[list[int]]:
    sets: list[list[int]] = [[], *vec.get("splits", [])]
    if len(data) <= 4096:
        sets.append(list(range(1, len(data))))  # one byte at a time
    return sets


def chunks(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def assert_error(exc: OapError, want: dict[str, Any]) -> None:
    assert (exc.code, exc.reason) == (want["code"], want["reason"]), str(exc)


IDS = [v["name"] for v in VECTORS]


def test_every_vector_is_exercised() -> None:
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names)) and len(names) >= 30
    assert names == IDS  # the parametrized tests below run exactly these
    for vec in VECTORS:
        assert set(vec) <= KNOWN_KEYS, f"{vec['name']}: unknown keys {set(vec) - KNOWN_KEYS}"
        assert ("frame" in vec) != ("error" in vec), vec["name"]
        assert "stream" in vec, vec["name"]
    pinned = {v["error"]["reason"] for v in VECTORS if "error" in v}
    pinned |= {v["stream"]["error"]["reason"] for v in VECTORS if "error" in v["stream"]}
    assert pinned >= DECODER_REASONS
    for vec in VECTORS:
        for want in (vec.get("error"), vec["stream"].get("error"), vec.get("raises")):
            if want is not None:
                assert REASONS[want["reason"]] == want["code"], vec["name"]


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_decode_whole(vec: dict[str, Any]) -> None:
    data = vector_bytes(vec)
    max_frame = vec.get("max_frame", MAX_FRAME)
    if "error" in vec:
        with pytest.raises(OapError) as info:
            decode(data, max_frame=max_frame)
        assert_error(info.value, vec["error"])
        return
    want = to_frame(vec["frame"])
    got = decode(data, max_frame=max_frame)
    assert got == want
    assert decode(memoryview(data), max_frame=max_frame) == want
    assert decode(bytearray(data), max_frame=max_frame) == want
    encoded = encode(want, max_frame=max_frame)
    if vec.get("encode"):
        assert encoded == data
    assert decode(encoded, max_frame=max_frame) == want


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_decode_stream(vec: dict[str, Any]) -> None:
    data = vector_bytes(vec)
    max_frame = vec.get("max_frame", MAX_FRAME)
    stream = vec["stream"]
    for points in split_sets(vec, data):
        decoder = FrameDecoder(max_frame)
        got: list[Frame] = []
        raised: OapError | None = None
        for piece in chunks(data, points):
            try:
                got += decoder.feed(piece)
            except OapError as exc:
                raised = exc
                break
            assert decoder.buffered <= max_frame
        if "error" in stream:
            assert raised is not None, f"split {points[:8]}: no error"
            assert_error(raised, stream["error"])
            with pytest.raises(OapError) as again:  # poisoned: the same error forever
                decoder.feed(b"")
            assert again.value is raised
            assert decoder.buffered == 0 and decoder.error is raised
        else:
            assert raised is None, f"split {points[:8]}: {raised}"
            assert got == [to_frame(f) for f in stream["frames"]]
            assert decoder.buffered == stream["buffered"]


RAISING = [v for v in VECTORS if "raises" in v]


@pytest.mark.parametrize("vec", RAISING, ids=[v["name"] for v in RAISING])
def test_raise_for_status(vec: dict[str, Any]) -> None:
    frame = decode(vector_bytes(vec))
    with pytest.raises(OapError) as info:
        raise_for_status(frame)
    want = vec["raises"]
    assert_error(info.value, want)
    assert info.value.retry_after == want["retry_after"]


def test_reason_canon_matches_spec_json_in_order() -> None:
    assert [(r["reason"], r["code"]) for r in CANON] == list(REASONS.items())


def test_spec_document_names_every_reason() -> None:
    text = (SPECS / "oap-1.md").read_text()
    missing = [r for r in REASONS if f"`{r}`" not in text]
    assert not missing


# ---- codec behaviour the vectors cannot express (local-side errors, API edges)


def test_frame_rejects_out_of_range_fields() -> None:
    for kwargs, reason in (
        ({"flags": 0x0100}, "reserved_flags"),
        ({"flags": 0x1_0000}, "field_range"),
        ({"flags": -1}, "field_range"),
        ({"flags": True}, "field_range"),
        ({"flags": REQ, "code": 70000}, "field_range"),
        ({"flags": REQ, "tenant_id": 1 << 128}, "field_range"),
        ({"flags": REQ, "corr_id": 1 << 64}, "field_range"),
        ({"flags": REQ, "ver": 256}, "field_range"),
        ({"flags": REQ, "cap": b"x" * 65536}, "field_range"),
        ({"flags": REQ, "payload": bytearray(b"x")}, "field_range"),
    ):
        with pytest.raises(OapError) as info:
            Frame(**kwargs)
        assert info.value.reason == reason, kwargs


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(OapError, match="bad_version"):
        encode(Frame(ver=2, flags=REQ))
    with pytest.raises(OapError, match="frame_too_large"):
        encode(Frame(flags=REQ, payload=b"x" * 28), max_frame=64)
    encode(Frame(flags=REQ, payload=b"x" * 27), max_frame=64)
    with pytest.raises(OapError, match="inflate_too_large"):  # compresses far more than 8x
        encode(Frame(flags=REQ | COMP, payload=bytes(10_000)))
    with pytest.raises(OapError, match="inflate_too_large"):
        encode(Frame(flags=REQ | COMP, payload=bytes(range(256)) * 2), max_frame=100)


def test_decoder_refuses_a_huge_frame_from_its_len_field_alone() -> None:
    decoder = FrameDecoder()
    with pytest.raises(OapError) as info:
        decoder.feed((0xFFFF_FFFF).to_bytes(4, "big"))
    assert info.value.code == 413 and decoder.buffered == 0


def test_decoder_does_not_keep_a_reference_to_fed_bytes() -> None:
    frame = Frame(flags=REQ, corr_id=7, payload=b"hello")
    data = bytearray(encode(frame))
    decoder = FrameDecoder()
    assert decoder.feed(data[:20]) == []
    tail = bytearray(data[20:])
    got = decoder.feed(tail)
    tail[:] = b"\x00" * len(tail)  # the caller reuses its buffer
    data.clear()  # resizing proves no export is held
    assert got == [frame]


def test_decoder_rejects_unusable_max_frame() -> None:
    for bad in (36, 0, 2**32 + 5, 4.0, True):
        with pytest.raises(ValueError):
            FrameDecoder(bad)  # type: ignore[arg-type]


def test_oap_error_canon_and_pickling() -> None:
    err = OapError("not_ready", "warming up", retry_after=3)
    assert (err.code, err.reason, err.retry_after) == (503, "not_ready", 3)
    assert "503 not_ready: warming up" in str(err)
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, back.reason, back.detail, back.retry_after) == (
        503,
        "not_ready",
        "warming up",
        3,
    )
    with pytest.raises(ValueError):
        OapError("no_such_reason")
    assert OapError("from_the_future", code=418).code == 418
