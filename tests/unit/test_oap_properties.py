"""Properties of the OAP/1 codec (hypothesis), with a small max_frame so they run fast."""

from __future__ import annotations

import itertools

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ipc.oap import COMP, HEADER_LEN, Frame, FrameDecoder, OapError, decode, encode

MAX = 4096

frames = st.builds(
    Frame,
    flags=st.integers(0, 0xFF),
    code=st.integers(0, 0xFFFF),
    app_proto_id=st.integers(0, 0xFFFF),
    tenant_id=st.integers(0, 2**128 - 1),
    corr_id=st.integers(0, 2**64 - 1),
    cap=st.binary(max_size=64),
    payload=st.one_of(
        st.binary(max_size=MAX),
        st.text(alphabet="abc ", max_size=600).map(str.encode),  # compressible, for COMP
    ),
)


def encodable(frame: Frame) -> bytes | None:
    try:
        return encode(frame, max_frame=MAX)
    except OapError as exc:
        assert exc.code == 413 and exc.reason in {"frame_too_large", "inflate_too_large"}
        if exc.reason == "frame_too_large" and not frame.flags & COMP:
            assert HEADER_LEN + len(frame.cap) + len(frame.payload) > MAX
        return None


def feed_split(data: bytes, points: list[int], max_frame: int = MAX) -> list[Frame]:
    decoder = FrameDecoder(max_frame)
    out: list[Frame] = []
    edges = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    for a, b in itertools.pairwise(edges):
        out += decoder.feed(data[a:b])
        assert decoder.buffered <= max_frame
    assert decoder.buffered == 0
    return out


@settings(max_examples=300)
@given(frames)
def test_encode_decode_identity(frame: Frame) -> None:
    data = encodable(frame)
    assume(data is not None)
    assert len(data) <= MAX
    assert decode(data, max_frame=MAX) == frame
    if not frame.flags & COMP:
        assert len(data) == HEADER_LEN + len(frame.cap) + len(frame.payload)


@settings(max_examples=200)
@given(st.lists(frames, max_size=6), st.lists(st.integers(0, 10 * MAX), max_size=12))
def test_any_split_of_concatenated_frames_yields_the_frames(
    batch: list[Frame], points: list[int]
) -> None:
    encoded = [(f, encodable(f)) for f in batch]
    good = [(f, d) for f, d in encoded if d is not None]
    data = b"".join(d for _, d in good)
    assert feed_split(data, points) == [f for f, _ in good]


@settings(max_examples=500)
@given(st.binary(max_size=2 * MAX), st.lists(st.integers(0, 2 * MAX), max_size=8))
def test_arbitrary_bytes_only_raise_oap_error_and_stay_bounded(
    data: bytes, points: list[int]
) -> None:
    decoder = FrameDecoder(MAX)
    edges = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    err: OapError | None = None
    for a, b in itertools.pairwise(edges):
        try:
            decoder.feed(data[a:b])
        except OapError as exc:
            err = exc
            break
        assert decoder.buffered <= MAX + HEADER_LEN
    if err is not None:
        try:
            decoder.feed(b"\x00")
        except OapError as again:
            assert again is err
        else:
            raise AssertionError("a failed decoder accepted more bytes")


@settings(max_examples=300)
@given(frames, st.data())
def test_mutated_frames_decode_canonically_or_fail_cleanly(
    frame: Frame, data: st.DataObject
) -> None:
    wire = encodable(frame)
    assume(wire is not None)
    raw = bytearray(wire)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    raw = raw[:cut] if data.draw(st.booleans()) else raw
    blob = bytes(raw)
    try:
        got = decode(blob, max_frame=MAX)
    except OapError as exc:
        whole = exc
        got = None
    else:
        whole = None
        if not got.flags & COMP:  # one byte string per frame: re-encoding gives the input back
            assert encode(got, max_frame=MAX) == blob
    # The stream decoder agrees with the whole-frame decoder.
    decoder = FrameDecoder(MAX)
    try:
        streamed = decoder.feed(blob)
    except OapError as exc:
        assert whole is not None
        if whole.reason != "trailing_bytes":  # else the stream may fail on the bytes after
            assert (exc.code, exc.reason) == (whole.code, whole.reason)
    else:
        if got is not None:
            assert streamed == [got]
        else:
            assert whole is not None and whole.reason in {"truncated", "trailing_bytes"}
