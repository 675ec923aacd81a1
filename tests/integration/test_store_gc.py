"""Store housekeeping in a real node: ``ronctl ls``, ``pin add|rm|ls`` and ``gc`` while the
node serves. A GC keeps pinned and named objects and every object written (or acknowledged
again) while it runs; reads during it get whole objects or 404, never a torn body.

Objects are aged past the grace window by setting their mtime, which is exactly what a GC
measures (``specs/storage-protocol.md``, Garbage collection)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import attrs
import pytest
import trio

from ipc import ids
from tests.integration.test_gateway_node import Gateway, b3, gateway_node
from tests.support.node_harness import RunningNode

pytestmark = pytest.mark.integration
GARBAGE = 300
TWO_HOURS = 7200.0


def objects_root(node: RunningNode, some_id: str) -> Path:
    """The node's store (under its tmpfs runtime dir), found by one object it holds."""
    path = next(node.runtime_dir.rglob(ids.parse_id(some_id)))
    return path.parent.parent


def age_every_object(root: Path, seconds: float = TWO_HOURS) -> int:
    then = time.time() - seconds
    count = 0
    for fanout in root.iterdir():
        if len(fanout.name) == 2:
            for path in fanout.iterdir():
                os.utime(path, (then, then))
                count += 1
    return count


@attrs.define
class Traffic:
    """What the writer did while a GC ran; each op with its start and end (monotonic)."""

    acked: list[tuple[float, float, str, bytes]] = attrs.Factory(list)
    reads: list[tuple[str, int, bytes]] = attrs.Factory(list)


async def serve_during(gw: Gateway, garbage: list[bytes], done: trio.Event, t: Traffic) -> None:
    """New objects, re-PUTs of old garbage and reads of it, until ``done``."""
    n = 0
    while not done.is_set():
        fresh = b"written during the gc %d" % n
        old = garbage[n % len(garbage)]
        for body in (fresh, old):
            began = time.monotonic()
            resp = await gw.req("PUT", "/o", body)
            if resp.status in (200, 201):
                t.acked.append((began, time.monotonic(), resp.json()["id"], body))
        read = garbage[(n * 7 + 3) % len(garbage)]
        got = await gw.req("GET", f"/o/{b3(read)}")
        t.reads.append((b3(read), got.status, got.body))
        n += 1


async def test_gc_keeps_pinned_named_and_what_is_written_during_it(tmp_path: Path) -> None:
    with trio.fail_after(150):
        async with gateway_node(tmp_path, "micronode") as (node, gw):
            garbage = [b"garbage %04d " % i + os.urandom(64) for i in range(GARBAGE)]
            for body in garbage:
                assert (await gw.req("PUT", "/o", body)).status == 201
            pinned, named = b"pinned object", b"named object"
            pin_id, named_id = b3(pinned), b3(named)
            for body in (pinned, named):
                assert (await gw.req("PUT", "/o", body)).status == 201
            name = await gw.req("PUT", "/names/keep/this", json.dumps({"id": named_id}).encode())
            assert name.status == 200
            added = await node.ronctl("pin", "add", pin_id)
            assert (added.returncode, added.stdout.decode()) == (0, f"pinned {pin_id}\n")
            root = objects_root(node, pin_id)
            assert age_every_object(root) == GARBAGE + 2

            listing = await node.ronctl("ls", "--all", "--json")
            listed = json.loads(listing.stdout)  # one object, as every --json
            assert listed["more"] is False and listed["after"] is None
            rows = listed["objects"]
            assert len(rows) == GARBAGE + 2 and [r["id"] for r in rows] == sorted(
                r["id"] for r in rows
            )
            assert [r["id"] for r in rows if r["pinned"]] == [pin_id]
            page = await node.ronctl("ls", "-n", "5")
            assert len(page.stdout.decode().splitlines()) == 5
            assert page.stderr.decode().startswith("more: ronctl ls --after b3:")
            assert "2h" in page.stdout.decode().splitlines()[0]

            traffic = Traffic()
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_during, gw, garbage, done, traffic)
                while not traffic.acked:  # the writer is under way before the GC starts
                    await trio.sleep(0.01)
                gc_began = time.monotonic()
                answer = await node.post_json("/store/gc", {"grace": 3600})
                gc_ended = time.monotonic()
                done.set()
            assert answer.status == 200, answer.body
            report = answer.json()
            assert (report["kept_pinned"], report["kept_named"]) == (1, 1)
            assert report["removed"] > 0 and report["dry_run"] is False

            during = [a for a in traffic.acked if a[0] > gc_began and a[1] < gc_ended]
            assert during, "no write was acknowledged while the GC ran"
            for _began, _ended, obj_id, body in traffic.acked:  # every acknowledged write stays
                got = await gw.req("GET", f"/o/{obj_id}")
                assert (got.status, got.body) == (200, body), obj_id
            for obj_id, status, body in traffic.reads:  # whole or gone, never torn
                assert status in (200, 404) and (status == 404 or b3(body) == obj_id)
            for obj_id in (pin_id, named_id):
                assert (await gw.req("GET", f"/o/{obj_id}")).status == 200
            rewritten = {a[2] for a in traffic.acked}
            gone = [b3(g) for g in garbage if b3(g) not in rewritten]
            assert gone and all(
                [(await gw.req("HEAD", f"/o/{obj_id}")).status == 404 for obj_id in gone]
            )
            objects = await node.metric("storage_objects")
            assert objects == len(rewritten) + 2

            # Unpinned and aged, the pinned object is garbage on the next GC; the name keeps its.
            removed = await node.ronctl("pin", "rm", pin_id)
            assert removed.stdout.decode() == f"unpinned {pin_id}\n"
            assert (await node.ronctl("pin", "ls")).stdout == b""
            age_every_object(root)
            dry = await node.ronctl("gc", "--dry-run")
            assert dry.returncode == 0 and dry.stdout.decode().startswith(
                f"would remove {len(rewritten) + 1} objects"
            )
            assert await node.metric("storage_objects") == objects
            final = await node.ronctl("gc", "--json")
            assert json.loads(final.stdout)["removed"] == len(rewritten) + 1
            assert (await gw.req("GET", f"/o/{pin_id}")).status == 404
            assert (await gw.req("GET", f"/o/{named_id}")).status == 200


async def test_store_verbs_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with gateway_node(tmp_path, "micronode") as (node, _gw):
            missing = "b3:" + "ab" * 32
            cases = {
                ("pin", "add", missing): "is not stored on this node",
                ("gc", "--grace", "5s"): "grace must be at least 60 s",
            }
            for argv, text in cases.items():
                done = await node.ronctl(*argv)
                err = done.stderr.decode()
                assert done.returncode == 1 and text in err and len(err.splitlines()) == 1, err
            bad = await node.ronctl("pin", "add", "nope")
            assert bad.returncode == 2 and "is not an object id" in bad.stderr.decode()
