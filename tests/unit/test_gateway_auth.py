"""Writes through the gateway need a capability token (DESIGN.md §8): the 401/403 contract, the
token's max_size on a streamed body, counting, and reads that stay open. The app is real, on a
real socket; the data plane is the in-memory fake; tokens are real ``ipc.caps`` tokens."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from ipc import caps
from ipc.proto import passport as proto
from services.gateway.auth import Guard
from tests.support.gateway_fakes import b3, serve

NODE = "node:" + "ab" * 32
KEY = secrets.token_bytes(32)


def guard_with(keys: dict[str, bytes] | None = None, revoked: tuple[bytes, ...] = ()) -> Guard:
    guard = Guard()
    keyset = proto.KeySet(version=1, node_id=NODE, keys=keys or {"k1": KEY}, revoked=revoked)
    guard.set_keys(keyset)
    return guard


def token(*extra: caps.Caveat, ttl: float = 60.0, ops: tuple[str, ...] = ("put", "name")) -> str:
    base = [caps.Expires(int(time.time() + ttl)), caps.Ops(ops), caps.Audience(NODE)]
    return caps.mint(KEY, "k1", [*base, *extra]).encode()


def bearer(text: str) -> dict[str, str]:
    return {"authorization": f"Bearer {text}"}


async def test_no_token_401_cap_required_with_a_bearer_challenge() -> None:
    with trio.fail_after(20):
        async with serve(guard=guard_with()) as gw:
            bare = await gw.put(b"data")
            name = await gw.req("PUT", "/names/x", json.dumps({"id": b3(b"d")}).encode())
            basic = await gw.req("PUT", "/o", b"data", authorization="Basic dXNlcjpwdw==")
    for resp in (bare, name, basic):
        assert resp.status == 401 and resp.json()["error"] == "cap_required", resp.body
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert gw.backend.objects == {}
    assert gw.metrics.rejected.get(reason="unauth") == 3
    assert gw.metrics.auth_failures.get(service="svc-gateway", reason="cap_required") == 3


async def test_a_valid_token_writes_and_reads_stay_open() -> None:
    good = token()
    with trio.fail_after(20):
        async with serve(guard=guard_with()) as gw:
            put = await gw.req("PUT", "/o", b"hello", **bearer(good))
            oid = put.json()["id"]
            named = await gw.req(
                "PUT", "/names/site", json.dumps({"id": oid}).encode(), **bearer(good)
            )
            got = await gw.req("GET", f"/o/{oid}")
            name = await gw.req("GET", "/names/site")
    assert (put.status, named.status, got.status, name.status) == (201, 200, 200, 200)
    assert got.body == b"hello"


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (lambda: token(ttl=-5), "expired"),
        (
            lambda: caps.mint(secrets.token_bytes(32), "k1", [caps.Ops(("put",))]).encode(),
            "signature",
        ),
        (lambda: caps.mint(KEY, "k9", [caps.Ops(("put",))]).encode(), "unknown key id"),
        (lambda: token()[:-3] + ("AAA" if not token().endswith("AAA") else "BBB"), ""),
        (lambda: "ron1.!!!", ""),
        (lambda: "x" * 5000, ""),
    ],
)
async def test_bad_tokens_401_cap_invalid(make, detail: str) -> None:
    with trio.fail_after(20):
        async with serve(guard=guard_with()) as gw:
            resp = await gw.req("PUT", "/o", b"data", **bearer(make()))
    assert resp.status == 401 and resp.json()["error"] == "cap_invalid", resp.body
    assert detail in resp.json()["detail"]
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert gw.metrics.auth_failures.get(service="svc-gateway", reason="cap_invalid") == 1


async def test_a_revoked_token_401() -> None:
    good = token()
    revoked = guard_with(revoked=(caps.Token.decode(good).id,))
    with trio.fail_after(20):
        async with serve(guard=revoked) as gw:
            resp = await gw.req("PUT", "/o", b"data", **bearer(good))
    assert (resp.status, resp.json()["error"]) == (401, "cap_invalid")
    assert "revoked" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("caveats", "path", "caveat"),
    [
        ((caps.Prefix("alice/"),), "/names/bob/x", "prefix"),
        ((), "/names/bob/x", "ops"),  # a put-only token naming
        ((caps.Audience("node:" + "cd" * 32),), "/o", "aud"),
        ((caps.MaxSize(3),), "/o", "max_size"),
    ],
)
async def test_a_valid_token_that_does_not_allow_the_write_403_naming_the_caveat(
    caveats: tuple[caps.Caveat, ...], path: str, caveat: str
) -> None:
    ops = ("put",) if caveat == "ops" else ("put", "name")
    text = token(*caveats, ops=ops)
    body = b"four" if path == "/o" else json.dumps({"id": b3(b"x")}).encode()
    with trio.fail_after(20):
        async with serve(guard=guard_with()) as gw:
            resp = await gw.req("PUT", path, body, **bearer(text))
    assert (resp.status, resp.json()["error"]) == (403, "cap_denied"), resp.body
    assert resp.json()["detail"].startswith(caveat + ":")
    assert gw.metrics.auth_failures.get(service="svc-gateway", reason="cap_denied") == 1


async def test_max_size_holds_for_a_streamed_body_of_unknown_size() -> None:
    text = token(caps.MaxSize(100_000))
    with trio.fail_after(20):
        async with serve(guard=guard_with()) as gw:
            over = await gw.req("PUT", "/o", iter([b"a" * 70_000, b"b" * 70_000]), **bearer(text))
            under = await gw.req("PUT", "/o", iter([b"a" * 70_000, b"b" * 20_000]), **bearer(text))
    assert (over.status, over.json()["error"]) == (403, "cap_denied")
    assert over.json()["detail"].startswith("max_size:")
    assert under.status == 201
    assert len(gw.backend.objects) == 1  # nothing of the refused body was kept


async def test_before_the_keys_arrive_writes_are_503_never_open() -> None:
    with trio.fail_after(20):
        async with serve(guard=Guard()) as gw:
            resp = await gw.req("PUT", "/o", b"data", **bearer(token()))
    assert (resp.status, resp.json()["error"]) == (503, "unavailable")
    assert resp.headers["retry-after"] == "1"


async def test_a_write_that_comes_before_the_first_key_set_waits_for_it() -> None:
    """A gateway is ready before its first poll of svc-passport is back (a respawn does not
    wait for another process): a write in that moment waits for the keys, it is not refused."""
    guard = Guard()
    with trio.fail_after(20):
        async with serve(guard=guard) as gw, trio.open_nursery() as nursery:
            answers: list[int] = []

            async def put() -> None:
                answers.append((await gw.req("PUT", "/o", b"early", **bearer(token()))).status)

            nursery.start_soon(put)
            await wait_all_tasks_blocked(cushion=0.05)  # the request is in, nothing moves
            assert answers == []  # waiting, not refused
            guard.set_keys(proto.KeySet(version=1, node_id=NODE, keys={"k1": KEY}))
            guard.first_keys.set()
    assert answers == [201]


async def test_a_rotated_key_set_takes_effect() -> None:
    guard = guard_with()
    old = token()
    with trio.fail_after(20):
        async with serve(guard=guard) as gw:
            assert (await gw.req("PUT", "/o", b"one", **bearer(old))).status == 201
            guard.set_keys(proto.KeySet(version=2, node_id=NODE, keys={"k2": KEY}))
            resp = await gw.req("PUT", "/o", b"two", **bearer(old))
    assert (resp.status, resp.json()["error"]) == (401, "cap_invalid")
