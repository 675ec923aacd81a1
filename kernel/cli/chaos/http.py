"""A minimal HTTP/1.1 client for trio, on h11 (the parsing is h11's; this only moves bytes).

One connection per request (``Connection: close``): the drill talks to loopback, and a fresh
connection per request is what survives a gateway restart without any pool bookkeeping. Every
call is bounded by its ``timeout``; every failure to get an answer is ``HttpError`` (one line).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import attrs
import h11
import trio

__all__ = ["HttpError", "HttpResponse", "follow_lines", "request"]

MAX_BODY = 64 * 1024 * 1024  # bound on a response body the drill will buffer
_RECV = 256 * 1024
# Larger bodies go chunked: the gateway caps a Content-Length body at 1 MiB (DESIGN.md §5)
CHUNKED_ABOVE = 1024 * 1024
SEND_CHUNK = 256 * 1024


class HttpError(Exception):
    """No (complete) answer: refused, reset, timed out, or a malformed response."""


@attrs.frozen
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _split(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise HttpError(f"expected http://HOST:PORT[/path], got {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port, path


async def _connect(url: str, unix: str | None) -> tuple[trio.SocketStream, str, str]:
    """(stream, Host header, request target): TCP to the URL's host, or the Unix socket
    ``unix`` (then the URL is only a path, ``/stop``)."""
    if unix is not None:
        try:
            return await trio.open_unix_socket(unix), "localhost", url
        except OSError as exc:
            raise HttpError(f"cannot connect to {unix}: {exc.strerror or exc}") from None
    host, port, path = _split(url)
    try:
        return await trio.open_tcp_stream(host, port), f"{host}:{port}", path
    except OSError as exc:
        raise HttpError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None


@asynccontextmanager
async def _exchange(
    method: str, url: str, body: bytes, headers: Iterable[tuple[str, str]], unix: str | None
) -> AsyncIterator[tuple[h11.Connection, trio.SocketStream, h11.Response]]:
    stream, host, path = await _connect(url, unix)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        hdrs = [("host", host), ("connection", "close"), *headers]
        chunked = len(body) > CHUNKED_ABOVE
        if chunked:
            hdrs.append(("transfer-encoding", "chunked"))
        elif body or method in ("POST", "PUT"):
            hdrs.append(("content-length", str(len(body))))
        try:
            await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=hdrs)))
            view = memoryview(body)
            for off in range(0, len(body), SEND_CHUNK):
                piece = view[off : off + SEND_CHUNK]  # h11 frames any buffer; no copy
                await stream.send_all(conn.send(h11.Data(data=piece)))  # type: ignore[arg-type]
            await stream.send_all(conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    chunk = await stream.receive_some(_RECV)
                    conn.receive_data(chunk)
                    continue
                if isinstance(event, h11.Response):
                    break
                if isinstance(event, h11.ConnectionClosed):
                    raise HttpError(f"{method} {path}: connection closed before the answer")
            yield conn, stream, event
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise HttpError(f"{method} {path}: {exc}") from None
        except h11.ProtocolError as exc:
            raise HttpError(f"{method} {path}: bad HTTP answer ({exc})") from None


async def _read_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(_RECV))


def _headers(resp: h11.Response) -> dict[str, str]:
    return {k.decode().lower(): v.decode("latin-1") for k, v in resp.headers}


async def request(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    timeout: float = 10.0,
    unix: str | None = None,
) -> HttpResponse:
    """Send one request and read the whole answer within ``timeout`` seconds. With ``unix``
    (a socket path) ``url`` is just the path and the request goes over that socket."""
    try:
        with trio.fail_after(timeout):
            async with _exchange(method, url, body, headers, unix) as (conn, stream, resp):
                chunks: list[bytes] = []
                size = 0
                while True:
                    try:
                        event = await _read_event(conn, stream)
                    except (OSError, trio.BrokenResourceError) as exc:
                        raise HttpError(f"{method} {url}: {exc}") from None
                    except h11.ProtocolError as exc:
                        raise HttpError(f"{method} {url}: bad HTTP body ({exc})") from None
                    if isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > MAX_BODY:
                            raise HttpError(f"{method} {url}: body over {MAX_BODY} bytes")
                        chunks.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        break
                return HttpResponse(resp.status_code, _headers(resp), b"".join(chunks))
    except trio.TooSlowError:
        raise HttpError(f"{method} {url}: no answer within {timeout:g} s") from None


async def follow_lines(
    url: str,
    on_line: Callable[[bytes], None],
    *,
    connect_timeout: float = 5.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """GET ``url`` and call ``on_line`` for each line of a streaming 200 answer, until the server
    ends it (or the caller cancels). ``started()`` once the 200 headers arrived (for the admin
    plane's /events: the subscription is live). Only the connection has a deadline."""
    try:
        with trio.fail_after(connect_timeout):
            cm = _exchange("GET", url, b"", (), None)
            conn, stream, resp = await cm.__aenter__()
    except trio.TooSlowError:
        raise HttpError(f"GET {url}: no answer within {connect_timeout:g} s") from None
    try:
        if resp.status_code != 200:
            raise HttpError(f"GET {url}: HTTP {resp.status_code}")
        task_status.started()
        buf = b""
        while True:
            try:
                event = await _read_event(conn, stream)
            except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
                raise HttpError(f"GET {url}: stream broke ({exc})") from None
            if not isinstance(event, h11.Data):
                return
            buf += bytes(event.data)
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    on_line(line)
    finally:
        await cm.__aexit__(None, None, None)
