"""``Channel``: OAP/1 frames over one (TLS) byte stream, with one writer task and timeouts.

Guarantees:

- reads go through ``oap.FrameDecoder``: a frame announcing more than ``max_frame`` is refused
  from its length field, before anything is allocated for it (then the channel is dead: OAP
  errors are final);
- one writer task owns the stream's send side; ``send`` hands it a frame through a bounded
  channel (``QUEUE`` frames), so concurrent senders never interleave bytes and a slow peer
  back-pressures them instead of growing a queue;
- every read waits at most ``read_timeout`` once a frame has begun, and at most ``idle_timeout``
  for the next frame to begin; every write at most ``write_timeout``; on expiry the channel
  raises ``ChannelTimeout`` (``op`` = read/write/idle) and is closed;
- with PQ keys installed (``install_pq``), a frame sent with APP_E2E has its payload sealed by
  the writer, in wire order, and a received APP_E2E frame is opened in arrival order (one that
  does not open is 500 ``integrity_failure``, and the channel is dead like any OAP error);
- ``send_many`` queues a group of frames as one item (sent in order, in one write); at most
  ``GROUPS`` groups wait at once, so what a channel holds stays bounded;
- with ``pacers`` (``pacing.Bucket``: this connection's, its peer's, the node's), the writer
  sends no faster than the slowest of their rates;
- ``aclose`` stops the writer and closes the stream; a broken or ended stream surfaces as
  ``ChannelClosed`` from both ``receive`` and ``send``, and the channel is closed by then (its
  writer task ends).
"""

from __future__ import annotations

import math
import ssl
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import attrs
import trio

from ipc import oap

from . import _trio_tls, partition
from .meter import Meter
from .pacing import Bucket
from .pq import Opener, PqError, Sealer

__all__ = ["Channel", "ChannelClosed", "ChannelTimeout", "Timeouts"]

QUEUE = 16  # frames waiting for the writer, at most
READ_SIZE = 1 << 18
GROUPS = 2  # send_many lists waiting at once per channel (with 1 MiB lists: 2 MiB)
BATCH = 256 * 1024  # bytes of queued frames joined into one write (fewer TLS records, syscalls)


@attrs.frozen
class _Group:
    frames: list[oap.Frame]
    on_written: Callable[[], None] | None


@attrs.frozen
class Timeouts:
    read: float = 5.0
    write: float = 5.0
    idle: float = 60.0


class ChannelClosed(Exception):
    """The peer went away or the channel was closed."""


class ChannelTimeout(ChannelClosed):
    """A read, write or idle wait ran out; ``op`` says which."""

    def __init__(self, op: str) -> None:
        super().__init__(f"{op} timed out")
        self.op = op


class Channel:
    """Frames over ``stream``. Run ``writer`` in a nursery (``run`` does it for you)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        timeouts: Timeouts | None = None,
        max_frame: int = oap.MAX_FRAME,
        meter: Meter | None = None,
        pacers: tuple[Bucket, ...] = (),
    ) -> None:
        self.stream = stream
        self._pacers = tuple(b for b in pacers if not b.off)  # connection, peer, node
        self.timeouts = timeouts or Timeouts()
        self._decoder = oap.FrameDecoder(max_frame)
        self._ready: deque[oap.Frame] = deque()
        # encoded frames, or a Frame to seal (APP_E2E) in the writer, where wire order is fixed
        self._send, self._queue = trio.open_memory_channel[bytes | oap.Frame | _Group](QUEUE)
        self._unwritten: deque[Callable[[], None]] = deque()  # groups taken, not yet written
        self._groups = trio.Semaphore(GROUPS)  # send_many items waiting in the queue
        self._sealer: Sealer | None = None
        self._opener: Opener | None = None
        self._meter = meter or Meter()  # bytes moved and timeouts
        self._closed = False
        self._written = trio.Event()  # the writer has ended
        self._tls = _trio_tls.tls_parts(stream)  # read TLS records here (``_read``) if trio allows
        self._serving = 0  # requests of the peer being served (``serving``)
        self._idle_scope: trio.CancelScope | None = None  # a read waiting in its idle time
        self.peer: str | None = None  # the node id on the other end (an injected partition)

    async def receive(self) -> oap.Frame:
        """The next frame. Raises ``ChannelClosed`` (EOF, broken, timeout) or ``OapError``."""
        if partition.cut_off(self.peer):
            await self._fail(ChannelClosed("cut off (an injected partition)"))
        if not self._ready:
            await self._fill()
        frame = self._ready.popleft()
        if frame.flags & oap.APP_E2E:
            frame = self._open(frame)
        return frame

    async def _fill(self) -> None:
        """Read until a frame is complete: one cancel scope for it all (a TLS read returns one
        16 KiB record, so a scope per read was most of the cost of a read). Its deadline is
        ``idle`` until a frame has begun, then ``read`` from the moment it did."""
        idle = self._decoder.buffered == 0
        with trio.CancelScope(
            deadline=trio.current_time() + (self.timeouts.idle if idle else self.timeouts.read)
        ) as scope:
            if idle:
                self._idle_scope = scope
                if self._serving:
                    scope.deadline = math.inf  # not idle: an answer of ours is on its way
            while not self._ready:
                try:
                    data = await self._read()
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    await self._fail(ChannelClosed(str(exc) or type(exc).__name__))
                if not data:
                    midway = "mid-frame" if self._decoder.buffered else "the connection"
                    await self._fail(ChannelClosed(f"the peer closed {midway}"))
                self._meter.moved("in", len(data))
                if idle and self._decoder.buffered == 0:
                    idle = False  # a frame begins: from now on the read timeout runs
                    self._idle_scope = None
                    scope.deadline = trio.current_time() + self.timeouts.read
                self._ready.extend(self._decoder.feed(data))
        self._idle_scope = None
        if scope.cancelled_caught:
            await self._fail(ChannelTimeout("idle" if idle else "read"))

    @property
    def reads_tls_records(self) -> bool:
        """True when this channel decrypts TLS records itself (many per socket read)."""
        return self._tls is not None

    async def _read(self) -> bytes:
        """The next plaintext bytes (b"" at the end of the stream).

        Over TLS the records are read and decrypted here, not through ``SSLStream.receive_some``:
        that reads at most 64 KiB from the socket and returns one 16 KiB record per call, each
        call a scheduler pass (a 1 MiB object was ~50 of them). Here one socket read takes all
        that has arrived (up to ``READ_SIZE``) and every complete record in it is decrypted at
        once. The stream's TLS state comes from ``_trio_tls`` (the public API trio lacks is named
        there); only this reader reads: writes still go through the stream (TLS 1.3 writes never
        need a read). Without it (another trio, plain TCP) the stream is read as it is."""
        tls = self._tls
        if tls is None:
            return bytes(await self.stream.receive_some(READ_SIZE))
        ssl_object, incoming, transport = tls
        while True:
            parts = []
            try:
                while True:
                    piece = ssl_object.read(READ_SIZE)
                    if not piece:
                        break
                    parts.append(piece)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:  # close_notify: the end, after what came before
                if not parts:
                    return b""
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS: {exc}") from None
            if parts:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            data = await transport.receive_some(READ_SIZE)
            if not data:
                return b""
            incoming.write(data)

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Mark a request of the peer as being served: the connection is not idle meanwhile
        (the peer is silent because it waits for us: a mailbox long poll answers after up to
        20 s). Once nothing is served, the idle timeout runs again from then."""
        self._serving += 1
        if self._idle_scope is not None:
            self._idle_scope.deadline = math.inf
        try:
            yield
        finally:
            self._serving -= 1
            if self._serving == 0 and self._idle_scope is not None:
                self._idle_scope.deadline = trio.current_time() + self.timeouts.idle

    def install_pq(self, sealer: Sealer, opener: Opener) -> None:
        """From now on frames sent with APP_E2E are sealed, and received ones opened, in order."""
        self._sealer, self._opener = sealer, opener

    @property
    def sealed(self) -> bool:
        return self._sealer is not None

    def _open(self, frame: oap.Frame) -> oap.Frame:
        if self._opener is None:
            raise oap.OapError("schema_invalid", "a sealed (APP_E2E) frame, but no PQ keys here")
        try:
            plain = self._opener.open(frame.payload, frame.app_proto_id, frame.corr_id)
        except PqError as exc:
            raise oap.OapError("integrity_failure", str(exc)) from None
        return attrs.evolve(frame, payload=plain)

    async def _fail(self, exc: ChannelClosed) -> NoReturn:
        if isinstance(exc, ChannelTimeout):
            self._meter.io_timeout(exc.op)
        await self.aclose()
        raise exc

    async def send(self, frame: oap.Frame) -> None:
        """Queue ``frame`` for the writer (waits while ``QUEUE`` frames are waiting). A frame
        flagged APP_E2E is sealed by the writer (PQ keys must be installed)."""
        if partition.cut_off(self.peer):
            await self._fail(ChannelClosed("cut off (an injected partition)"))
        data: bytes | oap.Frame
        if frame.flags & oap.APP_E2E:
            if self._sealer is None:
                raise oap.OapError("schema_invalid", "APP_E2E needs PQ keys on this channel")
            data = frame
        else:
            data = oap.encode(frame, max_frame=self._decoder.max_frame)
        try:
            await self._send.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ChannelClosed("the channel is closed") from None

    async def send_many(
        self, frames: list[oap.Frame], on_written: Callable[[], None] | None = None
    ) -> None:
        """Queue ``frames`` as one item: they leave in this order, in one write (a stream's
        DATA chunks of one block: one hand-off to the writer instead of one per chunk).
        ``on_written`` is called exactly once when it returns normally: after the frames were
        written to the stream, or when the channel closes with them unsent (a sender's memory
        budget is given back then); if it raises, it was not queued and is not called."""
        if any(f.flags & oap.APP_E2E for f in frames) and self._sealer is None:
            raise oap.OapError("schema_invalid", "APP_E2E needs PQ keys on this channel")
        await self._groups.acquire()  # at most GROUPS of them wait: bounded bytes per channel
        try:
            await self._send.send(_Group(frames, on_written))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._groups.release()
            raise ChannelClosed("the channel is closed") from None

    def _bytes_of(self, item: bytes | oap.Frame | _Group) -> bytes:
        if isinstance(item, bytes):
            return item
        if isinstance(item, _Group):
            self._groups.release()  # taken off the queue: another group may wait
            if item.on_written is not None:
                self._unwritten.append(item.on_written)
            return b"".join(self._bytes_of(f) for f in item.frames)
        if item.flags & oap.APP_E2E:
            return self._seal(item)
        return oap.encode(item, max_frame=self._decoder.max_frame)

    async def writer(self) -> None:
        """Write queued frames in order; returns when the channel closes."""
        async with self._queue:
            async for item in self._queue:
                data = self._bytes_of(item)
                if len(data) < BATCH:  # frames already waiting go out in the same write
                    parts = [data]
                    size = len(data)
                    while size < BATCH:
                        try:
                            more = self._queue.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        parts.append(self._bytes_of(more))
                        size += len(parts[-1])
                    if len(parts) > 1:
                        data = b"".join(parts)
                for bucket in self._pacers:
                    await bucket.take(len(data))
                with trio.move_on_after(self.timeouts.write) as scope:
                    try:
                        await self.stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                if scope.cancelled_caught:
                    self._meter.io_timeout("write")
                    break
                self._meter.moved("out", len(data))
                self._report_written()
        self._written.set()
        await self.aclose()

    def _report_written(self) -> None:
        while self._unwritten:
            self._unwritten.popleft()()

    def _seal(self, frame: oap.Frame) -> bytes:
        assert self._sealer is not None
        sealed = self._sealer.seal(frame.payload, frame.app_proto_id, frame.corr_id)
        return oap.encode(attrs.evolve(frame, payload=sealed), max_frame=self._decoder.max_frame)

    async def finish(self) -> None:
        """Send what is queued (within ``write_timeout``), then close: the last answer of a
        connection that is ending (an error frame) still reaches the peer."""
        self._send.close()
        with trio.move_on_after(self.timeouts.write):
            await self._written.wait()
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send.close()
        while True:  # groups that will never be written: their senders' budgets come back
            try:
                item = self._queue.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if isinstance(item, _Group) and item.on_written is not None:
                self._unwritten.append(item.on_written)
        self._report_written()
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await self.stream.aclose()
