"""The PQ hybrid layer: the fixed vectors of ``specs/pq_handshake_cases.json`` (key derivation,
sealing), nonce discipline, and every negotiation case against a real listener over TLS."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from ipc import oap
from ipc.proto import overlay
from ipc.sdk import AsyncClient, SdkError
from ipc.transport import DialError, PeerAddr, dial, pq
from ipc.transport.client import PeerClient
from ipc.transport.pq_exchange import dialer_exchange
from services.overlay.serve import PeerServer
from tests.unit.test_overlay_serve import serving, store_object

CASES = json.loads(
    (Path(__file__).resolve().parents[2] / "specs" / "pq_handshake_cases.json").read_text()
)

pytestmark = pytest.mark.skipif(not pq.available(), reason="this cryptography has no ML-KEM-768")


@pytest.mark.parametrize("case", CASES["kdf"], ids=lambda c: c["name"])
def test_key_derivation_vectors(case: dict[str, Any]) -> None:
    to_listener, to_dialer = pq.derive_keys(
        bytes.fromhex(case["secret"]), case["dialer"], case["listener"]
    )
    assert (to_listener.hex(), to_dialer.hex()) == (case["to_listener"], case["to_dialer"])
    assert to_listener != to_dialer  # one key per direction


@pytest.mark.parametrize("case", CASES["seal"], ids=lambda c: c["name"])
def test_sealing_vectors_and_opening(case: dict[str, Any]) -> None:
    key, plain = bytes.fromhex(case["key"]), bytes.fromhex(case["plaintext"])
    sealer = pq.Sealer(key, counter=case["counter"])
    sealed = sealer.seal(plain, case["app_proto_id"], case["corr_id"])
    assert sealed.hex() == case["sealed"]
    opener = pq.Opener(key, counter=case["counter"])
    assert opener.open(sealed, case["app_proto_id"], case["corr_id"]) == plain


def test_a_nonce_is_never_reused_and_tampering_or_reordering_fails() -> None:
    key = os.urandom(32)
    sealer, opener = pq.Sealer(key), pq.Opener(key)
    first, second = sealer.seal(b"same", 1, 1), sealer.seal(b"same", 1, 1)
    assert first != second  # the counter moved: another nonce
    with pytest.raises(pq.PqError):
        opener.open(second, 1, 1)  # out of order
    assert opener.open(first, 1, 1) == b"same"
    tampered = bytearray(second)
    tampered[0] ^= 1
    with pytest.raises(pq.PqError):
        opener.open(bytes(tampered), 1, 1)
    with pytest.raises(pq.PqError):
        opener.open(second, 1, 2)  # moved to another frame (corr_id in the AAD)
    worn = pq.Sealer(key, counter=(1 << 64))
    with pytest.raises(pq.PqError, match="2\\^64"):
        worn.seal(b"x", 1, 1)


def test_the_ml_kem_exchange_agrees() -> None:
    key, ek = pq.new_keypair()
    secret, ct = pq.encapsulate(ek)
    assert pq.decapsulate(key, ct) == secret and len(secret) == 32
    with pytest.raises(pq.PqError):
        pq.encapsulate(b"short")


class _Downgrader(PeerServer):
    """A listener that claims PQ but sends no ciphertext (a downgrade attempt)."""

    async def _pq(self, conn: Any, frame: oap.Frame, request: overlay.Pq) -> None:
        await conn.channel.send(overlay.PEER.reply_frame(frame, overlay.PqReply(mode="hybrid")))


def listener(tmp_path: Path, mode: str) -> Any:
    """A real listener in ``mode``; ``downgrade``: one that claims PQ and sends no ciphertext."""
    if mode == "downgrade":
        return serving(tmp_path, 4, pq_mode="hybrid", server_cls=_Downgrader)
    return serving(tmp_path, 4, pq_mode=mode)


@pytest.mark.parametrize("case", CASES["negotiation"], ids=lambda c: c["name"])
async def test_negotiation_cases(tmp_path: Path, case: dict[str, Any]) -> None:
    data = os.urandom(150_000)
    with trio.fail_after(20):
        async with listener(tmp_path, case["listener"]) as node:
            obj_id = store_object(node.root, data)
            if case["outcome"] == "refused":
                with pytest.raises(DialError) as err:
                    async with AsyncClient.connect(node.addr, pq_mode=case["dialer"]):
                        pass
                assert err.value.result == "pq_refused"
                return
            async with AsyncClient.connect(node.addr, pq_mode=case["dialer"]) as client:
                assert client.pq == case["outcome"]
                if "request_error" in case:
                    with pytest.raises(SdkError) as refused:
                        await client.get(obj_id)
                    assert refused.value.reason == case["request_error"]
                    assert refused.value.code == 403
                    return
                assert await client.get(obj_id) == data


async def test_sealed_object_payloads_travel_as_app_e2e(tmp_path: Path) -> None:
    """On a PQ connection every DATA frame arrives flagged APP_E2E (and opened: its tag held)."""
    data = os.urandom(200_000)
    with trio.fail_after(20):
        async with listener(tmp_path, "hybrid") as node, trio.open_nursery() as nursery:
            obj_id = store_object(node.root, data)
            conn = await dial(PeerAddr.parse(node.addr), None, nursery)
            client = PeerClient(conn)
            await nursery.start(client.run)
            listener_id = node.cert.node_id
            outcome = await dialer_exchange(
                client, "hybrid", dialer=None, listener=listener_id, timeout=5
            )
            assert outcome == "pq" and conn.channel.sealed
            flags, got = [], b""
            async with client.exchange(
                overlay.PEER.request_frame(overlay.Get(id=obj_id))
            ) as answers:
                while True:
                    frame = await answers.receive()
                    flags.append(frame.flags)
                    if frame.flags & oap.END:
                        break
                    if not frame.flags & oap.START:
                        got += oap.unpack_payload(oap.Data, frame.payload).data
            assert got == data
            data_flags = flags[1:-1]
            assert data_flags and all(f & oap.APP_E2E for f in data_flags)
            assert not flags[0] & oap.APP_E2E  # START and END carry no object bytes
            await conn.channel.aclose()
