"""ZeroMQ sockets driven from trio, without hangs.

pyzmq has no trio integration, and the obvious adapter ("on EAGAIN, wait_readable(sock.FD)")
hangs: ZMQ_FD is an edge-style signal that *any* operation on the socket may consume, trio allows
one waiter per fd, and POLLOUT can lie. This module follows the rules measured in
``../shared/notes/trio-zmq.md`` (the project's design notes):

1. try every operation with NOBLOCK first; wait only on EAGAIN;
2. exactly one task (the *watcher*) sits in ``wait_readable``; other waiters park;
3. after every read of ZMQ_EVENTS, wake exactly the waiters whose flag is now set (the watcher too,
   by cancelling its wait), and a leaving watcher wakes the parked so one of them takes over;
4. after an EAGAIN that follows an EVENTS read saying "ready" (a lying POLLOUT), wait for a fresh
   fd edge *without* reading EVENTS first;
5. ``checkpoint_if_cancelled`` before and ``cancel_shielded_checkpoint`` after an operation, so a
   cancellation can never lose a message that was already sent or received;
6. close: ``notify_closing`` first, then close with a short linger;
7. batch: drain or send many messages per wake.

A ``TrioSocket`` belongs to one trio run (zmq sockets are not thread-safe). Any number of tasks may
send and receive on it concurrently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import trio
import zmq

Message = list[bytes]

_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)


class TrioSocket:
    """A pyzmq socket with cancel-safe async send/recv for trio tasks."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self._sock = sock
        self._fd: int = int(sock.get(zmq.FD))
        self._lots: dict[int, trio.lowlevel.ParkingLot] = {
            _POLLIN: trio.lowlevel.ParkingLot(),
            _POLLOUT: trio.lowlevel.ParkingLot(),
        }
        self._watch_scope: trio.CancelScope | None = None
        self._watch_flag = 0
        self._closed = False

    @property
    def raw(self) -> zmq.Socket[bytes]:
        """The underlying pyzmq socket (for options; never block on it)."""
        return self._sock

    @property
    def closed(self) -> bool:
        return self._closed

    # -- waiting -------------------------------------------------------------------------------

    def poll_events(self) -> int:
        """Read ZMQ_EVENTS and wake exactly the waiters whose condition now holds (rule 3).
        The only correct way to read EVENTS on a socket that tasks may be waiting on."""
        events = int(self._sock.get(zmq.EVENTS))
        for flag, lot in self._lots.items():
            if events & flag and lot:
                lot.unpark_all()
        if self._watch_scope is not None and events & self._watch_flag:
            self._watch_scope.cancel()
        return events

    def _has_waiters(self) -> bool:
        return self._watch_scope is not None or any(self._lots.values())

    def _after_op(self) -> None:
        """Our operation may have consumed the fd edge another task waits for: re-check for it."""
        if self._has_waiters():
            self.poll_events()

    async def _wait(self, flag: int, *, fresh_edge: bool) -> None:
        """Return when ``flag`` may be set. With ``fresh_edge``, EVENTS is not trusted until the fd
        signals again (rule 4). A checkpoint; raises ClosedResourceError once the socket closes."""
        while True:
            if self._closed:
                raise trio.ClosedResourceError("socket was closed")
            if not fresh_edge and self.poll_events() & flag:
                return
            fresh_edge = False
            if self._watch_scope is not None:
                await self._lots[flag].park()
                continue
            scope = self._watch_scope = trio.CancelScope()
            self._watch_flag = flag
            try:
                with scope:
                    await trio.lowlevel.wait_readable(self._fd)
            finally:
                self._watch_scope = None
                for lot in self._lots.values():
                    lot.unpark_all()

    async def wait_writable(self) -> None:
        """Wait until a send may succeed (it can still return EAGAIN: POLLOUT can lie)."""
        await self._wait(_POLLOUT, fresh_edge=False)

    # -- sending -------------------------------------------------------------------------------

    def try_send_multipart(self, parts: Sequence[bytes]) -> bool:
        """Send now or not at all: False when the socket would block. Not a checkpoint."""
        if self._closed:
            raise trio.ClosedResourceError("socket was closed")
        try:
            self._sock.send_multipart(parts, zmq.NOBLOCK, copy=True)
        except zmq.Again:
            return False
        finally:
            self._after_op()
        return True

    async def send_multipart(self, parts: Sequence[bytes]) -> None:
        """Send one multipart message, waiting while the socket is full. Cancel-safe: if this
        raises Cancelled, the message was not sent."""
        await trio.lowlevel.checkpoint_if_cancelled()
        fresh_edge = False
        while not self.try_send_multipart(parts):
            await self._wait(_POLLOUT, fresh_edge=fresh_edge)
            fresh_edge = True
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_many(self, messages: Sequence[Sequence[bytes]]) -> int:
        """Send messages in order with one checkpoint for the lot (rule 7). Returns how many were
        sent; on cancellation, the messages before the returned count were sent (none lost or
        duplicated, the rest not sent: the Cancelled is raised only before the first send)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        sent = 0
        fresh_edge = False
        while sent < len(messages):
            if self.try_send_multipart(messages[sent]):
                sent += 1
                fresh_edge = False
                continue
            try:
                await self._wait(_POLLOUT, fresh_edge=fresh_edge)
            except trio.Cancelled:
                if sent:
                    return sent
                raise
            fresh_edge = True
        await trio.lowlevel.cancel_shielded_checkpoint()
        return sent

    # -- receiving -----------------------------------------------------------------------------

    def try_recv_multipart(self) -> Message | None:
        """A message if one is waiting, else None. Never blocks, not a checkpoint."""
        if self._closed:
            raise trio.ClosedResourceError("socket was closed")
        try:
            return self._sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        finally:
            self._after_op()

    async def recv_multipart(self) -> Message:
        """Receive one multipart message. Cancel-safe: no message is lost to a cancellation."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while (msg := self.try_recv_multipart()) is None:
            await self._wait(_POLLIN, fresh_edge=False)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return msg

    async def recv_batch(self, max_messages: int) -> list[Message]:
        """Wait for at least one message, then take up to ``max_messages`` that are already
        waiting (rule 7). Cancel-safe."""
        await trio.lowlevel.checkpoint_if_cancelled()
        sock = self._sock
        while True:
            batch: list[Message] = []
            try:
                while len(batch) < max_messages:
                    batch.append(sock.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                pass
            finally:
                self._after_op()
            if batch:
                break
            await self._wait(_POLLIN, fresh_edge=False)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return batch

    # -- closing -------------------------------------------------------------------------------

    def close(self, linger: int = 0) -> None:
        """Close the socket (rule 6). Tasks waiting on it get ClosedResourceError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # outside trio.run: nobody can be waiting
            trio.lowlevel.notify_closing(self._fd)
        for lot in self._lots.values():
            lot.unpark_all()
        self._sock.close(linger=linger)

    def __enter__(self) -> TrioSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
