"""Fuzz entry for the OAP/1 decoder.

``fuzz_one(data)`` checks the decoder's invariants on one input; ``main`` drives it for a number
of seconds with inputs mutated from the vector corpus and from random frames (plain ``random``,
seeded, so a failure is reproducible with ``--seed``). The same ``fuzz_one`` plugs into atheris
or any coverage-guided fuzzer as the test-one-input function.

    python tests/support/fuzz_oap.py --seconds 30 [--seed N]

Invariants: only ``OapError`` ever escapes; the stream decoder never holds more than
``max_frame`` + 37 bytes; it stays poisoned after an error; whole-frame and stream decoding
agree; a decoded non-COMP frame re-encodes to exactly its input.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ipc.oap import COMP, HEADER_LEN, Frame, FrameDecoder, OapError, decode, encode

MAX_FRAMES = (64, 4096, 1_048_576)


def fuzz_one(data: bytes) -> None:
    """Check every invariant on ``data``; the first byte picks max_frame and split points."""
    if not data:
        return
    control, blob = data[0], data[1:]
    max_frame = MAX_FRAMES[control % len(MAX_FRAMES)]
    step = 1 + (control >> 2)  # feed in pieces of this size (1..64)

    try:
        whole: Frame | OapError = decode(blob, max_frame=max_frame)
    except OapError as exc:
        whole = exc
    if isinstance(whole, Frame) and not whole.flags & COMP:
        assert encode(whole, max_frame=max_frame) == blob, "decode is not canonical"

    decoder = FrameDecoder(max_frame)
    frames: list[Frame] = []
    failed: OapError | None = None
    for at in range(0, len(blob), step):
        try:
            frames += decoder.feed(blob[at : at + step])
        except OapError as exc:
            failed = exc
            break
        assert decoder.buffered <= max_frame + HEADER_LEN, "decoder holds too much"
    if failed is not None:
        try:
            decoder.feed(b"")
        except OapError as again:
            assert again is failed, "poisoned decoder changed its error"
        else:
            raise AssertionError("poisoned decoder accepted input")
    if isinstance(whole, Frame):
        assert failed is None and frames == [whole] and decoder.buffered == 0
    elif whole.reason == "truncated":
        assert failed is None and not frames and decoder.buffered == len(blob)
    elif whole.reason != "trailing_bytes":
        assert failed is not None and failed.reason == whole.reason, (whole, failed)


def _corpus() -> list[bytes]:
    path = Path(__file__).resolve().parents[2] / "specs" / "oap_vectors.json"
    seeds = [bytes.fromhex(v["hex"]) for v in json.loads(path.read_text())["frames"] if "hex" in v]
    return [s for s in seeds if len(s) <= 8192]


def _random_frame(rng: random.Random) -> bytes:
    payload = rng.randbytes(rng.randrange(0, 300))
    if rng.random() < 0.3:
        payload = b"abc " * rng.randrange(0, 60)
    frame = Frame(
        flags=rng.randrange(0, 0x100),
        code=rng.randrange(0, 0x10000),
        app_proto_id=rng.randrange(0, 4),
        tenant_id=rng.getrandbits(128) if rng.random() < 0.2 else 0,
        corr_id=rng.getrandbits(64),
        cap=rng.randbytes(rng.randrange(0, 20)),
        payload=payload,
    )
    try:
        return encode(frame, max_frame=4096)
    except OapError:
        return encode(Frame(flags=frame.flags & ~COMP, payload=payload[:100]))


def _mutate(rng: random.Random, blob: bytes) -> bytes:
    raw = bytearray(blob)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(5)
        if op == 0 and raw:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif op == 1 and raw:
            del raw[rng.randrange(len(raw)) :]
        elif op == 2:
            raw[rng.randrange(len(raw) + 1) : 0] = rng.randbytes(rng.randrange(1, 16))
        elif op == 3 and len(raw) >= 4:  # aim at the header: len, ver, flags, cap_len
            at = rng.choice((0, 3, 4, 5, 6, 27, 28))
            if at < len(raw):
                raw[at] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        else:
            raw += rng.choice((blob, _random_frame(rng)))
    return bytes(raw)


def run(seconds: float, seed: int) -> int:
    """Fuzz for ``seconds``; return the number of inputs tried. Raises on a broken invariant."""
    rng = random.Random(seed)
    corpus = _corpus()
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        for _ in range(100):
            pick = rng.random()
            if pick < 0.1:
                blob = rng.randbytes(rng.randrange(0, 200))
            elif pick < 0.4:
                blob = _random_frame(rng)
            else:
                blob = _mutate(
                    rng, rng.choice(corpus) if rng.random() < 0.6 else _random_frame(rng)
                )
            data = bytes([rng.randrange(256)]) + blob
            try:
                fuzz_one(data)
            except AssertionError:
                print(f"invariant broken (seed {seed}); input hex: {data.hex()}", file=sys.stderr)
                raise
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz the OAP/1 decoder.")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: random)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    try:
        count = run(args.seconds, seed)
    except AssertionError as exc:
        print(f"fuzz_oap: FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"event": "fuzz_done", "inputs": count, "seed": seed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
