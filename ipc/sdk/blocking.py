"""The app SDK for code that is not async: the same client, behind blocking calls.

    with Client("node:<hex>@127.0.0.1:9410") as node:
        data = node.get(obj_id)

A thread of its own runs a trio loop holding one ``AsyncClient``; every method hands its call to
that loop and waits for the answer, so errors and guarantees are exactly ``AsyncClient``'s.
Not for use from inside a trio program (use ``AsyncClient`` there).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ipc import oap
from ipc.plain import JsonObject
from ipc.proto import index, mailbox, overlay
from ipc.transport import NodeCertificate, PeerAddr

from .client import AsyncClient
from .mail import Mailbox

__all__ = ["BlockingMailbox", "Client"]


class Client:
    def __init__(
        self,
        addr: str | PeerAddr,
        *,
        identity: NodeCertificate | None = None,
        tls: bool = True,
        timeout: float = 10.0,
        pq_mode: str | None = None,
    ) -> None:
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._client: AsyncClient | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        kwargs = {"identity": identity, "tls": tls, "timeout": timeout, "pq_mode": pq_mode}
        self._thread = threading.Thread(
            target=self._run, args=(addr, kwargs), name="ron-sdk", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            self._thread.join()
            raise self._failed

    def _run(self, addr: str | PeerAddr, kwargs: JsonObject) -> None:
        async def main() -> None:
            try:
                async with AsyncClient.connect(addr, **kwargs) as client:
                    self._client = client
                    self._token = trio.lowlevel.current_trio_token()
                    self._stop = trio.Event()
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # connect failed: the constructor raises it
                if not self._ready.is_set():
                    self._failed = exc
                    self._ready.set()
                    return
                raise

        trio.run(main)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._token is None:
            raise RuntimeError("the client is closed")
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    @property
    def _async(self) -> AsyncClient:
        assert self._client is not None
        return self._client

    @property
    def pq(self) -> str:
        """This connection's posture: ``pq`` (payloads sealed again), ``fallback`` or ``off``."""
        return self._async.pq

    def hello(self, *, corr_id: int = 0) -> oap.HelloResponse:
        result: oap.HelloResponse = self._call(lambda: self._async.hello(corr_id=corr_id))
        return result

    def get(self, obj_id: str, *, max_size: int = 64 << 20, corr_id: int = 0) -> bytes:
        data: bytes = self._call(
            lambda: self._async.get(obj_id, max_size=max_size, corr_id=corr_id)
        )
        return data

    def get_to(self, obj_id: str, sink: Callable[[bytes], object], *, corr_id: int = 0) -> int:
        """``sink`` runs in the SDK's thread, one call per chunk, in order."""
        size: int = self._call(lambda: self._async.get_to(obj_id, sink, corr_id=corr_id))
        return size

    def put(self, data: bytes, token: str, *, corr_id: int = 0) -> overlay.Stored:
        stored: overlay.Stored = self._call(lambda: self._async.put(data, token, corr_id=corr_id))
        return stored

    def resolve(self, name: str, *, corr_id: int = 0) -> index.NameRecord:
        record: index.NameRecord = self._call(lambda: self._async.resolve(name, corr_id=corr_id))
        return record

    def mailbox(self, name: str, token: str) -> BlockingMailbox:
        """The mailbox ``name`` (see ``ipc.sdk.mail.Mailbox``), with blocking calls."""
        return BlockingMailbox(self, self._async.mailbox(name, token))

    def close(self) -> None:
        if self._token is not None and self._stop is not None:
            token, self._token = self._token, None
            trio.from_thread.run_sync(self._stop.set, trio_token=token)
        self._thread.join()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlockingMailbox:
    """``ipc.sdk.mail.Mailbox``'s operations, each run in the SDK's thread."""

    def __init__(self, client: Client, box: Mailbox) -> None:
        self._client = client
        self._box = box

    def send(
        self, bodies: Sequence[bytes], *, keys: Sequence[str] | None = None
    ) -> tuple[mailbox.SentOne, ...]:
        sent: tuple[mailbox.SentOne, ...] = self._client._call(
            lambda: self._box.send(bodies, keys=keys)
        )
        return sent

    def receive(
        self, *, max: int = 1, visibility: float | None = None, wait: float = 0.0
    ) -> tuple[mailbox.Delivery, ...]:
        got: tuple[mailbox.Delivery, ...] = self._client._call(
            lambda: self._box.receive(max=max, visibility=visibility, wait=wait)
        )
        return got

    def ack(self, receipts: Sequence[str]) -> mailbox.Changed:
        changed: mailbox.Changed = self._client._call(lambda: self._box.ack(receipts))
        return changed

    def nack(self, receipts: Sequence[str], *, delay: float = 0.0) -> mailbox.Changed:
        changed: mailbox.Changed = self._client._call(lambda: self._box.nack(receipts, delay=delay))
        return changed

    def extend(self, receipts: Sequence[str], *, visibility: float) -> mailbox.Changed:
        changed: mailbox.Changed = self._client._call(
            lambda: self._box.extend(receipts, visibility=visibility)
        )
        return changed

    def dlq(self, *, max: int = 100) -> tuple[mailbox.DeadLetter, ...]:
        dead: tuple[mailbox.DeadLetter, ...] = self._client._call(lambda: self._box.dlq(max=max))
        return dead

    def redrive(self, *, max: int = mailbox.MAX_BATCH) -> int:
        moved: int = self._client._call(lambda: self._box.redrive(max=max))
        return moved

    def receipt(self, msg_id: str) -> mailbox.DeliveryState:
        state: mailbox.DeliveryState = self._client._call(lambda: self._box.receipt(msg_id))
        return state
