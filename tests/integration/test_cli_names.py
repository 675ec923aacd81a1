"""``ronctl name set|get|ls`` and ``GET /names`` on a real node (DESIGN.md §8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import http_request, start_node

pytestmark = pytest.mark.integration


async def test_name_verbs_set_get_and_list(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            blob = tmp_path / "page.html"
            blob.write_bytes(b"<h1>hi</h1>")
            put = await node.ronctl("put", str(blob))
            assert put.returncode == 0, put.stderr
            obj_id = put.stdout.decode().strip()
            for name in ("site/index.html", "site/about.html", "blog/one", "site/z/deep"):
                done = await node.ronctl("name", "set", name, obj_id)
                assert done.returncode == 0, done.stderr
                assert done.stdout.decode().strip() == f"{name} {obj_id} version 1"
            again = await node.ronctl("name", "set", "blog/one", obj_id, "--expect-version", "1")
            assert again.stdout.decode().strip().endswith("version 2")
            stale = await node.ronctl("name", "set", "blog/one", obj_id, "--expect-version", "1")
            assert stale.returncode == 1 and b"version_conflict" in stale.stderr
            assert stale.stderr.count(b"\n") == 1

            got = await node.ronctl("name", "get", "blog/one")
            assert got.returncode == 0 and got.stdout.decode().strip() == f"{obj_id} version 2"
            missing = await node.ronctl("name", "get", "no/such")
            assert missing.returncode == 1 and b"not_found" in missing.stderr

            listed = await node.ronctl("name", "ls", "site/")
            assert listed.returncode == 0, listed.stderr
            lines = listed.stdout.decode().splitlines()
            assert [line.split()[0] for line in lines] == [
                "site/about.html",
                "site/index.html",
                "site/z/deep",
            ]
            every = await node.ronctl("name", "ls", "--json")
            docs = [json.loads(line) for line in every.stdout.decode().splitlines()]
            assert [d["name"] for d in docs] == sorted(d["name"] for d in docs) and len(docs) == 4

            # GET /names pages with after; bad parameters are 422, never 500
            host, port = node.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)

            def page(query: str) -> tuple[int, dict[str, object]]:
                resp = http_request(host, int(port), "GET", f"/names?{query}")
                return resp.status, resp.json()

            status, first = await trio.to_thread.run_sync(page, "max=2")
            assert status == 200 and first["more"] is True
            names = [r["name"] for r in first["names"]]  # type: ignore[union-attr]
            status, rest = await trio.to_thread.run_sync(page, f"max=2&after={names[-1]}")
            names += [r["name"] for r in rest["names"]]  # type: ignore[union-attr]
            assert status == 200 and rest["more"] is False and len(names) == 4
            for bad in ("max=0", "max=1001", "max=x", "limit=3"):
                status, doc = await trio.to_thread.run_sync(page, bad)
                assert status == 422 and doc["error"] == "schema_invalid", bad
