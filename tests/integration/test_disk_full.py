"""A real full disk (ENOSPC, not the store's quota): a macronode whose data dir is a 2 MiB tmpfs.
A PUT that runs out of disk answers 507 ``insufficient_storage`` (never 500), leaves no partial
object and no temp file, and is counted once in ``rejected_total``; the node keeps serving."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from services.lib import objstore
from tests.support.node_harness import RunningNode, http_request, start_node

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def put(node: RunningNode, token: str, body: object) -> tuple[int, dict]:
    host, port = node.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
    resp = http_request(host, int(port), "PUT", "/o", body, {"authorization": f"Bearer {token}"})
    return resp.status, resp.json()


def leftovers(data: Path) -> list[str]:
    tmp = data / "objects" / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


async def test_a_full_disk_is_507_with_nothing_partial_left(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk:
        data = disk / "data"
        async with start_node(tmp_path, "macronode", extra_args=["--data-dir", str(data)]) as node:
            token = await node.mint(ttl=600)
            answers = []
            for i in range(8):  # 8 x 400 KB streamed: the disk fills part-way through one
                body = iter([os.urandom(100_000) + bytes([i]) for _ in range(4)])
                answers.append(await trio.to_thread.run_sync(put, node, token, body))
                if answers[-1][0] != 201:
                    break
            status, doc = answers[-1]
            assert (status, doc["error"]) == (507, "insufficient_storage"), answers
            assert leftovers(data) == []
            objects = [
                p
                for p in (data / "objects").rglob("*")
                if p.is_file() and not p.name.startswith(objstore.USAGE_HINT)  # not an object
            ]
            assert len(objects) == len(answers) - 1  # every stored one whole, no partial one
            assert await node.metric("rejected_total", reason="insufficient_storage") == 1
            # Small bodies go to svc-storage in one command: its 507 is relayed, counted once.
            refused = 1
            for i in range(200):
                status, _ = await trio.to_thread.run_sync(
                    put, node, token, os.urandom(60_000) + i.to_bytes(2, "big")
                )
                if status == 507:
                    refused += 1
                    if refused == 3:
                        break
                else:
                    assert status == 201
            assert refused == 3
            assert leftovers(data) == []
            counted = await node.metric("rejected_total", reason="insufficient_storage")
            assert counted == refused  # one rejection, one count
            assert (await node.get("/readyz")).status == 200
