"""A TCP fault proxy for partition drills: 127.0.0.1:<port> -> a target, cut and healed at will.

``cut()`` resets every open connection through it and refuses new ones (accepted, then closed
at once: the dialer sees its handshake fail, as across a real partition); ``heal()`` lets
connections through again. Bytes pass untouched, so TLS and its pins work across it.
"""

from __future__ import annotations

import contextlib

import trio

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cut_now = False
        self.refused = 0  # connections turned away while cut
        self.passed = 0  # connections forwarded
        self._live: set[trio.CancelScope] = set()

    def cut(self) -> None:
        self.cut_now = True
        for scope in list(self._live):
            scope.cancel()

    def heal(self) -> None:
        self.cut_now = False

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._one, listeners)

    async def _one(self, client: trio.SocketStream) -> None:
        if self.cut_now:
            self.refused += 1
            await trio.aclose_forcefully(client)
            return
        try:
            upstream = await trio.open_tcp_stream(*self.target)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        self.passed += 1
        with trio.CancelScope() as scope:
            self._live.add(scope)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, client, upstream, nursery.cancel_scope)
                    nursery.start_soon(_pump, upstream, client, nursery.cancel_scope)
            finally:
                self._live.discard(scope)
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(upstream)


async def _pump(src: trio.SocketStream, dst: trio.SocketStream, done: trio.CancelScope) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await src.receive_some(65536):
            await dst.send_all(data)
    done.cancel()
