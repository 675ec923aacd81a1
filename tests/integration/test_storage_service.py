"""svc-storage as a real supervised service in a real node, driven over its command socket."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from ipc import ids, oap
from ipc.commands import CommandClient
from ipc.proto import index, storage
from services.lib import objstore
from services.storage.settings import StorageSettings, load_settings
from tests.support.node_harness import FAST_CONFIG, RunningNode, start_node
from tests.support.protocols import call_op, raw_request

STORAGE = "svc-storage"
INDEX = "svc-index"
SPEC = Path(__file__).resolve().parents[2] / "specs" / "storage-protocol.md"


def test_spec_documents_every_op_field_and_setting() -> None:
    text = SPEC.read_text()
    for protocol in (storage.PROTOCOL, index.PROTOCOL):
        for op in protocol.ops:
            assert f"| `{op}` |" in text, op
            for field in attrs.fields(protocol.request_class(op)):
                assert f"`{field.name}`" in text, (op, field.name)
    for field in attrs.fields(StorageSettings):
        assert f"| `{field.name}` |" in text, field.name


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"max_bytes": "1G"}, "max_bytes: expected int"),
        ({"max_bytes": -1}, "max_bytes"),
        ({"group_sync": 1}, "group_sync: expected bool"),
        ({"max_byte": 1}, "max_byte"),
    ],
)
def test_bad_settings_are_one_line_errors(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        load_settings(raw)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert load_settings({}) == StorageSettings()


def node_config(**storage_settings: Any) -> str:
    """FAST_CONFIG plus a services array of just svc-storage (with ``storage_settings``) and
    svc-index (a --config ``[[services]]`` array replaces the profile's whole)."""
    settings = "".join(f"{k} = {v!r}\n" for k, v in storage_settings.items())
    return (
        FAST_CONFIG
        + f'\n[[services]]\nname = "{STORAGE}"\nmodule = "services.storage"\n'
        + f"[services.settings]\n{settings}"
        + f'\n[[services]]\nname = "{INDEX}"\nmodule = "services.index"\n'
    )


@asynccontextmanager
async def storage_node(
    tmp_path: Path, profile: str = "macronode", **settings: Any
) -> AsyncIterator[tuple[RunningNode, Path]]:
    """A node running svc-storage and svc-index; yields (node, object store root)."""
    extra: list[str] = []
    if profile == "macronode":
        extra = ["--data-dir", str(tmp_path / "data")]
    async with start_node(
        tmp_path, profile, config=node_config(**settings), extra_args=extra
    ) as node:
        data_dir = tmp_path / "data" if profile == "macronode" else node.runtime_dir / "data"
        await node.wait_service(STORAGE, state="ready")
        await node.wait_service(INDEX, state="ready")
        yield node, objstore.store_root(data_dir)


async def call(client: CommandClient, op: str, **fields: Any) -> dict[str, Any]:
    return await call_op(client, storage.PROTOCOL, op, **fields)


async def upload(client: CommandClient, root: Path, data: bytes) -> dict[str, Any]:
    """What the gateway does: write a temp file, then ask svc-storage to commit it."""

    def write() -> tuple[str, int, str]:
        with objstore.TempObject(root, len(data)) as temp:
            temp.write(data)
            return temp.finish()

    obj_id, size, tmp = await trio.to_thread.run_sync(write)
    try:
        return await call(client, "commit", tmp=tmp, id=obj_id, size=size)
    finally:
        objstore.remove_temp(root, tmp)


async def reason_of(client: CommandClient, op: str, **fields: Any) -> tuple[int, str]:
    """What svc-storage answers to these fields, whatever they are (it is the judge)."""
    with pytest.raises(oap.OapError) as info:
        await client.request(raw_request(storage.STORAGE_PROTO, op, **fields))
    return info.value.code, info.value.reason


def read_back(root: Path, obj_id: str) -> bytes:
    with objstore.open_verified(root, obj_id) as obj:
        return obj.read(0, obj.size)


@pytest.mark.slow
async def test_put_commit_stat_usage_and_errors(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            storage_node(tmp_path) as (node, root),
            CommandClient.connect(node.runtime_dir, STORAGE) as client,
        ):
            hello = oap.unpack_payload(
                oap.HelloResponse, (await client.request(oap.hello_request(1))).payload
            )
            assert "storage" in hello.features

            data = os.urandom(200_000)
            first = await upload(client, root, data)
            assert first == {"id": ids.id_of(data), "size": len(data), "created": True}
            again = await upload(client, root, data)
            assert again == {**first, "created": False}
            assert await trio.to_thread.run_sync(read_back, root, first["id"]) == data

            small = await call(client, "put", data=b"hello")
            assert small == {"id": ids.id_of(b"hello"), "size": 5, "created": True}
            assert await call(client, "put", data=b"hello") == {**small, "created": False}
            assert await call(client, "stat", id=small["id"]) == {"id": small["id"], "size": 5}
            usage = await call(client, "usage")
            assert (usage["bytes"], usage["objects"]) == (len(data) + 5, 2)
            assert list((root / "tmp").iterdir()) == []

            missing = ids.id_of(b"never stored")
            assert await reason_of(client, "stat", id=missing) == (404, "not_found")
            assert await reason_of(client, "stat", id="b3:XYZ") == (422, "schema_invalid")
            assert await reason_of(client, "stat", id=3) == (422, "schema_invalid")

            # commit: a claim the bytes do not back, a path instead of a temp name, a lost temp
            temp = objstore.TempObject(root, 10)
            temp.write(b"abc")
            _, size, tmp = temp.finish()
            assert await reason_of(client, "commit", tmp=tmp, id=missing, size=size) == (
                422,
                "digest_mismatch",
            )
            assert not temp.path.exists()  # a temp that fails verification is dropped
            bad_tmp = await reason_of(client, "commit", tmp="../../x", id=missing, size=1)
            assert bad_tmp == (422, "schema_invalid")
            lost = f"{os.getpid():x}-{'0' * 32}"
            assert await reason_of(client, "commit", tmp=lost, id=missing, size=1) == (
                404,
                "not_found",
            )

            proto_id = storage.STORAGE_PROTO
            raw = [
                oap.Frame(flags=oap.REQ, app_proto_id=proto_id, payload=b"\xc1"),
                oap.Frame(
                    flags=oap.REQ, app_proto_id=storage.STORAGE_PROTO, payload=b"\x81\xa2op\xa3zap"
                ),
                oap.Frame(flags=oap.REQ, app_proto_id=0x0999, payload=b"\x80"),
            ]
            codes = []
            for frame in raw:
                with pytest.raises(oap.OapError) as info:
                    await client.request(frame)
                codes.append((info.value.code, info.value.reason))
            assert codes == [
                (422, "schema_invalid"),
                (422, "schema_invalid"),
                (400, "unknown_app_proto"),
            ]
            assert await node.metric("rejected_total", reason="digest_mismatch") == 1.0
            latency = await node.metric("request_latency_seconds_count", op="storage_commit")
            assert latency >= 4


@pytest.mark.slow
async def test_quotas_answer_507_and_never_evict(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            storage_node(tmp_path, max_bytes=100, max_objects=2, max_object_size=60) as (
                node,
                root,
            ),
            CommandClient.connect(node.runtime_dir, STORAGE) as client,
        ):
            a = await call(client, "put", data=b"a" * 60)
            assert await reason_of(client, "put", data=b"b" * 61) == (413, "object_too_large")
            temp = objstore.TempObject(root, 100)
            temp.write(b"b" * 61)
            big_id, big_size, tmp = temp.finish()
            assert await reason_of(client, "commit", tmp=tmp, id=big_id, size=big_size) == (
                413,
                "object_too_large",
            )
            assert not temp.path.exists()  # refused: the temp is dropped
            assert await reason_of(client, "put", data=b"b" * 41) == (507, "insufficient_storage")
            b = await call(client, "put", data=b"b" * 40)
            assert await reason_of(client, "put", data=b"c") == (507, "insufficient_storage")
            # a store that is full still acknowledges what it already holds
            assert (await call(client, "put", data=b"a" * 60))["created"] is False
            usage = await call(client, "usage")
            assert usage == {
                "bytes": 100,
                "objects": 2,
                "max_bytes": 100,
                "max_objects": 2,
                "max_object_size": 60,
            }
            for obj in (a, b):  # nothing was evicted to make room
                assert await call(client, "stat", id=obj["id"]) == {
                    "id": obj["id"],
                    "size": obj["size"],
                }
            assert list((root / "tmp").iterdir()) == []
            assert await node.metric("rejected_total", reason="insufficient_storage") == 2.0


@pytest.mark.slow
async def test_a_corrupted_object_is_quarantined_and_counted(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            storage_node(tmp_path, "macronode") as (node, root),
            CommandClient.connect(node.runtime_dir, STORAGE) as client,
        ):
            data = os.urandom(100_000)
            obj = await call(client, "put", data=data[:60_000])
            good = await call(client, "put", data=data[60_000:])
            path = objstore.object_path(root, obj["id"])
            with open(path, "r+b") as f:  # noqa: ASYNC230 - a test poking the disk
                f.seek(1234)
                f.write(b"\x00" if data[1234] else b"\x01")
            with pytest.raises(objstore.IntegrityError):
                objstore.open_verified(root, obj["id"])  # the reader refuses to serve it
            assert await call(client, "quarantine", id=good["id"]) == {"quarantined": False}
            assert await call(client, "quarantine", id=obj["id"]) == {"quarantined": True}
            assert await call(client, "quarantine", id=obj["id"]) == {"quarantined": False}
            assert not path.exists()
            assert len(list((root / "quarantine").iterdir())) == 1
            assert await reason_of(client, "stat", id=obj["id"]) == (404, "not_found")
            assert await node.metric("integrity_fail_total") == 1.0
            usage = await call(client, "usage")
            assert (usage["bytes"], usage["objects"]) == (40_000, 1)
            assert '"object_quarantined"' in node.logs()
            # uploading the right bytes again heals it
            assert (await call(client, "put", data=data[:60_000]))["created"] is True
            assert await trio.to_thread.run_sync(read_back, root, obj["id"]) == data[:60_000]


@pytest.mark.slow
async def test_stale_temps_are_swept_at_start_fresh_ones_kept(tmp_path: Path) -> None:
    root = objstore.store_root(tmp_path / "data")
    objstore.ensure_layout(root)
    stale = objstore.TempObject(root, 10)
    stale.finish()
    os.utime(stale.path, (1, 1))
    fresh = objstore.TempObject(root, 10)
    fresh.finish()
    with trio.fail_after(60):
        async with storage_node(tmp_path, "macronode", tmp_max_age=600.0) as (_node, root2):
            assert root2 == root
            assert not stale.path.exists()
            assert fresh.path.exists()


@pytest.mark.slow
async def test_micronode_store_lives_in_the_runtime_dir(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            storage_node(tmp_path, "micronode") as (node, root),
            CommandClient.connect(node.runtime_dir, STORAGE) as client,
        ):
            obj = await call(client, "put", data=b"ram only")
            assert objstore.object_path(root, obj["id"]).is_file()
            assert root.is_relative_to(node.runtime_dir)
            assert os.stat(root).st_mode & 0o077 == 0
