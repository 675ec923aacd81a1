"""Issue 27's acceptance on real processes (loopback only): twelve micronodes, each told only
one bootstrap node, find objects and nodes nobody listed; two micronodes keep their ids across
restarts with ``--identity`` and exchange mail.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import blake3
import pytest
import trio

from ipc import manifest
from tests.support.node_harness import (
    FAST_CONFIG,
    RunningNode,
    child_env,
    http_request,
    poll_until,
    ronctl_cmd,
    start_node,
)

pytestmark = pytest.mark.integration

NODES = 12
# the supervisor's default pace (FAST_CONFIG's 0.1 s heartbeats, times 8 services and 12 nodes,
# would keep two cores busy on their own)
# Twelve nodes on two cores: their 84 warm spares would only compete for the CPU with what is
# tested here (spares are tested on one node, in test_warm_spares and the restart storms).
CALM = '[overlay]\naddr = "127.0.0.1:0"\n\n[supervisor]\nspares = false\n'


def addr_of(node: RunningNode, node_id: str) -> str:
    return f"{node_id}@{node.ready_line['overlay'].removeprefix('tcp://')}"


async def node_id(node: RunningNode) -> str:
    return str((await node.get("/version")).json()["node_id"])


async def ok(node: RunningNode, *args: str) -> str:
    done = await node.ronctl(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout.decode().strip()


async def get_object(node: RunningNode, obj_id: str) -> bytes | None:
    """The object through ``node``'s gateway (None unless 200)."""
    host, port = node.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
    resp = await trio.to_thread.run_sync(
        lambda: http_request(host, int(port), "GET", f"/o/{obj_id}", timeout=30)
    )
    assert resp.status in (200, 404, 503), (resp.status, resp.body)
    return resp.body if resp.status == 200 else None


async def served(node: RunningNode, obj_id: str, body: bytes, within: float) -> None:
    async def check() -> bool:
        got = await get_object(node, obj_id)
        assert got is None or got == body  # never other bytes
        return got == body

    await poll_until(check, within, f"{obj_id} through {node.admin}")


@asynccontextmanager
async def network(tmp_path: Path, count: int) -> AsyncIterator[list[RunningNode]]:
    """``count`` micronodes: the first alone, the others told only its address."""
    async with AsyncExitStack() as stack:
        (tmp_path / "n1").mkdir()
        first = await stack.enter_async_context(start_node(tmp_path / "n1", config=CALM))
        boot = addr_of(first, await node_id(first))
        nodes = [first]
        for i in range(2, count + 1):
            (tmp_path / f"n{i}").mkdir()
            node = await stack.enter_async_context(
                start_node(
                    tmp_path / f"n{i}",
                    config=CALM,
                    extra_args=["--bootstrap", boot],
                    ready_timeout=60,
                )
            )
            nodes.append(node)
        yield nodes


async def contacts(node: RunningNode) -> int:
    return int((await node.get("/dht")).json()["contacts"])


async def test_twelve_nodes_told_one_bootstrap_find_objects_nodes_and_mailboxes(
    tmp_path: Path,
) -> None:
    with trio.fail_after(420):
        async with network(tmp_path, NODES) as nodes:
            ids = [await node_id(n) for n in nodes]
            for n in nodes:  # everyone joined (the DHT answers from its table)
                await poll_until(lambda n=n: _has(contacts(n), 2), 60, "contacts")

            # an object PUT on node 12 is served by node 3's gateway: nobody listed node 12
            body = b"found through the DHT " * 100
            source = tmp_path / "obj.bin"
            source.write_bytes(body)
            obj_id = await ok(nodes[11], "put", str(source))
            assert obj_id == "b3:" + blake3.blake3(body).hexdigest()
            await served(nodes[2], obj_id, body, 60)
            # a chunked one (specs/objects.md): its manifest and each chunk found the same way
            big = bytes(range(256)) * (12 << 10) + b"tail"  # 3 MiB + 4: 4 chunks
            big_src = tmp_path / "big.bin"
            big_src.write_bytes(big)
            big_id = await ok(nodes[9], "put", str(big_src))
            assert big_id == manifest.object_id(big)
            await served(nodes[4], big_id, big, 60)

            # ronctl dht findpeer on node 2 gives node 9's address
            found = json.loads(await ok(nodes[1], "dht", "findpeer", ids[8], "--json"))
            assert found["addr"] == addr_of(nodes[8], ids[8])
            provs = json.loads(await ok(nodes[6], "dht", "findprovs", obj_id, "--json"))
            assert ids[11] in {p["node_id"] for p in provs["providers"]}
            table = json.loads(await ok(nodes[0], "dht", "table", "--json"))
            assert table["contacts"] >= 2 and table["records"] >= 1

            # mail from node 4 to inbox@<node 8> is delivered
            letter = tmp_path / "letter.txt"
            letter.write_bytes(b"hello node 8")
            await ok(nodes[3], "mail", "send", f"inbox@{ids[7]}", str(letter))

            async def delivered() -> bool:
                out = await ok(nodes[7], "mail", "recv", "inbox", "--raw", "--ack", "--wait", "1")
                return "hello node 8" in out

            await poll_until(delivered, 60, "the letter at node 8")

            # the bootstrap node goes; a new object on node 5 is still found from node 7
            await _stop(nodes[0])
            later = b"after the bootstrap left " * 50
            source.write_bytes(later)
            later_id = await ok(nodes[4], "put", str(source))
            await served(nodes[6], later_id, later, 90)

            # an id nobody has: 404 through the DHT (every provider... none), never a hang
            unknown = "b3:" + "0" * 64
            assert await get_object(nodes[5], unknown) is None
            gone = await nodes[1].ronctl("dht", "findpeer", "node:" + "0" * 64)
            assert gone.returncode == 1 and b"node_unknown" in gone.stderr


async def test_micronodes_with_an_identity_file_keep_their_ids_and_exchange_mail(
    tmp_path: Path,
) -> None:
    keys = {name: tmp_path / f"{name}.key" for name in ("a", "b")}
    with trio.fail_after(240):
        made = {
            n: (await _ronctl("identity", "new", str(p))).stdout.decode().strip()
            for n, p in keys.items()
        }
        refused = await _ronctl("identity", "new", str(keys["a"]))
        assert refused.returncode == 1 and b"never overwritten" in refused.stderr
        assert oct(keys["a"].stat().st_mode & 0o777) == "0o600"
        before = keys["a"].read_bytes()
        for run in (1, 2):
            (tmp_path / f"a{run}").mkdir()
            (tmp_path / f"b{run}").mkdir()
            async with start_node(
                tmp_path / f"a{run}", config=FAST_CONFIG, extra_args=["--identity", str(keys["a"])]
            ) as a:
                assert await node_id(a) == made["a"]
                boot = addr_of(a, made["a"])
                async with start_node(
                    tmp_path / f"b{run}",
                    config=FAST_CONFIG,
                    extra_args=["--identity", str(keys["b"]), "--bootstrap", boot],
                ) as b:
                    assert await node_id(b) == made["b"]
                    letter = tmp_path / "letter.txt"
                    letter.write_bytes(f"run {run}".encode())
                    await ok(b, "mail", "send", f"inbox@{made['a']}", str(letter))

                    async def arrived(a: RunningNode = a, run: int = run) -> bool:
                        out = await ok(a, "mail", "recv", "inbox", "--raw", "--ack", "--wait", "1")
                        return f"run {run}" in out

                    await poll_until(arrived, 60, f"b's letter at a (run {run})")
        assert keys["a"].read_bytes() == before  # read, never written
        keys["b"].chmod(0o644)
        (tmp_path / "loose").mkdir()
        with pytest.raises(AssertionError, match="chmod 600"):
            async with start_node(
                tmp_path / "loose", config=FAST_CONFIG, extra_args=["--identity", str(keys["b"])]
            ):
                pass


async def _ronctl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """``ronctl ARGS`` with no node (``identity new`` needs none)."""
    return await trio.run_process(
        ronctl_cmd(*args), capture_stdout=True, capture_stderr=True, check=False, env=child_env()
    )


async def _has(count: object, least: int) -> bool:
    return await count >= least  # type: ignore[misc,operator]


async def _stop(node: RunningNode) -> None:
    done = await node.ronctl("stop")
    assert done.returncode == 0, done.stderr
    with trio.fail_after(30):
        await node.proc.wait()


async def test_a_macronode_answers_from_its_saved_table_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "b-data"
    data.mkdir(mode=0o700)
    with trio.fail_after(180):
        (tmp_path / "a").mkdir()
        async with start_node(tmp_path / "a", config=CALM) as a:
            a_id = await node_id(a)
            boot = addr_of(a, a_id)
            for run in (1, 2):
                (tmp_path / f"b{run}").mkdir()
                # the second run is told nobody: it has only what it saved in data_dir/dht/
                extra = ["--data-dir", str(data)] + (["--bootstrap", boot] if run == 1 else [])
                async with start_node(
                    tmp_path / f"b{run}", "macronode", config=CALM, extra_args=extra
                ) as b:
                    await poll_until(lambda b=b: _has(contacts(b), 1), 30, "b's contacts")
                    found = json.loads(await ok(b, "dht", "findpeer", a_id, "--json"))
                    assert found["addr"] == boot
                    if run == 2:
                        assert "--bootstrap" not in " ".join(extra)
            assert (data / "dht" / "table").is_file()
