"""Capability tokens: µs per mint, attenuate, decode+verify (p50/p99), against one plain keyed
BLAKE3 MAC and one HMAC-SHA256 of the same header measured in the same run. "cold" is a token
never seen (decode + chain + caveats); "warm" is one a client reuses, as a ``caps.Verifier``
in a verifying process sees it (cached chain; revocation and caveats checked every time).

    python bench/caps.py [--n 20000]

Target (issue: identity and capability tokens): verify p99 <= 50 µs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipc import caps

NODE = "node:" + "ab" * 32
KEY = bytes(range(32))


def timed(n: int, fn: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    n = ap.parse_args().n
    base = [caps.Ops(["put", "name"]), caps.Expires(2_000_000_000), caps.Audience(NODE)]
    token = caps.mint(KEY, "k1", base)
    narrowed = caps.attenuate(token, caps.Prefix("alice/"))
    text = narrowed.encode()
    need = caps.Need(op="name", audience=NODE, now=time.time(), name="alice/x", size=10)
    keys = {"k1": KEY}
    verifier = caps.Verifier(keys)
    header = token.header_bytes()
    rows = [
        ("baseline: one keyed BLAKE3", timed(n, lambda: caps.keyed_blake3(KEY, header))),
        (
            "baseline: one HMAC-SHA256",
            timed(n, lambda: hmac.new(KEY, header, hashlib.sha256).digest()),
        ),
        ("mint (3 caveats)", timed(n, lambda: caps.mint(KEY, "k1", base))),
        ("attenuate (+1 caveat)", timed(n, lambda: caps.attenuate(token, caps.Prefix("alice/")))),
        ("verify cold (4 caveats)", timed(n, lambda: caps.verify(text, keys, need))),
        ("verify warm (Verifier)", timed(n, lambda: verifier.verify(text, need))),
    ]
    print(f"# {n} runs each; token of 4 caveats is {len(text)} characters")
    print(f"{'operation':32} {'p50 µs':>8} {'p99 µs':>8} {'p50 vs BLAKE3':>14}")
    mac_p50 = rows[0][1][0]
    for name, (p50, p99) in rows:
        print(f"{name:32} {p50:8.1f} {p99:8.1f} {p50 / mac_p50:13.1f}x")
    for name, (_p50, p99) in rows[-2:]:
        verdict = "met" if p99 <= 50 else "MISSED"
        print(f"# {name}: p99 {p99:.1f} µs (target <= 50 µs): {verdict}")


if __name__ == "__main__":
    main()
