"""The smaller defects a new user and an attacker found, each on a real node (issue: hold under
attack and under load, point 12): validity before permission, one JSON object per --json, a
duration of zero, `ronctl stop` returning once the node is gone, a mailbox share per token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.integration.test_auth_node import AUTH_CONFIG, aput, ok_line
from tests.support.mail_client import MailHttp
from tests.support.node_harness import FAST_CONFIG, pid_alive, poll_until, start_node
from tests.support.profile_config import services_toml

pytestmark = pytest.mark.slow


async def test_an_expired_token_is_401_even_when_an_earlier_caveat_fails(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path, config=AUTH_CONFIG) as node:
            base = await ok_line(node, "token", "mint", "--ops", "put", "--ttl", "10m")
            short = await ok_line(
                node, "token", "attenuate", base, "--ttl", "3s"
            )  # 1 s: raced a busy CI
            naming = json.dumps({"id": "b3:" + "0" * 64}).encode()
            status, body = await aput(node, "/names/x", naming, short)
            assert (status, body["error"]) == (403, "cap_denied")  # ops, while still valid

            async def expired() -> dict | None:
                got, doc = await aput(node, "/names/x", naming, short)
                return doc if got == 401 else None

            doc = await poll_until(expired, 10, "the attenuated token to expire")
            assert doc["error"] == "cap_invalid" and "expired" in doc["detail"]


async def test_ls_json_is_one_object_a_zero_grace_says_so_and_stop_waits(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            f = tmp_path / "f.txt"
            f.write_bytes(b"one object")
            obj = await ok_line(node, "put", str(f))
            listed = json.loads(await ok_line(node, "ls", "--json"))
            assert [o["id"] for o in listed["objects"]] == [obj] and listed["more"] is False
            await ok_line(node, "pin", "add", obj)
            assert json.loads(await ok_line(node, "pin", "ls", "--json")) == {"ids": [obj]}
            zero = await node.ronctl("gc", "--grace", "0s")
            assert zero.returncode == 2 and b"more than zero" in zero.stderr
            pid = node.proc.pid
            stopped = await node.ronctl("stop")
            assert stopped.returncode == 0 and stopped.stdout.strip() == b"stopped"
            assert not pid_alive(pid)  # "stopped" means gone, not just silent


async def test_one_token_gets_a_bounded_share_of_mailboxes(tmp_path: Path) -> None:
    config = (
        FAST_CONFIG + "\n" + services_toml("micronode", {"svc-mailbox": {"mailboxes_per_owner": 3}})
    )
    with trio.fail_after(60):
        async with start_node(tmp_path, config=config) as node:
            mail = await MailHttp.of(node)
            for n in range(3):
                assert (await trio.to_thread.run_sync(mail.send, f"box{n}", b"m")).status == 201
            full = await trio.to_thread.run_sync(mail.send, "box3", b"m")
            assert full.status == 507 and full.reason() == "insufficient_storage"
            assert (await trio.to_thread.run_sync(mail.send, "box0", b"more")).status == 201
            again = await MailHttp.of(node)  # another token: its own share
            assert (await trio.to_thread.run_sync(again.send, "box3", b"m")).status == 201
