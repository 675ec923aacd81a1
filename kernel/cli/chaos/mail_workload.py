"""The drill's mailbox workload: producers and consumers through the gateway's ``/mb`` routes.

Producers send message ``n`` with ``Idempotency-Key: chaos-<seed>-<n>`` (its body is the key).
A send whose answer never came (a timeout, a 5xx, a reset: svc-gateway or svc-mailbox was
killed) is sent again with the same key until it is acknowledged, so an applied send is never
stored twice. Consumers receive (visibility ``VISIBILITY`` s), process each message (record it),
then ack it: a consumer that acks after processing, as the issue asks.

What is checked once the node is ready again and the mailbox is drained (``drain``):

- every acknowledged send was received (``lost`` otherwise) and then acked (``unsettled``
  otherwise; an ack whose answer never came counts as acked if the message never came back);
- no message whose ack was answered 200 was delivered again (``came_back``) or acked twice;
- the deliveries beyond a message's first (``redelivered``) all follow a delivery whose ack
  was never answered 200 (lost, stale after a restart, or not sent): they are allowed and
  counted, not hidden;
- a message whose ``max_deliver`` deliveries all lost their acks is in the dead-letter queue:
  held, not lost. The drain redrives it (``dead_lettered`` counts it) so it is received and
  acked like the rest.
"""

from __future__ import annotations

import base64
import json

import attrs
import trio

from kernel.cli.chaos.http import HttpError, request

__all__ = ["MailLedger", "MailWorkload"]

MAILBOX_SERVICE = "svc-mailbox"
VISIBILITY = 3.0  # seconds a delivery stays hidden: a lost ack shows up again within the drill
BATCH = 16
TIMEOUT = 10.0
PAUSE = 0.05  # seconds before sending again after a failed answer
DLQ_POLL = 0.5  # seconds between looks at the dead-letter queue while draining


@attrs.define
class MailLedger:
    acked_sends: dict[str, str] = attrs.field(factory=dict)  # key -> msg_id
    unsure: set[str] = attrs.field(factory=set)  # keys sent, answer not seen yet
    delivered: dict[str, int] = attrs.field(factory=dict)  # msg_id -> deliveries processed
    acked: set[str] = attrs.field(factory=set)  # msg_ids whose ack answered 200
    ack_unknown: set[str] = attrs.field(factory=set)  # ack sent, no answer: maybe applied
    came_back: list[str] = attrs.field(factory=list)  # delivered again after an ack of 200
    send_failures: int = 0
    dead_lettered: int = 0  # acknowledged sends found in the DLQ while draining (redriven)
    ack_failures: int = 0  # acks not answered 200 (their messages come back: redelivered)

    @property
    def redelivered(self) -> int:
        return sum(n - 1 for n in self.delivered.values() if n > 1)

    def lost(self) -> list[str]:
        """Acknowledged sends never delivered at all: the node lost them."""
        return sorted(m for m in self.acked_sends.values() if m not in self.delivered)

    def unsettled(self) -> list[str]:
        """Delivered, but neither acked nor maybe acked: still owed a delivery and an ack."""
        return sorted(
            m
            for m in self.acked_sends.values()
            if m in self.delivered and m not in self.acked and m not in self.ack_unknown
        )


class MailWorkload:
    """Sends at ``rate`` messages/s (open loop, ``producers`` tasks) and consumes them."""

    def __init__(
        self,
        gateway: str,
        token: str | None,
        *,
        seed: int,
        rate: float,
        producers: int = 2,
        consumers: int = 2,
    ) -> None:
        self.base = f"{gateway.rstrip('/')}/mb/chaos-{seed}"
        self.auth = [("authorization", f"Bearer {token}")] if token else []
        self.seed = seed
        self.rate = rate
        self.producers = producers
        self.consumers = consumers
        self.ledger = MailLedger()
        self._next = 0
        self.sending = True
        self.settled = trio.Event()  # set once drained: every acknowledged send acked

    async def run(self) -> None:
        """Produce and consume until cancelled."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.producers):
                nursery.start_soon(self._produce)
            for _ in range(self.consumers):
                nursery.start_soon(self._consume)

    async def drain(self, timeout: float) -> bool:
        """After the storm: settle every unsure send, then consume until every acknowledged
        send was acked (True) or ``timeout`` passed (False)."""
        self.sending = False
        with trio.move_on_after(timeout):
            for key in sorted(self.ledger.unsure):
                await self._send_until_acked(key)
            async with trio.open_nursery() as nursery:
                for _ in range(self.consumers):
                    nursery.start_soon(self._consume)
                nursery.start_soon(self._redrive_dead_letters)
                if self.ledger.lost() or self.ledger.unsettled():
                    await self.settled.wait()
                nursery.cancel_scope.cancel()
            return True
        return False

    async def _redrive_dead_letters(self) -> None:
        """While draining: every ``DLQ_POLL`` s, move our acknowledged sends that were
        dead-lettered back into the mailbox, so the consumers get them once more."""
        ours = set(self.ledger.acked_sends.values())
        while True:
            await trio.sleep(DLQ_POLL)
            try:
                resp = await request(
                    "GET", f"{self.base}/dlq?max=100", headers=self.auth, timeout=TIMEOUT
                )
                if resp.status != 200:
                    continue
                dead = {m["msg_id"] for m in json.loads(resp.body)["messages"]} & ours
                if not dead:
                    continue
                redriven = await request(
                    "POST", f"{self.base}/dlq/redrive", headers=self.auth, timeout=TIMEOUT
                )
            except (HttpError, ValueError, KeyError, TypeError):
                continue
            if redriven.status == 200:
                self.ledger.dead_lettered += len(dead)

    async def _send_until_acked(self, key: str, *, while_sending: bool = False) -> None:
        while True:
            if await self._send(key) or (while_sending and not self.sending):
                return
            await trio.sleep(PAUSE)

    async def _produce(self) -> None:
        period = self.producers / self.rate
        while self.sending:
            n, self._next = self._next, self._next + 1
            key = f"chaos-{self.seed}-{n}"
            self.ledger.unsure.add(key)
            await self._send_until_acked(key, while_sending=True)
            await trio.sleep(period)

    async def _send(self, key: str) -> bool:
        """One send of ``key``; True once acknowledged (its msg_id is in the ledger)."""
        headers = [("idempotency-key", key), *self.auth]
        try:
            resp = await request(
                "POST", self.base, body=key.encode(), headers=headers, timeout=TIMEOUT
            )
        except HttpError:
            self.ledger.send_failures += 1
            return False
        if resp.status not in (200, 201):
            self.ledger.send_failures += 1
            return False
        self.ledger.acked_sends[key] = json.loads(resp.body)["msg_id"]
        self.ledger.unsure.discard(key)
        return True

    async def _consume(self) -> None:
        while True:
            url = f"{self.base}/receive?max={BATCH}&visibility={VISIBILITY:g}&wait=1"
            try:
                resp = await request("POST", url, headers=self.auth, timeout=TIMEOUT)
            except HttpError:
                await trio.sleep(PAUSE)
                continue
            if resp.status != 200:
                await trio.sleep(PAUSE)
                continue
            messages = json.loads(resp.body)["messages"]
            for m in messages:  # processed before the ack
                msg_id = m["msg_id"]
                if msg_id in self.ledger.acked:
                    self.ledger.came_back.append(msg_id)
                self.ledger.delivered[msg_id] = self.ledger.delivered.get(msg_id, 0) + 1
                base64.b64decode(m["body"])
            if messages:
                await self._ack(messages)
            if not self.sending and not (self.ledger.lost() or self.ledger.unsettled()):
                self.settled.set()

    async def _ack(self, messages: list[dict[str, str]]) -> None:
        """One ack per message, so each answer says exactly what it did: 200 acked; 409 stale
        (its visibility ended, or the delivery was lost in a restart: it comes back); no
        answer: unknown (applied or not: if not, it comes back and is acked then)."""
        headers = [("content-type", "application/json"), *self.auth]
        for m in messages:
            body = json.dumps({"receipts": [m["receipt"]]}).encode()
            msg_id = m["msg_id"]
            # unknown until answered: if we are cancelled with the ack on the wire (the storm
            # ended), the node may have applied it, and then the message never comes back
            self.ledger.ack_unknown.add(msg_id)
            try:
                resp = await request(
                    "POST", f"{self.base}/ack", body=body, headers=headers, timeout=TIMEOUT
                )
            except HttpError:
                self.ledger.ack_failures += 1
                self.ledger.ack_unknown.add(msg_id)
                continue
            if resp.status == 200:
                if msg_id in self.ledger.acked:
                    self.ledger.came_back.append(msg_id)  # acked twice
                self.ledger.acked.add(msg_id)
                self.ledger.ack_unknown.discard(msg_id)
            elif resp.status == 409:  # not applied: the message comes back
                self.ledger.ack_failures += 1
                self.ledger.ack_unknown.discard(msg_id)
            else:  # a 5xx: the mailbox may have applied it before it went down
                self.ledger.ack_failures += 1
                self.ledger.ack_unknown.add(msg_id)
