"""svc-index as a real supervised service: versioned names, conflicts, the name rule."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from ipc import ids, oap
from ipc.commands import CommandClient
from ipc.proto.index import INDEX_PROTO, NAME_MAX, PROTOCOL, check_name
from tests.integration.test_storage_service import INDEX, storage_node
from tests.support.protocols import call_op, raw_request

pytestmark = pytest.mark.slow
A = ids.id_of(b"a")
B = ids.id_of(b"b")


async def call(client: CommandClient, op: str, **fields: Any) -> dict[str, Any]:
    """The reply as a dict, without the fields it left out (an untyped name has no type)."""
    reply = await call_op(client, PROTOCOL, op, **fields)
    return {key: value for key, value in reply.items() if value is not None}


async def reason_of(client: CommandClient, op: str, **fields: Any) -> tuple[int, str]:
    """What svc-index answers to these fields, whatever they are (it is the judge)."""
    with pytest.raises(oap.OapError) as info:
        await client.request(raw_request(INDEX_PROTO, op, **fields))
    return info.value.code, info.value.reason


GOOD_NAMES = ["a", "site/index.html", "A-Z_0.9~x", "x" * NAME_MAX, "a/b/c/d"]
BAD_NAMES = ["", "/a", "a/", "a//b", "a/../b", "..", ".", "a b", "é", "x" * (NAME_MAX + 1), "a?b"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_name_rule_accepts(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_name_rule_rejects(name: str) -> None:
    with pytest.raises(oap.OapError) as info:
        check_name(name)
    assert (info.value.code, info.value.reason) == (422, "bad_name")


async def test_names_are_versioned_conditional_and_validated(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            storage_node(tmp_path, "macronode") as (node, _root),
            CommandClient.connect(node.runtime_dir, INDEX) as client,
        ):
            assert await reason_of(client, "get", name="site/home") == (404, "not_found")
            assert await call(client, "put", name="site/home", id=A) == {
                "name": "site/home",
                "id": A,
                "version": 1,
            }
            assert (await call(client, "put", name="site/home", id=B))["version"] == 2
            assert await call(client, "get", name="site/home") == {
                "name": "site/home",
                "id": B,
                "version": 2,
            }
            # conditional updates: the expected version must be the current one
            assert await reason_of(client, "put", name="site/home", id=A, expect_version=1) == (
                409,
                "version_conflict",
            )
            put3 = await call(client, "put", name="site/home", id=A, expect_version=2)
            assert put3["version"] == 3
            # expect_version 0 = create only
            assert (await call(client, "put", name="new", id=A, expect_version=0))["version"] == 1
            assert await reason_of(client, "put", name="new", id=B, expect_version=0) == (
                409,
                "version_conflict",
            )
            assert (await call(client, "get", name="new"))["id"] == A

            assert await reason_of(client, "put", name="a//b", id=A) == (422, "bad_name")
            assert await reason_of(client, "get", name="../etc") == (422, "bad_name")
            assert await reason_of(client, "put", name="ok", id="b3:nope") == (
                422,
                "schema_invalid",
            )
            raw = oap.Frame(flags=oap.REQ, app_proto_id=INDEX_PROTO, payload=b"\x81\xa2op\xa3del")
            with pytest.raises(oap.OapError) as info:
                await client.request(raw)
            assert info.value.reason == "schema_invalid"
            assert await node.metric("rejected_total", reason="version_conflict") == 2.0

            # concurrent conditional updates of one name: exactly one wins each version
            async def bump(results: list[str]) -> None:
                try:
                    await call(client, "put", name="race", id=A, expect_version=0)
                    results.append("won")
                except oap.OapError as exc:
                    results.append(exc.reason)

            results: list[str] = []
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(bump, results)
            assert sorted(results) == ["version_conflict"] * 7 + ["won"]

            # state survives a kill -9 of the index
            pid = (await node.service(INDEX))["pid"]
            os.kill(pid, signal.SIGKILL)
            await node.wait_service(INDEX, state="ready", not_pid=pid)
            assert await call(client, "get", name="site/home") == {
                "name": "site/home",
                "id": A,
                "version": 3,
            }


async def test_types_follow_objects_into_names_and_an_old_table_gains_them(tmp_path: Path) -> None:
    # a names table from before types: the node must open it, keep its names, and add types
    old = tmp_path / "data" / "index"
    old.mkdir(parents=True, mode=0o700)
    with sqlite3.connect(old / "names.sqlite3") as db:
        db.execute(
            "CREATE TABLE names (name TEXT PRIMARY KEY, id TEXT NOT NULL, "
            "version INTEGER NOT NULL) WITHOUT ROWID"
        )
        db.execute("INSERT INTO names VALUES ('kept', ?, 4)", (A,))
    with trio.fail_after(60):
        async with (
            storage_node(tmp_path, "macronode") as (_node, _root),
            CommandClient.connect(_node.runtime_dir, INDEX) as client,
        ):
            assert await call(client, "get", name="kept") == {"name": "kept", "id": A, "version": 4}
            typed = await call(client, "set_type", id=B, type="Image/PNG")
            assert typed == {"id": B, "type": "image/png"}
            put = await call(client, "put", name="logo", id=B)
            assert put == {"name": "logo", "id": B, "version": 1, "type": "image/png"}
            own = await call(client, "put", name="logo", id=B, type="image/webp")
            assert own["type"] == "image/webp"
            listed = await call(client, "list", prefix="")
            assert [r.get("type") for r in listed["names"]] == [None, "image/webp"]
            for bad in ("png", "image/png\r\nx: y", "a" * 300 + "/b"):
                assert await reason_of(client, "set_type", id=B, type=bad) == (400, "bad_type")
                assert await reason_of(client, "put", name="x", id=B, type=bad) == (400, "bad_type")
