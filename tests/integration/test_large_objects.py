"""Objects larger than one chunk on a real node (``specs/objects.md``): stored as chunks under a
manifest, served chunk by chunk, Range by chunk, shared chunks stored once, hostile manifests
refused with stable reasons."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest
import trio

from ipc import manifest
from ipc.sdk import Client, SdkError
from tests.integration.test_gateway_node import gateway_node
from tests.integration.test_overlay_nodes import overlay_addr
from tests.integration.test_store_gc import age_every_object, objects_root
from tests.support.node_harness import RunningNode

pytestmark = pytest.mark.integration
MiB = manifest.CHUNK
VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "specs/object_vectors.json").read_text()
)


def pieces(data: bytes, size: int = 256 * 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def chunk_reads(node: RunningNode) -> float:
    return await node.metric("object_chunk_reads_total")


async def test_a_300_mib_object_is_stored_as_chunks_and_served_whole_and_by_range(
    tmp_path: Path,
) -> None:
    with trio.fail_after(120):
        async with gateway_node(tmp_path, "micronode") as (node, gw):
            data = os.urandom(300 * MiB + 12345)
            want = manifest.object_id(data)
            put = await gw.req("PUT", "/o", pieces(data))
            assert put.status == 201, put.body
            assert put.json() == {"id": want, "size": len(data)}
            assert (await gw.req("PUT", "/o", pieces(data))).status == 200  # the same id again

            doc = (await gw.req("GET", f"/o/{want}?manifest")).json()
            assert (doc["size"], doc["chunk"], doc["level"], len(doc["chunks"])) == (
                len(data),
                MiB,
                0,
                301,
            )
            assert doc["chunks"][0] == "b3:" + blake3.blake3(data[:MiB]).hexdigest()

            before = await chunk_reads(node)
            got = await gw.req("GET", f"/o/{want}")
            assert got.status == 200 and got.headers["etag"] == f'"{want}"'
            assert got.body == data
            assert await chunk_reads(node) - before == 301  # each chunk read (and verified) once

            middle = len(data) // 2
            before = await chunk_reads(node)
            one = await gw.req("GET", f"/o/{want}", range=f"bytes={middle}-{middle}")
            assert (one.status, one.body) == (206, data[middle : middle + 1])
            assert await chunk_reads(node) - before <= 2
            across = await gw.req("GET", f"/o/{want}", range=f"bytes={MiB - 3}-{MiB + 2}")
            assert (across.status, across.body) == (206, data[MiB - 3 : MiB + 3])
            head = await gw.req("HEAD", f"/o/{want}")
            assert head.headers["content-length"] == str(len(data))


async def test_two_objects_sharing_chunks_store_them_once(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with gateway_node(tmp_path, "micronode") as (node, gw):
            first = os.urandom(8 * MiB)
            second = first[: 7 * MiB] + os.urandom(MiB)  # all but its last MiB shared
            assert (await gw.req("PUT", "/o", pieces(first))).status == 201
            used = await node.metric("storage_bytes")
            assert (await gw.req("PUT", "/o", pieces(second))).status == 201
            grown = await node.metric("storage_bytes") - used
            assert MiB < grown <= MiB + 2 * 4096, grown  # one new chunk and one small manifest
            got = await gw.req("GET", f"/o/{manifest.object_id(second)}")
            assert got.body == second


async def test_a_raw_object_has_no_manifest_and_one_chunk_stays_raw(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with gateway_node(tmp_path, "micronode") as (_node, gw):
            data = os.urandom(MiB)  # exactly one chunk: raw, its own BLAKE3
            put = await gw.req("PUT", "/o", pieces(data))
            assert put.json()["id"] == "b3:" + blake3.blake3(data).hexdigest()
            none = await gw.req("GET", f"/o/{put.json()['id']}?manifest")
            assert (none.status, none.json()["error"]) == (404, "not_found")


async def test_hostile_manifests_are_refused_with_stable_reasons(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with gateway_node(tmp_path, "micronode") as (node, gw):
            objects = await node.metric("storage_objects")
            for vector in VECTORS["invalid"]:  # refused at PUT: nothing stored, nothing reserved
                put = await gw.req("PUT", "/o", bytes.fromhex(vector["bytes"]))
                want = {"manifest_invalid": 422, "object_too_large": 413}[vector["reason"]]
                assert (put.status, put.json()["error"]) == (want, vector["reason"]), vector
            assert await node.metric("storage_objects") == objects

            chunk = os.urandom(MiB)
            inner = manifest.build([bytes(32)] * 3, 3 * MiB)[-1]  # valid (of nothing here)
            for body in (chunk, inner):
                assert (await gw.req("PUT", "/o", body)).status == 201
            digest = blake3.blake3(chunk).digest()
            inner_digest = blake3.blake3(inner).digest()
            cases = {
                # its last entry is a manifest where the object's last bytes belong
                "is a manifest": manifest.Manifest(MiB + len(inner), (digest, inner_digest)),
                # its first entry is shorter than a chunk
                "bytes, not": manifest.Manifest(2 * MiB, (inner_digest, digest)),
            }
            for why, bad in cases.items():
                put = await gw.req("PUT", "/o", bad.encode())  # valid by itself: stored
                assert put.status == 201, put.body
                got = await gw.req("GET", f"/o/{put.json()['id']}")
                assert (got.status, got.json()["error"]) == (422, "manifest_invalid")
                assert why in got.json()["detail"]


async def test_gc_after_unnaming_frees_only_the_chunks_no_kept_object_lists(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with gateway_node(tmp_path, "micronode") as (node, gw):
            kept = os.urandom(6 * MiB)
            dropped = kept[: 4 * MiB] + os.urandom(2 * MiB + 7)  # 4 chunks shared, 3 its own
            kept_id, dropped_id = manifest.object_id(kept), manifest.object_id(dropped)
            for data, name in ((kept, "big/kept"), (dropped, "big/dropped")):
                assert (await gw.req("PUT", "/o", pieces(data))).status == 201
                doc = json.dumps({"id": manifest.object_id(data)}).encode()
                assert (await gw.req("PUT", f"/names/{name}", doc)).status == 200
            dropped_again = json.dumps({"id": kept_id}).encode()  # the name moves: unnamed
            assert (await gw.req("PUT", "/names/big/dropped", dropped_again)).status == 200
            listed = json.loads((await node.ronctl("ls", "--all", "--json")).stdout)["objects"]
            assert sorted((r["id"], r["size"], r["kind"]) for r in listed) == sorted(
                [(kept_id, len(kept), "manifest"), (dropped_id, len(dropped), "manifest")]
            )  # the chunks are not objects of their own here
            every = await node.ronctl("ls", "--all", "--chunks", "--json")
            kinds = [r["kind"] for r in json.loads(every.stdout)["objects"]]
            assert sorted(kinds) == ["chunk"] * 9 + ["manifest"] * 2
            root = objects_root(node, kept_id)
            assert age_every_object(root) == 6 + 1 + 3 + 1
            objects = await node.metric("storage_objects")

            dry = await node.ronctl("gc", "--dry-run", "--json")
            report = json.loads(dry.stdout)
            assert (report["removed"], report["removed_chunks"]) == (4, 3)
            assert (report["kept_named"], report["kept_reached"]) == (1, 6)
            gc = await node.post_json("/store/gc", {"grace": 3600})
            assert gc.status == 200 and gc.json()["removed"] == 4, gc.body
            assert await node.metric("storage_objects") == objects - 4
            got = await gw.req("GET", f"/o/{kept_id}")
            assert got.status == 200 and got.body == kept
            gone = await gw.req("GET", f"/o/{dropped_id}")
            assert gone.status == 404


async def test_the_sdk_puts_and_gets_a_chunked_object(tmp_path: Path) -> None:
    """The app SDK over the overlay: a put over 1 MiB goes as chunks and manifest (the same id
    as through the gateway); a get verifies it chunk by chunk; max_size bounds the whole."""
    data = os.urandom(5 * MiB + 77)
    with trio.fail_after(60):
        async with gateway_node(tmp_path, "micronode") as (node, gw):
            addr = await overlay_addr(node)
            token = await node.mint(ops=["put"], ttl=600)

            def through_sdk() -> tuple[str, bytes, str]:
                with Client(addr) as sdk:
                    stored = sdk.put(data, token)
                    got = sdk.get(stored.id, max_size=len(data))
                    try:
                        sdk.get(stored.id, max_size=len(data) - 1)
                        refused = ""
                    except SdkError as err:
                        refused = err.reason
                    return stored.id, got, refused

            obj_id, got, refused = await trio.to_thread.run_sync(through_sdk)
            assert obj_id == manifest.object_id(data) and got == data
            assert refused == "too_large"
            assert (await gw.req("GET", f"/o/{obj_id}")).body == data
