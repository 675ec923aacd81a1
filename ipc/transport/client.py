"""``PeerClient``: many requests at once over one ``Connection``, matched by ``corr_id``.

One reader task takes every frame off the channel and hands it to the request that owns its
``corr_id`` (through a small bounded channel: a slow consumer back-pressures the connection,
as TCP would, and nothing grows). A frame for no open request is dropped (its request gave up).
When the connection ends, every open request gets ``ChannelClosed``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

from ipc import oap
from ipc.proto.codec import Request, ServiceProtocol

from .channel import ChannelClosed
from .endpoints import Connection

__all__ = ["PeerClient", "next_frame", "read_object"]

R = TypeVar("R")
PER_REQUEST = 8  # frames buffered per open request (a stream's DATA chunks)


class PeerClient:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._open: dict[int, trio.MemorySendChannel[oap.Frame]] = {}
        self._corr = itertools.count(1)
        self._last_corr = 0
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
        """Send ``frame``; yield the channel its answers arrive on (it ends when the connection
        does). Leaving the block forgets the request. The frame's own ``corr_id`` is kept when it
        has one that no open request uses (a caller's id, propagated into the node's logs);
        else it gets a fresh one."""
        if self.closed.is_set():
            raise ChannelClosed("the connection is closed")
        corr_id = frame.corr_id
        if corr_id == 0 or corr_id in self._open:
            corr_id = next(self._corr)
            while corr_id in self._open:
                corr_id = next(self._corr)
        self._last_corr = corr_id
        send, receive = trio.open_memory_channel[oap.Frame](PER_REQUEST)
        self._open[corr_id] = send
        try:
            await self.conn.channel.send(_with_corr(frame, corr_id))
            yield receive
        finally:
            self._open.pop(corr_id, None)
            send.close()

    async def upload(self, first: oap.Frame, rest: list[oap.Frame], *, timeout: float) -> oap.Frame:
        """Send ``first`` and then ``rest`` under one fresh corr_id; the one answer (an upload:
        a START, its DATA and END frames, then the node's reply)."""
        with trio.fail_after(timeout):
            async with self.exchange(first) as answers:
                corr_id = self._last_corr
                for i, frame in enumerate(rest):
                    if answers.statistics().current_buffer_used:  # refused already: stop,
                        if rest[-1].flags & oap.END and i < len(rest) - 1:  # but say so
                            await self.conn.channel.send(_with_corr(rest[-1], corr_id))
                        break
                    await self.conn.channel.send(_with_corr(frame, corr_id))
                try:
                    return await answers.receive()
                except trio.EndOfChannel:
                    raise ChannelClosed("the connection closed before answering") from None

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


async def next_frame(answers: trio.MemoryReceiveChannel[oap.Frame], timeout: float) -> oap.Frame:
    """The next answer within ``timeout`` (``trio.TooSlowError``); ``ChannelClosed`` at its end."""
    with trio.fail_after(timeout):
        try:
            return await answers.receive()
        except trio.EndOfChannel:
            raise ChannelClosed("the peer closed the connection") from None


async def read_object(
    answers: trio.MemoryReceiveChannel[oap.Frame],
    obj_id: str,
    *,
    first_timeout: float,
    timeout: float,
    max_size: int | None,
    chunk: Callable[[bytes], Awaitable[object]],
    begin: Callable[[int], Awaitable[object]] | None = None,
) -> int:
    """Receive one object stream (START, DATA..., END) for ``obj_id``; its size.

    Checks what the frames claim: the START names ``obj_id`` (``max_size`` bounds its size
    before ``begin(size)`` runs), every DATA names it and continues exactly where the last one
    ended, the total is the announced size. The digest is the caller's to check (it hashes what
    ``chunk`` gets). An error frame raises its ``OapError``."""
    first = await next_frame(answers, first_timeout)
    oap.raise_for_status(first)
    start = oap.unpack_payload(oap.Start, first.payload)
    if not first.flags & oap.START or start.obj != obj_id:
        raise oap.OapError("schema_invalid", f"the stream did not start with {obj_id}")
    if max_size is not None and start.size > max_size:
        raise oap.OapError("too_large", f"{obj_id} is {start.size} bytes, over {max_size}")
    if begin is not None:
        await begin(start.size)
    off = 0
    while True:
        part = await next_frame(answers, timeout)
        oap.raise_for_status(part)
        if part.flags & oap.END:
            break
        data = oap.unpack_payload(oap.Data, part.payload)
        if data.obj != obj_id or data.off != off or off + len(data.data) > start.size:
            raise oap.OapError("schema_invalid", f"DATA out of place at {data.off}")
        await chunk(data.data)
        off += len(data.data)
    if off != start.size:
        raise oap.OapError("digest_mismatch", f"{off} bytes, {start.size} announced")
    return off
