"""Identity, tokens and the audit log on real nodes (issue 11 acceptance): the 401/403 contract
of DESIGN.md §8 through ``ronctl token``, revocation and rotation reaching the gateway, the
audit chain verifying and then catching an edit, and no token in any log line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import (
    FAST_CONFIG,
    RunningNode,
    child_env,
    http_request,
    poll_until,
    ronctl_cmd,
    short_runtime_dir,
    start_node,
)

pytestmark = pytest.mark.slow

AUTH_CONFIG = (
    FAST_CONFIG
    + """restart_cap = 1
restart_window = 60.0

[auth]
rotate_overlap = 3.0
"""
)


def put(node: RunningNode, path: str, body: bytes, token: str | None = None) -> tuple[int, dict]:
    host, port = node.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    resp = http_request(host, int(port), "PUT", path, body, headers)
    return resp.status, resp.json()


async def aput(node: RunningNode, path: str, body: bytes, token: str | None = None):
    return await trio.to_thread.run_sync(put, node, path, body, token)


async def ok_line(node: RunningNode, *args: str) -> str:
    done = await node.ronctl(*args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout.decode().strip()


async def until_status(node: RunningNode, token: str, status: int, what: str) -> dict:
    """Poll a PUT with ``token`` until the gateway answers ``status`` (keys are polled)."""

    async def check() -> dict | None:
        got, body = await aput(node, "/o", b"probe " + what.encode(), token)
        return body if got == status else None

    return await poll_until(check, 15, f"{what}: a PUT answered {status}")


async def test_the_401_403_contract_revocation_rotation_and_a_clean_log(tmp_path: Path) -> None:
    async with start_node(tmp_path, config=AUTH_CONFIG) as node:
        status, body = await aput(node, "/o", b"anonymous")
        assert (status, body["error"]) == (401, "cap_required")

        token = await ok_line(node, "token", "mint", "--ttl", "10m")
        status, body = await aput(node, "/o", b"with a token", token)
        assert status == 201, body
        oid = body["id"]

        alice = await ok_line(node, "token", "attenuate", token, "--prefix", "alice/")
        naming = json.dumps({"id": oid}).encode()
        status, body = await aput(node, "/names/bob/x", naming, alice)
        assert (status, body["error"]) == (403, "cap_denied") and "prefix" in body["detail"]
        assert (await aput(node, "/names/alice/x", naming, alice))[0] == 200

        tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        assert (await aput(node, "/o", b"tampered", tampered))[1]["error"] == "cap_invalid"

        short = await ok_line(node, "token", "mint", "--ttl", "1s")
        body = await until_status(node, short, 401, "expired")
        assert body["error"] == "cap_invalid" and "expired" in body["detail"]

        doomed = await ok_line(node, "token", "mint", "--ttl", "10m")
        assert (await aput(node, "/o", b"before revoke", doomed))[0] == 201
        doomed_id = json.loads(await ok_line(node, "token", "inspect", doomed))["id"]
        assert await ok_line(node, "token", "revoke", doomed_id) == f"revoked {doomed_id}"
        garbled = await node.ronctl("token", "revoke", "not-a-token-id")  # the caller's mistake
        assert garbled.returncode != 0 and b"HTTP 400" in garbled.stderr, garbled.stderr
        assert b"hex digits" in garbled.stderr, garbled.stderr
        body = await until_status(node, doomed, 401, "revoked")
        assert body["error"] == "cap_invalid" and "revoked" in body["detail"]

        old = await ok_line(node, "token", "mint", "--ttl", "10m")
        rotated = await ok_line(node, "token", "rotate")
        assert rotated.startswith("active key k2; k1 still verifies until")
        assert (await aput(node, "/o", b"inside the overlap", old))[0] in (200, 201)
        body = await until_status(node, old, 401, "past the overlap")
        assert "unknown key id" in body["detail"]
        fresh = await ok_line(node, "token", "mint", "--ttl", "10m")
        assert json.loads(await ok_line(node, "token", "inspect", fresh))["kid"] == "k2"
        assert (await aput(node, "/o", b"new key", fresh))[0] == 201

        failures = await node.metric("auth_failures_total", service="svc-gateway")
        assert failures >= 1 and await node.metric("rejected_total", reason="unauth") >= 1
        log = node.logs()
    for secret in (token, alice, tampered, short, doomed, old, fresh):
        assert secret not in log  # no log line of the node ever carries a token
        assert secret.split(".", 1)[1][:40] not in log


async def test_audit_records_every_privileged_act_and_catches_an_edit(tmp_path: Path) -> None:
    async with start_node(tmp_path, config=AUTH_CONFIG) as node:
        audit_log = node.runtime_dir / "data" / "audit" / "audit.log"

        async def recorded(act: str) -> None:
            async def check() -> bool | None:
                acts = [json.loads(line)["act"] for line in audit_log.read_text().splitlines()]
                return True if act in acts else None

            await poll_until(check, 10, f"an audit record of {act}")

        token = await ok_line(node, "token", "mint")
        await recorded("token_mint")
        await ok_line(node, "token", "revoke", token)
        await recorded("token_revoke")
        await ok_line(node, "config", "reload")
        await recorded("reload")
        # restart_cap = 1: the second crash within the window quarantines svc-echo
        pid = (await node.wait_service("svc-echo", state="ready"))["pid"]
        assert (await node.post("/fault/svc-echo?fault=kill")).status == 200
        await node.wait_service("svc-echo", state="ready", not_pid=pid)
        assert (await node.post("/fault/svc-echo?fault=kill")).status == 200
        await node.wait_service("svc-echo", state="quarantined")
        await recorded("quarantine")
        assert await ok_line(node, "release", "svc-echo") == "released svc-echo"
        await recorded("release")
        verified = await ok_line(node, "audit", "verify")
        assert verified.startswith("audit log intact:")
        records = audit_log.read_text().splitlines()
        detail = json.loads(records[1])["detail"]
        assert detail["caller"].startswith("uid ") and token not in audit_log.read_text()

        lines = audit_log.read_bytes().splitlines(keepends=True)
        edited = lines[2].replace(b'"token_revoke"', b'"token_revokE"')
        audit_log.write_bytes(b"".join([*lines[:2], edited, *lines[3:]]))
        broken = await node.ronctl("audit", "verify")
        assert broken.returncode == 1
        assert broken.stderr.decode().strip() == (
            "ronctl: audit log broken at record 3: record 3 was changed "
            "(its hash does not match its content)"
        )


def run_macronode(tmp_path: Path, data: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "fast.toml"
    config.write_text(FAST_CONFIG)
    rt = short_runtime_dir()
    args = ["run", "macronode", "--data-dir", str(data), "--runtime-dir", str(rt)]
    args += ["--admin-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0"]
    args += ["--overlay-addr", "127.0.0.1:0"]
    try:
        return subprocess.run(
            ronctl_cmd(*args, "--config", str(config)),
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
        )
    finally:
        subprocess.run(["rm", "-rf", str(rt)], check=False)


async def test_macronode_keys_persist_and_a_loose_key_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["--data-dir", str(data)]
    async with start_node(tmp_path, "macronode", extra_args=args) as node:
        node_id, addr = (await ok_line(node, "id")).split("\n")  # its id, then its ADDR
        assert node_id.startswith("node:") and len(node_id) == 69
        assert addr == f"{node_id}@{node.ready_line['overlay'].removeprefix('tcp://')}"
        assert (await node.get("/version")).json()["node_id"] == node_id
    async with start_node(tmp_path, "macronode", extra_args=args) as node:
        # the same identity after a restart
        assert (await ok_line(node, "id")).split("\n")[0] == node_id
    (data / "keys" / "identity.key").chmod(0o644)
    done = await trio.to_thread.run_sync(run_macronode, tmp_path, data)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "identity.key has mode 644" in lines[0], done.stderr
