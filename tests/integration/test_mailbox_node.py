"""svc-mailbox in a real node (real processes, HTTP on 127.0.0.1): DESIGN.md §5 and §8.

Idempotent sends, visibility timeouts with redelivery, receipts tied to one delivery (stale:
409), max_deliver into the dead-letter queue and redrive, quotas (507), the ``ronctl mail``
verbs, and a kill -9 of svc-mailbox in the middle of a burst of sends.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest
import trio

from ipc.proto import mailbox as proto
from ipc.sdk import Client, SdkError
from tests.support.mail_client import MailHttp
from tests.support.node_harness import FAST_CONFIG, Response, poll_until, start_node
from tests.support.profile_config import services_toml

pytestmark = pytest.mark.integration

MAILBOX = "svc-mailbox"


def config(**mailbox_settings: object) -> str:
    return FAST_CONFIG + "\n" + services_toml("micronode", {MAILBOX: mailbox_settings})


async def test_the_mailbox_semantics_over_http(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with start_node(tmp_path, config=config(mailbox_max_messages=8)) as node:
            mb = await MailHttp.of(node)
            # a duplicate Idempotency-Key: 200, the same id, nothing stored
            first = await trio.to_thread.run_sync(mb.send, "jobs", b"one", "k-1")
            again = await trio.to_thread.run_sync(mb.send, "jobs", b"one again", "k-1")
            assert first.status == 201 and again.status == 200
            assert again.json() == first.json()
            msg_id = first.json()["msg_id"]

            # received with a short visibility, not acked: it comes back, deliveries + 1
            (got,) = await trio.to_thread.run_sync(
                lambda: mb.receive("jobs", max=10, visibility=0.3)
            )
            assert (got["msg_id"], got["body"], got["deliveries"]) == (msg_id, b"one", 1)
            assert await trio.to_thread.run_sync(lambda: mb.receive("jobs", max=10)) == []
            again_got = await poll_until(
                lambda: trio.to_thread.run_sync(lambda: mb.receive("jobs", max=10, wait=1)),
                10,
                "the redelivery after the visibility timeout",
            )
            (redelivered,) = again_got
            assert redelivered["msg_id"] == msg_id and redelivered["deliveries"] == 2
            assert redelivered["receipt"] != got["receipt"]
            assert await node.metric("mailbox_visibility_timeout_total") == 1

            # the first delivery's receipt is stale now: 409, and nothing changes
            stale = await trio.to_thread.run_sync(mb.change, "jobs", "ack", [got["receipt"]])
            assert stale.status == 409 and stale.reason() == "stale_receipt"
            acked = await trio.to_thread.run_sync(
                mb.change, "jobs", "ack", [redelivered["receipt"]]
            )
            assert acked.status == 200 and acked.json() == {"acked": 1}
            assert await node.metric("mailbox_acked_total") == 1
            again = await trio.to_thread.run_sync(
                mb.change, "jobs", "ack", [redelivered["receipt"]]
            )
            assert again.status == 409  # an acked message never comes back, nor its receipt

            # a poison message: max_deliver (5) deliveries without an ack, then the DLQ
            poison = (await trio.to_thread.run_sync(mb.send, "jobs", b"poison")).json()["msg_id"]
            for n in range(1, 6):
                (m,) = await trio.to_thread.run_sync(lambda: mb.receive("jobs"))
                assert m["msg_id"] == poison and m["deliveries"] == n
                nacked = await trio.to_thread.run_sync(mb.change, "jobs", "nack", [m["receipt"]])
                assert nacked.json() == {"nacked": 1}
            assert await trio.to_thread.run_sync(lambda: mb.receive("jobs")) == []
            assert await node.metric("mailbox_dlq_total") == 1
            dlq = (await trio.to_thread.run_sync(mb.request, "GET", "/mb/jobs/dlq")).json()
            (dead,) = dlq["messages"]
            assert dead["msg_id"] == poison and dead["deliveries"] == 5
            redriven = await trio.to_thread.run_sync(mb.request, "POST", "/mb/jobs/dlq/redrive")
            assert redriven.json() == {"redriven": 1}
            (back,) = await trio.to_thread.run_sync(lambda: mb.receive("jobs"))
            assert back["msg_id"] == poison and back["deliveries"] == 1
            assert await node.metric("mailbox_depth", mailbox="jobs") == 1

            # extend keeps it hidden; a receipt of another mailbox is stale there
            ext = await trio.to_thread.run_sync(
                lambda: mb.change("jobs", "extend", [back["receipt"]], visibility=60)
            )
            assert ext.json() == {"extended": 1}
            other = await trio.to_thread.run_sync(mb.change, "other", "ack", [back["receipt"]])
            assert other.status == 409

            # the mailbox quota (8 here): 507, never a silent drop
            statuses = [
                (await trio.to_thread.run_sync(mb.send, "jobs", b"x%d" % n)).status
                for n in range(8)
            ]
            assert statuses == [201] * 7 + [507]

            # bad input is a 4xx that says why
            assert (await trio.to_thread.run_sync(mb.send, "no%20spaces", b"x")).status == 422
            empty = await trio.to_thread.run_sync(mb.send, "jobs", b"")
            assert empty.status == 400 and empty.reason() == "empty_body"
            big = await trio.to_thread.run_sync(mb.send, "jobs", b"x" * (1_044_481))
            assert big.status == 413 and big.reason() == "body_too_large"
            for query in ("max=0", "max=", "wait=20.5", "wait=x", "visibility=-1"):
                bad = await trio.to_thread.run_sync(mb.request, "POST", f"/mb/jobs/receive?{query}")
                assert bad.status == 422 and bad.reason() == "schema_invalid", query
            noauth = await trio.to_thread.run_sync(
                lambda: mb.request("POST", "/mb/jobs/receive", authorization="")
            )
            assert noauth.status == 401 and noauth.reason() == "cap_required"
            assert mb.token not in node.logs()


async def test_ronctl_mail_send_and_recv(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            note = tmp_path / "note.txt"
            note.write_bytes(b"hello from ronctl\n")
            sent = await node.ronctl("mail", "send", "inbox", str(note), "--key", "n1")
            assert sent.returncode == 0, sent.stderr
            twice = await node.ronctl("mail", "send", "inbox", str(note), "--key", "n1")
            assert twice.stdout == sent.stdout  # the same id: stored once
            got = await node.ronctl("mail", "recv", "inbox", "--max", "5", "--ack", "--raw")
            assert got.returncode == 0, got.stderr
            assert got.stdout == b"hello from ronctl\n"
            empty = await node.ronctl("mail", "recv", "inbox")
            assert empty.returncode == 0 and empty.stdout == b""  # acked: gone
            outbox = await node.ronctl("mail", "outbox")
            assert outbox.returncode == 0 and outbox.stdout.startswith(b"0 message(s)")
            bad = await node.ronctl("mail", "send", "bad name", str(note))
            assert bad.returncode == 1 and bad.stderr.count(b"\n") == 1
            assert b"bad_name" in bad.stderr
            # a node that is no listed peer (and no lookup finds): refused, nothing queued
            stranger = "node:" + "ab" * 32
            for to in (f"inbox@{stranger}", "inbox@node:" + "0" * 64):
                far = await node.ronctl("mail", "send", to, str(note))
                assert far.returncode == 1 and far.stderr.count(b"\n") == 1, far.stderr
                assert b"node_unknown" in far.stderr
            outbox = await node.ronctl("mail", "outbox")
            assert outbox.stdout.startswith(b"0 message(s)")


async def _burst(mb: MailHttp, sender: int, count: int, acked: dict[str, str]) -> None:
    """Send ``count`` messages, each retried with its key until the node acknowledges it."""
    for n in range(count):
        key = f"s{sender}-{n}"
        while True:
            try:
                resp = await trio.to_thread.run_sync(mb.send, "burst", key.encode(), key)
            except OSError:
                resp = None  # the gateway's answer was lost: retry with the same key
            if resp is not None and resp.status in (200, 201):
                acked[key] = resp.json()["msg_id"]
                break
            assert resp is None or resp.status in (503, 429), resp.body
            await trio.sleep(0.05)


async def test_kill_9_of_svc_mailbox_mid_burst_loses_no_acknowledged_send(
    tmp_path: Path,
) -> None:
    senders, each = 8, 40
    with trio.fail_after(120):
        async with start_node(tmp_path) as node:
            mb = await MailHttp.of(node)
            acked: dict[str, str] = {}
            async with trio.open_nursery() as nursery:
                for s in range(senders):
                    nursery.start_soon(_burst, mb, s, each, acked)
                await poll_until(lambda: len(acked) >= 60, 30, "60 acknowledged sends")
                victim = (await node.service(MAILBOX))["pid"]
                os.kill(victim, signal.SIGKILL)
                await node.wait_service(MAILBOX, state="ready", not_pid=victim)
            assert len(acked) == senders * each
            received = await _drain(mb, "burst")
            # every acknowledged send is there once: same key, same id (no duplicate either)
            assert sorted(received) == sorted(acked.values())
            assert {received[mid] for mid in received} == {k.encode() for k in acked}


async def _drain(mb: MailHttp, mailbox: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    while True:
        got = await trio.to_thread.run_sync(lambda: mb.receive(mailbox, max=256))
        if not got:
            return out
        for m in got:
            assert m["msg_id"] not in out, "a message was delivered twice without a timeout"
            out[m["msg_id"]] = m["body"]
        resp = await trio.to_thread.run_sync(mb.change, mailbox, "ack", [m["receipt"] for m in got])
        assert resp.status == 200, resp.body


async def test_the_sdk_sends_and_receives_over_the_overlay(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            version = (await node.get("/version")).json()
            addr = f"{version['node_id']}@{node.ready_line['overlay'].removeprefix('tcp://')}"
            token = await node.mint(ops=["mail"], ttl=600, prefix="app.")
            put_only = await node.mint(ops=["put"], ttl=600)

            def session() -> None:
                with Client(addr) as sdk:
                    box = sdk.mailbox("app.inbox", token)
                    sent = box.send([b"one", b"two", b"three"], keys=["k1", "k2", "k3"])
                    assert [s.created for s in sent] == [True, True, True]
                    again = box.send([b"one"], keys=["k1"])  # a retry: the same id, not stored
                    assert again[0].msg_id == sent[0].msg_id and not again[0].created
                    got = box.receive(max=10, visibility=30)
                    assert [m.body for m in got] == [b"one", b"two", b"three"]  # FIFO
                    assert [m.msg_id for m in got] == [s.msg_id for s in sent]
                    back = box.nack([got[2].receipt])
                    assert back.count == 1 and back.stale == ()
                    held = box.extend([got[1].receipt], visibility=60)
                    assert held.count == 1
                    acked = box.ack([got[0].receipt, got[1].receipt, "1.1.bogus"])
                    assert acked.count == 2 and acked.stale == ("1.1.bogus",)
                    (third,) = box.receive(max=10)
                    assert third.body == b"three" and third.deliveries == 2
                    assert box.ack([third.receipt]).count == 1
                    # a poison message: 5 deliveries, then the dead-letter queue; and back
                    (poison,) = box.send([b"poison"])
                    for _ in range(5):
                        (m,) = box.receive()
                        box.nack([m.receipt])
                    assert box.receive() == ()
                    (dead,) = box.dlq()
                    assert dead.msg_id == poison.msg_id and dead.deliveries == 5
                    assert box.redrive() == 1
                    (m,) = box.receive()
                    assert m.msg_id == poison.msg_id and m.deliveries == 1
                    assert box.ack([m.receipt]).count == 1
                    # the token's prefix is app.: another mailbox is refused, a put token too
                    for name, tok, reason in (
                        ("other", token, "cap_denied"),
                        ("app.inbox", put_only, "cap_denied"),
                        ("app.inbox", "", "cap_required"),
                    ):
                        try:
                            sdk.mailbox(name, tok).send([b"x"])
                        except SdkError as exc:
                            assert exc.reason == reason, (name, exc)
                        else:
                            raise AssertionError(f"{name} with that token was allowed")

            await trio.to_thread.run_sync(session)
            assert await node.metric("mailbox_acked_total") == 4
            assert await node.metric("mailbox_dlq_total") == 1
            assert token not in node.logs()


async def test_a_long_poll_over_the_overlay_outlasts_the_idle_timeout(tmp_path: Path) -> None:
    """The client is silent while its receive waits; the connection is not idle meanwhile."""
    overlay = {"svc-overlay": {"idle_timeout": 0.5}}
    config = FAST_CONFIG + "\n" + services_toml("micronode", overlay)
    with trio.fail_after(60):
        async with start_node(tmp_path, config=config) as node:
            version = (await node.get("/version")).json()
            addr = f"{version['node_id']}@{node.ready_line['overlay'].removeprefix('tcp://')}"
            token = await node.mint(ops=["mail"], ttl=600)

            def session() -> tuple[object, ...]:
                with Client(addr) as sdk:
                    got = sdk.mailbox("quiet", token).receive(wait=1.5)  # 3 idle timeouts
                    return got

            assert await trio.to_thread.run_sync(session) == ()
            assert await node.metric("io_timeouts_total", op="idle") == 0


async def test_a_token_client_cannot_choose_a_message_id_or_an_origin(tmp_path: Path) -> None:
    """A token holder used to send a message under an id read from /outbox: the real forward
    was then answered as a duplicate and the inbox held only the forgery."""
    from ipc.sdk import AsyncClient
    from ipc.sdk.mail import Mailbox

    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            version = (await node.get("/version")).json()
            addr = f"{version['node_id']}@{node.ready_line['overlay'].removeprefix('tcp://')}"
            token = await node.mint(ops=["mail"], ttl=600)
            x = "0" * 31 + "7"
            async with AsyncClient.connect(addr) as sdk:
                box: Mailbox = sdk.mailbox("inbox", token)
                for forged in (
                    proto.Send(mailbox="inbox", messages=(proto.Outgoing(b"FORGED", msg_id=x),)),
                    proto.Send(
                        mailbox="inbox", messages=(proto.Outgoing(b"F"),), origin=version["node_id"]
                    ),
                ):
                    with pytest.raises(SdkError) as err:
                        await box._ask(forged, timeout=5, retry_lost=False)
                    assert (err.value.reason, err.value.code) == ("schema_invalid", 422)
                assert await box.receive(max=10) == ()  # nothing was stored


async def test_the_batch_route_keeps_the_idempotency_and_receipt_rules(tmp_path: Path) -> None:
    """``POST /mb/{mailbox}/batch``: many sends (keys deduplicated as Idempotency-Keys, also
    across batches and single sends) and acks (a stale receipt acks nothing and is listed) in
    one request."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    with trio.fail_after(60):
        async with start_node(tmp_path, config=config()) as node:
            mb = await MailHttp.of(node)

            def batch(doc: dict) -> Response:
                return mb.request("POST", "/mb/jobs/batch", json.dumps(doc).encode())

            single = await trio.to_thread.run_sync(mb.send, "jobs", b"single", "k-0")
            sends = [{"body": b64(b"m%d" % i), "key": f"k-{i}"} for i in range(5)]
            sends.append({"body": b64(b"no key")})
            first = await trio.to_thread.run_sync(batch, {"send": sends})
            assert first.status == 200, first.body
            sent = first.json()["sent"]
            assert [s["created"] for s in sent] == [False, True, True, True, True, True]
            assert sent[0]["msg_id"] == single.json()["msg_id"]  # k-0 was sent alone before
            again = await trio.to_thread.run_sync(batch, {"send": sends[:5]})
            assert [s["msg_id"] for s in again.json()["sent"]] == [s["msg_id"] for s in sent[:5]]
            assert not any(s["created"] for s in again.json()["sent"])

            got = await trio.to_thread.run_sync(lambda: mb.receive("jobs", max=10))
            assert sorted(m["body"] for m in got) == sorted(
                [b"single", b"m1", b"m2", b"m3", b"m4", b"no key"]
            )
            receipts = [m["receipt"] for m in got]
            both = await trio.to_thread.run_sync(
                batch, {"send": [{"body": b64(b"next")}], "ack": receipts[:4]}
            )
            assert both.status == 200
            assert both.json()["acked"] == 4 and both.json()["stale"] == []
            assert len(both.json()["sent"]) == 1 and both.json()["sent"][0]["created"]
            stale = await trio.to_thread.run_sync(batch, {"ack": receipts[3:]})
            assert stale.json() == {"sent": [], "acked": 2, "stale": [receipts[3]]}
            assert await node.metric("mailbox_acked_total") == 6
            (left,) = await trio.to_thread.run_sync(lambda: mb.receive("jobs", max=10))
            assert left["body"] == b"next"

            for bad, reason in (
                ({}, "schema_invalid"),
                ({"send": [], "ack": ["r"]}, "schema_invalid"),
                ({"send": [{"body": "not base64!"}]}, "schema_invalid"),
                ({"send": [{"body": ""}]}, "empty_body"),
                ({"send": [{"body": b64(b"x"), "key": ""}]}, "schema_invalid"),
                ({"send": [{"body": b64(b"x"), "key": None}]}, "schema_invalid"),
                ({"ack": ["9" * 30]}, None),  # a receipt past SQLite's integers: just stale
                ({"ack": [1]}, "schema_invalid"),
                ({"send": [{"body": b64(b"x" * 600_000)}] * 2}, "body_too_large"),
            ):
                answer = await trio.to_thread.run_sync(batch, bad)
                if reason is None:
                    assert answer.status == 200 and answer.json()["stale"] == bad["ack"]
                    continue
                assert answer.reason() == reason, (bad, answer.body)
            garbled = await trio.to_thread.run_sync(
                mb.request, "POST", "/mb/jobs/batch", b"{not json"
            )
            assert garbled.status == 400 and garbled.reason() == "bad_json"
