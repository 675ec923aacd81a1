"""svc-overlay's peer server and the SDK, in one process on real TLS sockets (127.0.0.1): objects
stream verified, a corrupt object is never sent, a frame over 1 MiB is 413 and a close, too many
requests on one connection are ``busy``, a lost connection stops its streams."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ipc import ids, oap
from ipc.proto import index, overlay
from ipc.sdk import AsyncClient, Client, SdkError
from ipc.transport import ChannelClosed, Listener, NodeCertificate, PeerAddr, dial
from services.lib import objstore
from services.overlay.serve import PeerServer

HELLO = oap.HelloResponse(
    max_frame=oap.MAX_FRAME, max_inflight=2, features=("objects",), transports=("tls",)
)


def store_object(root: Path, data: bytes) -> str:
    objstore.ensure_layout(root)
    obj_id = ids.id_of(data)
    path = objstore.object_path(root, obj_id)
    path.write_bytes(data)
    return obj_id


class Node:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cert = NodeCertificate.from_identity(Ed25519PrivateKey.generate())
        self.quarantined: list[str] = []
        self.streams_open = 0
        self.addr = ""
        self.server: PeerServer | None = None

    async def resolve(self, req: Any) -> index.NameRecord:
        if req.name == "docs/readme":
            return index.NameRecord(name=req.name, id="b3:" + "1" * 64, version=3)
        raise oap.OapError("not_found", f"no name {req.name}")

    async def quarantine(self, obj_id: str) -> None:
        self.quarantined.append(obj_id)


@asynccontextmanager
async def serving(
    tmp_path: Path,
    inflight: int = 2,
    *,
    pq_mode: str = "off",
    server_cls: type[PeerServer] = PeerServer,
) -> AsyncIterator[Node]:
    """A ``PeerServer`` (or a subclass) over a fresh store, on a real TLS listener."""
    node = Node(tmp_path / "objects")
    objstore.ensure_layout(node.root)
    server = server_cls(
        node.root,
        HELLO,
        resolve=node.resolve,
        quarantine=node.quarantine,
        inflight=inflight,
        node_id=node.cert.node_id,
        pq_mode=pq_mode,
    )
    node.server = server
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    node.addr = f"{node.cert.node_id}@127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(Listener(sock, node.cert, server).serve)
            yield node
            nursery.cancel_scope.cancel()
    finally:
        sock.close()


async def test_hello_get_and_resolve_through_the_sdk(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with serving(tmp_path) as node:
            data = os.urandom(200_000)
            obj_id = store_object(node.root, data)
            async with AsyncClient.connect(node.addr) as client:
                assert (await client.hello()).features == ("objects",)
                assert await client.get(obj_id) == data
                small = store_object(node.root, b"tiny")
                assert await client.get(small) == b"tiny"
                assert (await client.resolve("docs/readme")).version == 3
                assert await client.get(obj_id, corr_id=777_000_111) == data  # the caller's id
                frame = overlay.PEER.request_frame(overlay.Get(id=small), corr_id=424242)
                assert client._client is not None
                async with client._client.exchange(frame) as answers:
                    assert (await answers.receive()).corr_id == 424242  # came back: propagated
                with pytest.raises(SdkError) as err:
                    await client.get("b3:" + "2" * 64)
                assert err.value.reason == "not_found" and err.value.code == 404
                with pytest.raises(SdkError) as err:
                    await client.get(obj_id, max_size=1000)
                assert err.value.reason == "too_large"


def test_the_blocking_client_from_plain_code(tmp_path: Path) -> None:
    """The blocking wrapper, driven from a thread that is not in trio (as an app would)."""
    result: dict[str, Any] = {}
    data = os.urandom(70_000)

    async def host() -> None:
        async with serving(tmp_path) as node:
            obj_id = store_object(node.root, data)

            def app() -> None:
                with Client(node.addr) as client:
                    result["data"] = client.get(obj_id)
                    chunks: list[bytes] = []
                    result["size"] = client.get_to(obj_id, chunks.append)
                    result["joined"] = b"".join(chunks)

            await trio.to_thread.run_sync(app)

    trio.run(host)
    assert result == {"data": data, "size": len(data), "joined": data}


async def test_a_corrupt_object_is_never_sent_and_is_reported(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with serving(tmp_path) as node:
            data = os.urandom(100_000)
            obj_id = store_object(node.root, data)
            path = objstore.object_path(node.root, obj_id)
            path.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # one bit flipped on disk
            async with AsyncClient.connect(node.addr) as client:
                received: list[bytes] = []
                with pytest.raises(SdkError) as err:
                    await client.get_to(obj_id, received.append)
                assert err.value.reason == "integrity_failure"
                assert received == []  # not one byte of it
            assert node.quarantined == [obj_id]


async def test_a_frame_over_max_frame_is_413_and_the_connection_closes(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with serving(tmp_path) as node, trio.open_nursery() as nursery:
            conn = await dial(PeerAddr.parse(node.addr), None, nursery)
            # a header announcing 2 MiB: refused from its length field, nothing allocated
            await conn.channel.stream.send_all(struct.pack(">I", 2 << 20) + b"\x01" * 33)
            answer = await conn.channel.receive()
            with pytest.raises(oap.OapError) as err:
                oap.raise_for_status(answer)
            assert err.value.code == 413 and err.value.reason == "frame_too_large"
            with pytest.raises(ChannelClosed):
                await conn.channel.receive()


async def test_requests_past_the_per_connection_cap_are_busy(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with serving(tmp_path, inflight=1) as node, trio.open_nursery() as nursery:
            obj_id = store_object(node.root, os.urandom(1 << 20))
            conn = await dial(PeerAddr.parse(node.addr), None, nursery)
            get = oap.Frame(
                flags=oap.REQ,
                app_proto_id=0x0201,
                corr_id=1,
                payload=b"\x82\xa2op\xa3get\xa2id\xd9C" + obj_id.encode(),
            )
            await conn.channel.send(get)
            await conn.channel.send(
                oap.Frame(flags=oap.REQ, app_proto_id=0x0201, corr_id=2, payload=get.payload)
            )
            busy = None
            while busy is None:  # the first stream's frames, then (or among them) the refusal
                frame = await conn.channel.receive()
                if frame.corr_id == 2:
                    busy = frame
            with pytest.raises(oap.OapError) as err:
                oap.raise_for_status(busy)
            assert err.value.reason == "busy" and err.value.retry_after == 1
            await conn.channel.aclose()


async def test_a_connection_lost_mid_stream_stops_its_stream(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with serving(tmp_path) as node, trio.open_nursery() as nursery:
            obj_id = store_object(node.root, os.urandom(8 << 20))
            conn = await dial(PeerAddr.parse(node.addr), None, nursery)
            payload = b"\x82\xa2op\xa3get\xa2id\xd9C" + obj_id.encode()
            await conn.channel.send(oap.Frame(flags=oap.REQ, app_proto_id=0x0201, payload=payload))
            assert (await conn.channel.receive()).flags & oap.START
            await conn.channel.receive()  # one DATA chunk, then we vanish
            assert node.server is not None and node.server.streams == 1
            await conn.channel.aclose()
            while node.server.streams:  # the server's stream task ends with the connection
                await trio.sleep(0.005)
