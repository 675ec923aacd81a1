"""Write ``specs/cap_vectors.json``: capability tokens pinned, with the verdict for a request.

    python specs/tools/make_cap_vectors.py

The tokens are minted with ``ipc.caps`` from a fixed root key and fixed token ids, so the file
pins the wire format byte for byte; ``tests/unit/test_caps.py`` checks every verdict and that the
chain is the macaroon construction (HMAC-SHA256 against pymacaroons).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ipc import caps

ROOT = bytes(range(32))
KID = "k2026-12"
NODE = "node:" + "5a" * 32
NOW = 1_800_000_000
BASE = [caps.Ops(["put", "name"]), caps.Expires(NOW + 3600), caps.Audience(NODE)]


def token(n: int, caveats: list[caps.Caveat] = BASE) -> str:
    return caps.mint(ROOT, KID, caveats, token_id=bytes([n]) * 16).encode()


def need(**kw: object) -> dict[str, object]:
    return {"op": "name", "name": "alice/site", "size": 100, "audience": NODE, "now": NOW, **kw}


def case(why: str, text: str, request: dict, verdict: dict, **extra: object) -> dict:
    return {"why": why, "token": text, "need": request, "verdict": verdict, **extra}


OK = {"ok": True}
INVALID = {"reason": "cap_invalid"}


def denied(caveat: str) -> dict[str, str]:
    return {"reason": "cap_denied", "caveat": caveat}


def main() -> None:
    valid = token(1)
    narrowed = caps.attenuate(
        caps.Token.decode(valid), caps.Prefix("alice/"), caps.MaxSize(1000)
    ).encode()
    tampered = valid[:20] + ("A" if valid[20] != "A" else "B") + valid[21:]
    oversized = token(9, [*BASE, caps.Prefix("x" * caps.MAX_TOKEN_CHARS)])
    cases = [
        case("valid", valid, need(), OK),
        case("valid, narrowed and inside it", narrowed, need(), OK),
        case("expired", valid, need(now=NOW + 3600), INVALID),
        case("wrong op", valid, need(op="mail"), denied("ops")),
        case("outside prefix", narrowed, need(name="bob/x"), denied("prefix")),
        case("over max size", narrowed, need(size=1001), denied("max_size")),
        case("wrong audience", valid, need(audience="node:" + "00" * 32), denied("aud")),
        case("tampered byte", tampered, need(), INVALID),
        case("unknown kid", token(2), need(), INVALID, keys={"other": ROOT.hex()}),
        case("revoked", token(3), need(), INVALID, revoked=[(bytes([3]) * 16).hex()]),
        case("truncated", valid[:-3], need(), INVALID),
        case("oversized", oversized, need(), INVALID),
        # validity before permission: an expired token is 401 even when an earlier caveat fails
        case("expired and the wrong op", valid, need(op="mail", now=NOW + 3600), INVALID),
    ]
    doc = {
        "about": "Capability tokens (specs/caps.md). Verify each token with keys (default "
        "{kid: root_key}) and revoked ids (default none) against need; expect verdict. "
        "Regenerate: specs/tools/make_cap_vectors.py",
        "root_key": ROOT.hex(),
        "kid": KID,
        "cases": cases,
    }
    path = Path(__file__).resolve().parents[1] / "cap_vectors.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
