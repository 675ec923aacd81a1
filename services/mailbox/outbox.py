"""The outbox's forwarder: messages for mailboxes on other nodes, sent until one accepts them.

Guarantees:

- an entry leaves the outbox only when the remote node answered its send, which it does only
  after the message is durable there (``delivered``), or refused it for good (``rejected``: a
  4xx that no retry can change, such as ``bad_name`` or ``too_large``); both are kept in the
  ``sent`` table, the delivery receipt the sender reads (``Receipt``);
- a retry never duplicates: the remote node deduplicates by message id for the whole retention;
- a node that does not answer is retried with jittered exponential backoff (``retry_base`` up to
  ``retry_max`` seconds, times 0.5-1.0 at random, so a fleet coming back is not hit at once),
  and its entries wait in the outbox meanwhile (``mailbox_outbox_depth``, ``ronctl mail
  outbox``);
- at most ``CONCURRENCY`` destinations are served at once, ``MAX_BATCH`` messages per send.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import trio

from ipc import oap
from ipc.proto import mailbox as proto
from kernel import logs
from services.mailbox.box import Mailboxes

__all__ = ["CONCURRENCY", "Deliver", "Forwarder", "backoff"]

Deliver = Callable[[str, proto.Send], Awaitable[proto.Sent]]
"""Send a request to the node ``node_id`` (svc-overlay's ``deliver``): its reply, else
``OapError``."""

CONCURRENCY = 4
IDLE = 5.0  # seconds between looks at an outbox with nothing due and no wake-up
_RETRYABLE_4XX = frozenset({401, 403, 408, 429})  # may change: tokens, federation, pressure


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before try ``attempts + 1``: ``base * 2**(attempts - 1)``, capped, jittered."""
    raw = min(cap, base * (2 ** max(0, min(attempts - 1, 30))))
    return raw * random.uniform(0.5, 1.0)


class Forwarder:
    def __init__(
        self,
        box: Mailboxes,
        deliver: Deliver,
        *,
        retry_base: float,
        retry_max: float,
    ) -> None:
        self.box = box
        self.deliver = deliver
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.limiter = trio.CapacityLimiter(CONCURRENCY)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            wake = self.box.outbox_wake  # taken before the look: an entry added after sets it
            due, next_try = await self.box.outbox_due(proto.MAX_BATCH * CONCURRENCY)
            if not due:
                pause = IDLE if next_try is None else max(0.0, next_try - self.box.clock())
                with trio.move_on_after(min(pause, IDLE)):
                    await wake.wait()
                continue
            groups: dict[str, list[tuple[str, bytes, int]]] = {}
            for msg_id, dest, body, attempts in due:
                groups.setdefault(dest, []).append((msg_id, body, attempts))
            async with trio.open_nursery() as nursery:
                for dest, entries in groups.items():
                    for at in range(0, len(entries), proto.MAX_BATCH):
                        nursery.start_soon(self._forward, dest, entries[at : at + proto.MAX_BATCH])

    async def _forward(self, dest: str, entries: list[tuple[str, bytes, int]]) -> None:
        name, node_id = proto.split_address(dest)
        assert node_id is not None, "only remote addresses reach the outbox"
        request = proto.Send(
            mailbox=name,
            messages=tuple(proto.Outgoing(body=body, msg_id=msg_id) for msg_id, body, _ in entries),
        )
        ids = [msg_id for msg_id, _, _ in entries]
        async with self.limiter:
            try:
                await self.deliver(node_id, request)
            except oap.OapError as exc:
                if 400 <= exc.code < 500 and exc.code not in _RETRYABLE_4XX:
                    logs.log(
                        "outbox_rejected", level="warning", to=dest, reason=exc.reason, n=len(ids)
                    )
                    await self.box.outbox_done(ids, state="rejected")
                    return
                attempts = max(a for _, _, a in entries) + 1
                pause = backoff(attempts, self.retry_base, self.retry_max)
                logs.log(
                    "outbox_retry",
                    level="warning" if attempts > 1 else "info",
                    to=dest,
                    reason=exc.reason,
                    attempts=attempts,
                    retry_in=round(pause, 3),
                    n=len(ids),
                )
                await self.box.outbox_failed(ids, str(exc), self.box.clock() + pause)
                return
        await self.box.outbox_done(ids)
        logs.log("outbox_delivered", to=dest, n=len(ids))
