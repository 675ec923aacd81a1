"""A revocation holds when `ronctl token revoke` returns, at every verifier, and through a crash of
svc-passport (DESIGN §8: acts take effect before they answer). Real node, real sockets.

Before: revoke returned before the verifiers' next poll (writes with the revoked token were
accepted for up to half a second), and a kill -9 of svc-passport right after a revoke made the
key-set version restart at 1, so a verifier polling "since 1" never heard of it.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio

from ipc.sdk import AsyncClient, SdkError
from tests.integration.test_auth_node import AUTH_CONFIG, aput, ok_line
from tests.support.node_harness import RunningNode, start_node

pytestmark = pytest.mark.slow

PASSPORT = "svc-passport"


async def revoke(node: RunningNode, token: str) -> None:
    token_id = json.loads(await ok_line(node, "token", "inspect", token))["id"]
    assert await ok_line(node, "token", "revoke", token_id) == f"revoked {token_id}"


async def overlay_put(node: RunningNode, token: str, body: bytes) -> str:
    addr = json.loads(await ok_line(node, "id", "--json"))["addr"]
    async with AsyncClient.connect(addr) as client:
        try:
            await client.put(body, token)
        except SdkError as exc:
            return exc.reason
    return "stored"


async def test_revoke_returns_only_once_every_verifier_refuses(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with start_node(tmp_path, config=AUTH_CONFIG) as node:
            for round_ in range(3):
                token = await ok_line(node, "token", "mint", "--ttl", "10m")
                assert (await aput(node, "/o", f"before {round_}".encode(), token))[0] == 201
                assert await overlay_put(node, token, f"peer {round_}".encode()) == "stored"
                await revoke(node, token)
                # the very first writes after the verb returned: the gateway and the overlay
                for i in range(5):
                    status, body = await aput(node, "/o", f"after {round_} {i}".encode(), token)
                    assert (status, body["error"]) == (401, "cap_invalid"), body
                assert await overlay_put(node, token, b"after") != "stored"


async def test_a_revocation_survives_a_kill_of_svc_passport(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with start_node(tmp_path, config=AUTH_CONFIG) as node:
            token = await ok_line(node, "token", "mint", "--ttl", "10m")
            assert (await aput(node, "/o", b"before", token))[0] == 201
            old = await node.service(PASSPORT)
            await revoke(node, token)
            os.kill(old["pid"], signal.SIGKILL)
            await node.wait_service(PASSPORT, state="ready", not_pid=old["pid"])
            for i in range(10):  # across the restart and well after it
                status, body = await aput(node, "/o", f"after {i}".encode(), token)
                assert (status, body["error"]) == (401, "cap_invalid"), body
                await trio.sleep(0.3)
            fresh = await ok_line(node, "token", "mint", "--ttl", "10m")
            assert (await aput(node, "/o", b"fresh", fresh))[0] == 201
