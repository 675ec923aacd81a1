"""Mailboxes through the SDK: the same operations as the gateway's ``/mb`` routes, over OAP/1.

    box = node.mailbox("inbox", token)           # node: an AsyncClient
    sent = await box.send([b"hello", b"world"])  # durable on the node when it returns
    for m in await box.receive(max=32, visibility=30, wait=5):
        handle(m.body)
        await box.ack([m.receipt])

Guarantees: a batch send is one request (one transaction on the node) and each message gets
an Idempotency-Key (the caller's, or a random one), so the SDK's own retries never store a
message twice; a receive is never retried once sent (its messages would be hidden from
everyone for the visibility timeout); ``ack`` / ``nack`` / ``extend`` return the stale
receipts instead of raising, so a batch says exactly which took effect.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import attrs

from ipc import oap
from ipc.proto import mailbox as proto
from ipc.proto.codec import Request
from ipc.sdk.errors import SdkError
from ipc.transport.client import PeerClient


class _Node(Protocol):
    """What a mailbox needs of its client (``AsyncClient``): its timeout and its retry loop."""

    timeout: float

    async def _retrying(
        self, op: Callable[[PeerClient], Awaitable[T]], *, retry_lost: bool = True
    ) -> T: ...


__all__ = ["Mailbox"]

R = TypeVar("R")
T = TypeVar("T")


class Mailbox:
    """One mailbox on one node, used with one token. Make it with ``AsyncClient.mailbox``."""

    def __init__(self, client: _Node, name: str, token: str) -> None:
        try:
            proto.split_address(name)  # bad_name at once, before anything is sent
        except oap.OapError as exc:
            raise SdkError.of(exc) from None
        self.client = client
        self.name = name
        self._cap = token.encode("ascii")

    async def _ask(self, request: Request[R], *, timeout: float, retry_lost: bool) -> R:
        async def op(link: PeerClient) -> R:
            frame = attrs.evolve(proto.PROTOCOL.request_frame(request), cap=self._cap)
            answer = await link.request(frame, timeout=timeout)
            return proto.PROTOCOL.parse_reply(answer, request)

        result: R = await self.client._retrying(op, retry_lost=retry_lost)
        return result

    async def send(
        self, bodies: Sequence[bytes], *, keys: Sequence[str] | None = None
    ) -> tuple[proto.SentOne, ...]:
        """Send ``bodies`` in order (at most ``MAX_BATCH``); ``keys``: their Idempotency-Keys
        (a repeat within the dedup window answers the first id, ``created`` False)."""
        if keys is not None and len(keys) != len(bodies):
            raise ValueError("keys must match bodies one to one")
        chosen = keys if keys is not None else _keys(len(bodies))
        request = proto.Send(
            mailbox=self.name,
            messages=tuple(
                proto.Outgoing(body=b, key=k) for b, k in zip(bodies, chosen, strict=True)
            ),
        )
        sent = await self._ask(request, timeout=self.client.timeout, retry_lost=True)
        return sent.results

    async def receive(
        self, *, max: int = 1, visibility: float | None = None, wait: float = 0.0
    ) -> tuple[proto.Delivery, ...]:
        request = proto.Receive(mailbox=self.name, max=max, visibility=visibility, wait=wait)
        got = await self._ask(request, timeout=self.client.timeout + wait, retry_lost=False)
        return got.messages

    async def ack(self, receipts: Sequence[str]) -> proto.Changed:
        return await self._change(proto.Ack(mailbox=self.name, receipts=tuple(receipts)))

    async def nack(self, receipts: Sequence[str], *, delay: float = 0.0) -> proto.Changed:
        return await self._change(
            proto.Nack(mailbox=self.name, receipts=tuple(receipts), delay=delay)
        )

    async def extend(self, receipts: Sequence[str], *, visibility: float) -> proto.Changed:
        return await self._change(
            proto.Extend(mailbox=self.name, receipts=tuple(receipts), visibility=visibility)
        )

    async def _change(self, request: proto.Ack | proto.Nack | proto.Extend) -> proto.Changed:
        changed: proto.Changed = await self._ask(
            request, timeout=self.client.timeout, retry_lost=True
        )
        return changed

    async def dlq(self, *, max: int = 100) -> tuple[proto.DeadLetter, ...]:
        """The mailbox's oldest dead letters (delivered ``max_deliver`` times, never acked)."""
        dead = await self._ask(
            proto.Dlq(mailbox=self.name, max=max), timeout=self.client.timeout, retry_lost=True
        )
        return dead.messages

    async def redrive(self, *, max: int = proto.MAX_BATCH) -> int:
        """Move dead letters back to the mailbox's tail; how many moved."""
        moved = await self._ask(
            proto.Redrive(mailbox=self.name, max=max), timeout=self.client.timeout, retry_lost=False
        )
        return moved.count

    async def receipt(self, msg_id: str) -> proto.DeliveryState:
        """Where a message sent from this node is (``queued``, ``delivered``, ...)."""
        return await self._ask(
            proto.Receipt(msg_id=msg_id), timeout=self.client.timeout, retry_lost=True
        )


def _keys(n: int) -> list[str]:
    """Fresh Idempotency-Keys: time first (the node's dedup index then grows at its end, about
    twice as cheap as random keys), then 64 random bits and the place in the batch."""
    head = f"{time.time_ns():016x}{secrets.token_hex(8)}"
    return [f"{head}{i:03x}" for i in range(n)]
