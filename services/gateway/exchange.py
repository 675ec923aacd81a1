"""One gateway request's two sides: the answer (``Exchange``) and the body (``BodyReader``).

Shared by the object, name and mailbox routes. Guarantees: the status is counted before the
client can see the answer; a body is pulled piece by piece, counted against its cap as it
arrives (``limits.BodyCounter``: refused before the excess is buffered) and each piece pushes
the request's idle deadline back; a client that goes away is ``ClientGone`` (nobody to answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

import trio

from ipc.plain import Json
from kernel.http.asgi import Receive, Scope, Send
from services.gateway.errors import JSON_TYPE, GatewayError, error_body, error_headers
from services.gateway.limits import BodyCounter, Deadline

__all__ = ["BodyReader", "ClientGone", "Exchange", "content_length", "header", "read_all"]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class Exchange:
    """One request's response side: remembers the status (for metrics) and whether it started."""

    __slots__ = ("deadline", "on_start", "send", "status", "waiting_on_client")

    def __init__(self, send: Send, on_start: Callable[[int], None]) -> None:
        self.send = send
        self.on_start = on_start
        self.status = 0
        self.waiting_on_client = False
        self.deadline: Deadline | None = None

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.on_start(status)  # counted before the client can see the answer
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, more: bool = False) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def json(
        self, status: int, doc: Mapping[str, Json], extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        data = json.dumps(doc, separators=(",", ":")).encode()
        headers = [
            (b"content-type", JSON_TYPE),
            (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ]
        await self.start(status, headers)
        await self.body(data)

    async def error(self, err: GatewayError) -> None:
        data = error_body(err)
        await self.start(err.status, error_headers(err, len(data)))
        await self.body(data)


class BodyReader:
    """Pulls a request body piece by piece under the cap and the idle deadline."""

    def __init__(
        self,
        receive: Receive,
        ex: Exchange,
        counter: BodyCounter,
        cs: trio.CancelScope,
        timeout: float,
    ) -> None:
        self._receive = receive
        self._ex = ex
        self._counter = counter
        self._cs = cs
        self._timeout = timeout
        self._done = False

    async def next(self) -> bytes | None:
        """The next non-empty piece, or None at the end of the body."""
        while not self._done:
            self._ex.waiting_on_client = True
            message = await self._receive()
            self._ex.waiting_on_client = False
            if message["type"] == "http.disconnect":
                raise ClientGone()
            data = message.get("body", b"")
            self._done = not message.get("more_body", False)
            if self._ex.deadline is not None:
                self._ex.deadline.progress(len(data))
            if data:
                self._counter.add(len(data))
                return bytes(data)
        return None


class ClientGone(GatewayError):
    """The client went away mid-request; there is nobody to answer."""

    def __init__(self) -> None:
        super().__init__("request_timeout", "the client disconnected")


def content_length(scope: Scope) -> int | None:
    raw = header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:  # h11 rejects these before us; be safe anyway
        raise GatewayError("bad_json", "Content-Length is not a number") from None


async def read_all(body: BodyReader) -> bytes:
    """The whole body (already bounded by the reader's counter)."""
    pieces = []
    while (piece := await body.next()) is not None:
        pieces.append(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
