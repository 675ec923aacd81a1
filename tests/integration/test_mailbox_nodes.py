"""A mailbox on another node (real processes, TLS on 127.0.0.1): through the outbox, once.

Node A sends to ``inbox@<B's id>``; A's outbox forwards through its overlay to B, which accepts
the message from A (a configured peer, pinned by TLS) durably; B delivers it once; A's delivery
receipt says ``delivered``. While B is down, the message waits in A's outbox (``ronctl mail
outbox``, ``mailbox_outbox_depth``) and arrives once when B is back (B keeps its identity: a
macronode, its keys on disk).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.support.mail_client import MailHttp
from tests.support.node_harness import FAST_CONFIG, RunningNode, poll_until, start_node
from tests.support.profile_config import services_toml

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_peers(config: str, peers: list[str]) -> str:
    return config.replace("[overlay]\n", f"[overlay]\npeers = {json.dumps(peers)}\n")


@asynccontextmanager
async def node_b(
    tmp_path: Path, run: int, port: int, peers: list[str]
) -> AsyncIterator[RunningNode]:
    """B: a macronode on a fixed overlay port, its data (and identity) in ``tmp_path/b-data``."""
    where = tmp_path / f"b-run-{run}"
    where.mkdir()
    data = tmp_path / "b-data"
    data.mkdir(mode=0o700, exist_ok=True)
    args = ["--overlay-addr", f"127.0.0.1:{port}", "--data-dir", str(data)]
    async with start_node(
        where, "macronode", config=with_peers(FAST_CONFIG, peers), extra_args=args
    ) as b:
        yield b


async def node_id(n: RunningNode) -> str:
    return str((await n.get("/version")).json()["node_id"])


async def receive_all(mb: MailHttp, mailbox: str, want: int) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []

    async def more() -> bool:
        got.extend(await trio.to_thread.run_sync(lambda: mb.receive(mailbox, max=10, wait=1)))
        return len(got) >= want

    await poll_until(more, 30, f"{want} message(s) in {mailbox}")
    return got


async def test_a_message_to_another_node_arrives_once_also_across_its_downtime(
    tmp_path: Path,
) -> None:
    port = free_port()
    with trio.fail_after(150):
        async with node_b(tmp_path, 0, port, []) as first_b:
            b_id = await node_id(first_b)
        a_config = with_peers(FAST_CONFIG, [f"{b_id}@127.0.0.1:{port}"]) + services_toml(
            "micronode", {"svc-mailbox": {"retry_base": 0.1, "retry_max": 0.5}}
        )
        (tmp_path / "a").mkdir()
        async with start_node(tmp_path / "a", config=a_config) as a:
            a_id = await node_id(a)
            a_addr = f"{a_id}@{a.ready_line['overlay'].removeprefix('tcp://')}"
            to = f"inbox@{b_id}"
            mail_a = await MailHttp.of(a)

            async def receipt(msg_id: str) -> str:
                resp = await trio.to_thread.run_sync(
                    mail_a.request, "GET", f"/mb/{to}/receipt/{msg_id}"
                )
                assert resp.status == 200, resp.body
                return str(resp.json()["state"])

            async with node_b(tmp_path, 1, port, [a_addr]) as b:
                assert await node_id(b) == b_id  # the same node, back with its keys
                sent = await trio.to_thread.run_sync(mail_a.send, to, b"across", "x-1")
                assert sent.status == 201, sent.body
                m1 = sent.json()["msg_id"]
                mail_b = await MailHttp.of(b)
                (got,) = await receive_all(mail_b, "inbox", 1)
                assert (got["msg_id"], got["body"]) == (m1, b"across")
                await poll_until(lambda: _is(receipt(m1), "delivered"), 10, "m1 delivered")
                acked = await trio.to_thread.run_sync(
                    mail_b.change, "inbox", "ack", [str(got["receipt"])]
                )
                assert acked.status == 200

            # B is down: the message waits in A's outbox, counted and listed
            sent = await trio.to_thread.run_sync(mail_a.send, to, b"while down", "x-2")
            assert sent.status == 201
            m2 = sent.json()["msg_id"]
            assert await receipt(m2) == "queued"
            await poll_until(lambda: _metric_is(a, "mailbox_outbox_depth", 1), 10, "outbox depth 1")
            listed = await a.ronctl("mail", "outbox", "--json")
            assert listed.returncode == 0, listed.stderr
            doc = json.loads(listed.stdout)
            assert doc["depth"] == 1 and doc["entries"][0]["to"] == to
            assert "msg_id" not in doc["entries"][0]  # no ids a stranger could reuse
            await poll_until(
                lambda: _attempted(a), 10, "a failed forward to be recorded in the outbox"
            )

            async with node_b(tmp_path, 2, port, [a_addr]) as b:
                mail_b = await MailHttp.of(b)
                (got,) = await receive_all(mail_b, "inbox", 1)
                assert (got["msg_id"], got["body"]) == (m2, b"while down")
                await poll_until(lambda: _is(receipt(m2), "delivered"), 10, "delivered")
                await poll_until(
                    lambda: _metric_is(a, "mailbox_outbox_depth", 0), 10, "outbox empty"
                )
                # once: nothing else arrives (the first message was acked; no retry duplicated)
                late = await trio.to_thread.run_sync(
                    lambda: mail_b.receive("inbox", max=10, wait=1, visibility=60)
                )
                assert late == []
                assert await b.metric("mailbox_sent_total") == 1  # this run of B stored one


async def _is(state: object, want: str) -> bool:
    return await state == want  # type: ignore[misc]


async def _metric_is(n: RunningNode, name: str, value: float) -> bool:
    return await n.metric(name) == value


async def _attempted(a: RunningNode) -> bool:
    listed = await a.ronctl("mail", "outbox", "--json")
    entries = json.loads(listed.stdout)["entries"]
    return bool(entries) and entries[0]["attempts"] >= 1 and bool(entries[0]["last_error"])
