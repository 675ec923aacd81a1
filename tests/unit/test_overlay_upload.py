"""Uploads over the overlay (``put``), in one process on real TLS sockets: the write token is
checked before a byte is stored, the bytes must be their id, and the object is committed."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from ipc import caps, ids, oap
from ipc.proto import passport as proto
from ipc.proto import storage
from ipc.sdk import AsyncClient, SdkError
from ipc.sdk.client import upload_frames
from ipc.transport import PeerAddr, dial
from ipc.transport.client import PeerClient
from services.lib import objstore
from services.lib.tokens import TokenGate
from tests.unit.test_overlay_serve import serving

KEY = secrets.token_bytes(32)


def gate_for(node_id: str) -> TokenGate:
    gate = TokenGate()
    gate.set_keys(proto.KeySet(version=1, node_id=node_id, keys={"k1": KEY}))
    return gate


def token(node_id: str, *extra: caps.Caveat) -> str:
    base = [caps.Expires(int(time.time() + 60)), caps.Ops(("put",)), caps.Audience(node_id)]
    return caps.mint(KEY, "k1", [*base, *extra]).encode()


class Committer:
    """svc-storage's commit, for the test: install the verified temp file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls = 0

    async def __call__(self, req: storage.Commit) -> storage.Stored:
        self.calls += 1
        created = await trio.to_thread.run_sync(objstore.install, self.root, req.tmp, req.id)
        return storage.Stored(id=req.id, size=req.size, created=created)


async def uploading(tmp_path: Path, client_case: Any) -> None:
    async with serving(tmp_path) as node:
        assert node.server is not None
        node.server.gate = gate_for(node.cert.node_id)
        node.server.commit = committer = Committer(node.root)
        await client_case(node, committer)


async def test_a_put_needs_a_token_that_allows_it_and_nothing_is_stored_before(
    tmp_path: Path,
) -> None:
    data = os.urandom(200_000)
    obj_id = ids.id_of(data)

    async def case(node: Any, committer: Committer) -> None:
        async with AsyncClient.connect(node.addr) as client:
            with pytest.raises(SdkError) as err:
                await client.put(data, "")
            assert (err.value.reason, err.value.code) == ("cap_required", 401)
            small = token(node.cert.node_id, caps.MaxSize(1000))
            with pytest.raises(SdkError) as err:
                await client.put(data, small)
            assert (err.value.reason, err.value.code) == ("cap_denied", 403)
            with pytest.raises(SdkError) as err:
                await client.put(data, token(node.cert.node_id)[:-3] + "AAA")
            assert (err.value.reason, err.value.code) == ("cap_invalid", 403)
            assert committer.calls == 0 and not objstore.object_path(node.root, obj_id).exists()
            assert not list((node.root / "tmp").iterdir())  # no temp file either
            good = token(node.cert.node_id)
            stored = await client.put(data, good)
            assert (stored.id, stored.size, stored.created) == (obj_id, len(data), True)
            assert (await client.put(data, good)).created is False  # idempotent
            assert await client.get(obj_id) == data  # and served, verified

    with trio.fail_after(20):
        await uploading(tmp_path, case)


async def test_bytes_that_are_not_their_claimed_id_are_refused(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    claimed = ids.id_of(b"something else" + data[14:])

    async def case(node: Any, committer: Committer) -> None:
        async with trio.open_nursery() as nursery:
            conn = await dial(PeerAddr.parse(node.addr), None, nursery)
            client = PeerClient(conn)
            await nursery.start(client.run)
            first, rest = upload_frames(claimed, data, token(node.cert.node_id))
            answer = await client.upload(first, rest, timeout=10)
            with pytest.raises(oap.OapError) as err:
                oap.raise_for_status(answer)
            assert err.value.reason == "digest_mismatch"
            assert committer.calls == 0
            assert not list((node.root / "tmp").iterdir())
            # the connection goes on: a HELLO still answers
            hello = await client.request(oap.hello_request(0), timeout=5)
            assert hello.code == 200
            await conn.channel.aclose()

    with trio.fail_after(20):
        await uploading(tmp_path, case)


async def test_refused_uploads_that_never_end_do_not_use_up_the_connection(
    tmp_path: Path,
) -> None:
    """A client may stop sending once it sees the refusal (the SDK does), so a refused upload's
    END may never come; it must not hold one of the connection's upload slots."""
    data = os.urandom(100_000)
    obj_id = ids.id_of(data)

    async def case(node: Any, committer: Committer) -> None:
        assert node.server is not None
        async with trio.open_nursery() as nursery:
            conn = await dial(PeerAddr.parse(node.addr), None, nursery)
            client = PeerClient(conn)
            await nursery.start(client.run)
            refused, _rest = upload_frames(obj_id, data, "")  # no token: 401 at once
            for _ in range(node.server.inflight + 1):
                answer = await client.upload(refused, [], timeout=10)  # START only, no END
                assert answer.code == 401
            first, rest = upload_frames(obj_id, data, token(node.cert.node_id))
            stored = await client.upload(first, rest, timeout=10)
            oap.raise_for_status(stored)
            assert committer.calls == 1
            await conn.channel.aclose()

    with trio.fail_after(20):
        await uploading(tmp_path, case)
