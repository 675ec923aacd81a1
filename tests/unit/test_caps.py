"""ipc.caps: capability tokens against the vectors in specs/, the macaroon construction checked
against pymacaroons, and the properties DESIGN §5 promises."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pymacaroons
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc import caps

SPECS = Path(__file__).resolve().parents[2] / "specs"
VECTORS = json.loads((SPECS / "cap_vectors.json").read_text("utf-8"))
ROOT = bytes.fromhex(VECTORS["root_key"])
KID = VECTORS["kid"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["why"])
def test_vectors(case: dict[str, Any]) -> None:
    keys = {k: bytes.fromhex(v) for k, v in case.get("keys", {KID: ROOT.hex()}).items()}
    revoked = {bytes.fromhex(r) for r in case.get("revoked", [])}
    need = caps.Need(**case["need"])
    verdict = case["verdict"]
    if verdict.get("ok"):
        token = caps.verify(case["token"], keys, need, revoked=revoked)
        assert token.encode() == case["token"]
        return
    with pytest.raises(caps.CapError) as info:
        caps.verify(case["token"], keys, need, revoked=revoked)
    assert info.value.reason == verdict["reason"]
    if "caveat" in verdict:
        assert isinstance(info.value, caps.CapDenied) and info.value.caveat == verdict["caveat"]
    assert "\n" not in str(info.value)


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def test_the_chain_is_the_macaroon_construction() -> None:
    """``caps.chain`` with HMAC-SHA256 as its MAC gives pymacaroons' signature (pymacaroons
    derives its root key with HMAC("macaroons-key-generator", key) and takes UTF-8 caveats), and
    a minted token's signature is that chain over its header and encoded caveats."""
    secret = b"a root secret"
    derived = _hmac_sha256(b"macaroons-key-generator", secret)
    header = caps.Token(kid=KID, id=b"\x01" * 16, caveats=(), signature=b"").header_bytes()
    predicates = [b"ops = put", b"prefix = alice/", "exp < 1900000000 \u00e9".encode()]
    reference = pymacaroons.Macaroon(location="", identifier=header, key=secret)
    for predicate in predicates:
        reference.add_first_party_caveat(predicate)
    assert caps.chain(_hmac_sha256, derived, header, predicates).hex() == reference.signature

    caveats = [caps.Ops(["put"]), caps.Prefix("alice/"), caps.Expires(1_900_000_000)]
    token = caps.mint(derived, KID, caveats, token_id=b"\x01" * 16, mac=_hmac_sha256)
    encoded = [caps.caveat_bytes(c) for c in caveats]
    assert token.signature == caps.chain(_hmac_sha256, derived, header, encoded)
    assert caps.verify(token, {KID: derived}, caps.Need("put", "n", 0.0), mac=_hmac_sha256)


def test_mint_attenuate_inspect_never_show_the_signature() -> None:
    token = caps.mint(ROOT, KID, [caps.Ops(["name"])])
    narrowed = caps.attenuate(token, caps.Prefix("alice/"))
    shown = narrowed.inspect()
    assert shown == {
        "id": token.id.hex(),
        "kid": KID,
        "caveats": [{"ops": ["name"]}, {"prefix": "alice/"}],
    }
    assert token.signature.hex() not in json.dumps(shown)
    assert caps.Token.decode(narrowed.encode()) == narrowed


# --- properties ----------------------------------------------------------------------------------

NODE = "node:" + "ab" * 32
caveat = st.one_of(
    st.builds(caps.Expires, st.integers(0, 2_000_000_000)),
    st.builds(caps.Ops, st.sets(st.sampled_from(caps.OPS), min_size=1)),
    st.builds(caps.Prefix, st.sampled_from(["", "a", "a/", "a/b", "b/"])),
    st.builds(caps.MaxSize, st.integers(0, 1000)),
    st.builds(caps.Audience, st.sampled_from([NODE, "node:" + "00" * 32])),
    st.builds(caps.Tenant, st.sampled_from([0, 1, 2**100])),
)
needs = st.builds(
    caps.Need,
    op=st.sampled_from(caps.OPS),
    audience=st.sampled_from([NODE, "node:" + "00" * 32]),
    now=st.integers(0, 2_000_000_000).map(float),
    name=st.one_of(st.none(), st.sampled_from(["a", "a/x", "a/b/c", "b/x", "c"])),
    size=st.one_of(st.none(), st.integers(0, 2000)),
    tenant=st.sampled_from([0, 1, 2**100]),
)
KEYS = {KID: ROOT}


def _allows(token: caps.Token, need: caps.Need) -> bool:
    try:
        caps.verify(token, KEYS, need)
    except caps.CapError:
        return False
    return True


@settings(max_examples=400)
@given(st.lists(caveat, max_size=4), st.lists(caveat, min_size=1, max_size=4), needs)
def test_appending_caveats_never_widens(base: list[Any], more: list[Any], need: caps.Need) -> None:
    token = caps.mint(ROOT, KID, base, token_id=b"\x02" * 16)
    narrowed = caps.attenuate(caps.Token.decode(token.encode()), *more)
    if _allows(narrowed, need):
        assert _allows(token, need)


@settings(max_examples=300)
@given(st.lists(caveat, max_size=4), st.data())
def test_any_single_changed_byte_or_character_fails(base: list[Any], data: st.DataObject) -> None:
    token = caps.mint(ROOT, KID, base, token_id=b"\x03" * 16)
    body = bytearray(token.body())
    i = data.draw(st.integers(0, len(body) - 1))
    body[i] ^= data.draw(st.integers(1, 255))
    forged = caps.PREFIX + base64.urlsafe_b64encode(bytes(body)).rstrip(b"=").decode()
    with pytest.raises(caps.CapInvalid):
        caps.verify(forged, KEYS, caps.Need(op="put", audience=NODE, now=0.0))
    text = token.encode()
    j = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from("AQgw-_09az."))
    if replacement != text[j]:
        with pytest.raises(caps.CapInvalid):
            caps.verify(text[:j] + replacement + text[j + 1 :], KEYS, caps.Need("put", NODE, 0.0))


@settings(max_examples=500)
@given(
    st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: caps.PREFIX + b.hex()))
)
def test_decoding_anything_raises_only_the_typed_error(text: str) -> None:
    with contextlib.suppress(caps.CapInvalid):
        caps.Token.decode(text)


def test_the_verifier_caches_the_chain_but_checks_revocation_and_caveats_every_time() -> None:
    short = caps.mint(ROOT, KID, [caps.Expires(1000), caps.Ops(["put"])]).encode()
    verifier = caps.Verifier({KID: ROOT}, cache_size=2)
    assert verifier.verify(short, caps.Need("put", NODE, 999.0))
    with pytest.raises(caps.CapInvalid, match="expired"):  # the same text, later: still checked
        verifier.verify(short, caps.Need("put", NODE, 1000.0))
    with pytest.raises(caps.CapDenied):
        verifier.verify(short, caps.Need("name", NODE, 1.0))
    token_id = caps.Token.decode(short).id
    with pytest.raises(caps.CapInvalid, match="revoked"):
        verifier.verify(short, caps.Need("put", NODE, 1.0), revoked={token_id})
    verifier.set_keys({"next": bytes(32)})  # rotated away, overlap over: the old kid fails
    with pytest.raises(caps.CapInvalid, match="unknown key id"):
        verifier.verify(short, caps.Need("put", NODE, 1.0))
    verifier.set_keys({KID: ROOT, "next": bytes(32)})
    for n in range(5):  # more distinct tokens than the cache holds: bounded, still correct
        text = caps.mint(ROOT, KID, [caps.Ops(["put"])], token_id=bytes([n]) * 16).encode()
        assert verifier.verify(text, caps.Need("put", NODE, 1.0)).id == bytes([n]) * 16
        assert len(verifier._cache) <= 2
    forged = short[:-2] + ("A" if short[-2] != "A" else "B") + short[-1]
    with pytest.raises(caps.CapInvalid):
        verifier.verify(forged, caps.Need("put", NODE, 1.0))
