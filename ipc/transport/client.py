"""``PeerClient``: many requests at once over one ``Connection``, matched by ``corr_id``.

One reader task takes every frame off the channel and hands it to the request that owns its
``corr_id`` (through a small bounded channel: a slow consumer back-pressures the connection,
as TCP would, and nothing grows). A frame for no open request is dropped (its request gave up).
When the connection ends, every open request gets ``ChannelClosed``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

from ipc import oap
from ipc.proto.codec import Request, ServiceProtocol

from .channel import ChannelClosed
from .endpoints import Connection

__all__ = ["PeerClient"]

R = TypeVar("R")
PER_REQUEST = 8  # frames buffered per open request (a stream's DATA chunks)


class PeerClient:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._open: dict[int, trio.MemorySendChannel[oap.Frame]] = {}
        self._corr = itertools.count(1)
        self.closed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The reader; returns (and fails every open request) when the connection ends."""
        task_status.started()
        try:
            while True:
                frame = await self.conn.channel.receive()
                dest = self._open.get(frame.corr_id)
                if dest is not None:
                    # a BrokenResourceError here: the request gave up meanwhile
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await dest.send(frame)
        except (ChannelClosed, oap.OapError):
            pass
        finally:
            self.closed.set()
            for dest in list(self._open.values()):
                dest.close()
            self._open.clear()
            await self.conn.channel.aclose()

    @asynccontextmanager
    async def exchange(
        self, frame: oap.Frame
    ) -> AsyncIterator[trio.MemoryReceiveChannel[oap.Frame]]:
        """Send ``frame`` with a fresh ``corr_id``; yield the channel its answers arrive on
        (it ends when the connection does). Leaving the block forgets the request."""
        if self.closed.is_set():
            raise ChannelClosed("the connection is closed")
        corr_id = next(self._corr)
        send, receive = trio.open_memory_channel[oap.Frame](PER_REQUEST)
        self._open[corr_id] = send
        try:
            await self.conn.channel.send(_with_corr(frame, corr_id))
            yield receive
        finally:
            self._open.pop(corr_id, None)
            send.close()

    async def request(self, frame: oap.Frame, *, timeout: float) -> oap.Frame:
        """One answer frame (the ``Requester`` shape ``ipc.proto.codec.call`` uses)."""
        with trio.fail_after(timeout):
            async with self.exchange(frame) as answers:
                try:
                    return await answers.receive()
                except trio.EndOfChannel:
                    raise ChannelClosed("the connection closed before answering") from None

    async def call(self, protocol: ServiceProtocol, request: Request[R], *, timeout: float) -> R:
        return protocol.parse_reply(
            await self.request(protocol.request_frame(request), timeout=timeout), request
        )


def _with_corr(frame: oap.Frame, corr_id: int) -> oap.Frame:
    return oap.Frame(
        flags=frame.flags,
        code=frame.code,
        app_proto_id=frame.app_proto_id,
        tenant_id=frame.tenant_id,
        corr_id=corr_id,
        cap=frame.cap,
        payload=frame.payload,
    )
