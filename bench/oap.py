"""Micro-benchmark of the OAP/1 codec against a bare struct.pack + slicing baseline.

    python bench/oap.py [--seconds 0.5]

Prints frames/s for encode, decode and FrameDecoder.feed (16 frames per call) at 64 B and
64 KiB payloads, and the ratio codec/baseline measured in the same run (the ratio is the number
to watch, not the rate). The baseline is the least any codec must do: struct + slicing.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipc.oap import REQ, Frame, FrameDecoder, decode, encode

_HDR = struct.Struct(">IBHHHQQHQ")


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (batches of 100 calls)."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def _baseline_encode(corr: int, payload: bytes) -> bytes:
    return _HDR.pack(33 + len(payload), 1, REQ, 0, 0, 0, 0, 0, corr) + payload


def _baseline_decode(data: bytes) -> tuple[object, ...]:
    fields = _HDR.unpack_from(data, 0)
    return (*fields, data[37 : 37 + fields[7]], data[37 + fields[7] :])


def _baseline_split(stream: bytes) -> list[tuple[object, ...]]:
    out, pos = [], 0
    while pos < len(stream):
        fields = _HDR.unpack_from(stream, pos)
        end = pos + 4 + fields[0]
        out.append((*fields, stream[pos + 37 : pos + 37 + fields[7]], stream[pos + 37 : end]))
        pos = end
    return out


def bench(size: int, seconds: float) -> dict[str, float]:
    frame = Frame(flags=REQ, corr_id=12345, payload=bytes(size))
    wire = encode(frame)
    assert wire == _baseline_encode(12345, frame.payload)
    stream = wire * 16
    decoder = FrameDecoder()
    out = {
        "encode": _rate(lambda: encode(frame), seconds),
        "encode_baseline": _rate(lambda: _baseline_encode(12345, frame.payload), seconds),
        "decode": _rate(lambda: decode(wire), seconds),
        "decode_baseline": _rate(lambda: _baseline_decode(wire), seconds),
        "feed16": 16 * _rate(lambda: decoder.feed(stream), seconds),
        "feed16_baseline": 16 * _rate(lambda: _baseline_split(stream), seconds),
    }
    out["encode_ratio"] = out["encode"] / out["encode_baseline"]
    out["decode_ratio"] = out["decode"] / out["decode_baseline"]
    out["feed16_ratio"] = out["feed16"] / out["feed16_baseline"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OAP/1 codec micro-benchmark.")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args(argv)
    for size in (64, 65536):
        result = bench(size, args.seconds)
        print(
            json.dumps({"payload": size, **{k: round(v, 3) for k, v in result.items()}}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
