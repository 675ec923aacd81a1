"""A tiny blocking HTTP client for the node's two planes, for ``ronctl`` only.

stdlib only (``http.client``): the CLI is a short-lived blocking program; the admin plane is plain
HTTP on loopback (``AdminClient``), the control plane HTTP over ``ctl.sock`` (``ControlClient``).
Every failure to talk to the node becomes an ``AdminError`` whose ``str()`` is one line for the
user; an HTTP error status is *not* an error here, the caller decides what a 404 or 409 means for
its verb.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import attrs

__all__ = ["AdminClient", "AdminError", "AdminUnreachable", "ControlClient", "Response"]


class AdminError(Exception):
    """Talking to the admin plane failed; ``str()`` is one line for the user."""


class AdminUnreachable(AdminError):
    """Nothing answers at the admin URL (refused, timed out, reset)."""


@attrs.frozen
class Response:
    status: int
    body: bytes

    def error_text(self) -> str:
        """``HTTP N error: detail`` from a JSON error body (or its first bytes), on one line."""
        try:
            body = json.loads(self.body)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error"):
            detail = f": {body['detail']}" if body.get("detail") else ""
            text = f"{body['error']}{detail}"
        else:
            text = self.body[:200].decode("utf-8", errors="replace")
        return " ".join(f"HTTP {self.status} {text}".split())

    def json(self) -> Any:
        """The body as JSON; ``AdminError`` if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            snippet = self.body[:200].decode("utf-8", errors="replace")
            raise AdminError(
                f"unexpected answer from the admin plane (HTTP {self.status}): {snippet!r}"
            ) from None


def _parse_base(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
        parts = parts._replace(netloc="")
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise AdminError(f"invalid admin URL {url!r}: expected http://HOST:PORT")
    return parts.hostname, port


class AdminClient:
    """Requests against one admin base URL; a new connection per request (no pooling needed)."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._host, self._port = _parse_base(self.base_url)
        self._timeout = timeout

    def _unreachable(self, e: BaseException) -> AdminUnreachable:
        return AdminUnreachable(
            f"cannot reach the node's admin plane at {self.base_url}: {_reason(e)}"
        )

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _open(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[http.client.HTTPConnection, Any]:
        conn = self._connection()
        try:
            headers = {"Content-Length": str(len(body or b""))} if method == "POST" else {}
            if body:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self._unreachable(e) from None

    def request(self, method: str, path: str, body: bytes | None = None) -> Response:
        """Send ``method path`` (with an optional JSON ``body``) and read the whole answer."""
        conn, resp = self._open(method, path, body)
        try:
            return Response(status=resp.status, body=resp.read())
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e) from None
        finally:
            conn.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, doc: Any = None) -> Response:
        """POST ``path``; ``doc``, when given, goes as a JSON body."""
        body = None if doc is None else json.dumps(doc, separators=(",", ":")).encode()
        return self.request("POST", path, body)

    def stream_lines(self, path: str) -> Iterator[bytes]:
        """GET ``path`` and yield each line of a streaming answer as it arrives (no newline).

        Waits for data without a deadline (an event stream may be idle); ends when the node closes
        the stream. A non-200 answer raises ``AdminError``.
        """
        conn, resp = self._open("GET", path)
        try:
            if resp.status != 200:
                answer = Response(status=resp.status, body=resp.read(4096))
                raise AdminError(f"the admin plane refused {path}: {answer.error_text()}")
            if conn.sock is not None:
                conn.sock.settimeout(None)
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as e:
                    raise self._unreachable(e) from None
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                if line:
                    yield line
        finally:
            conn.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)  # Host: localhost; never dialled
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ControlClient(AdminClient):
    """Requests over a node's control socket (``<runtime_dir>/ctl.sock``)."""

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.socket_path = str(socket_path)
        self.base_url = f"unix:{self.socket_path}"
        self._timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        return _UnixConnection(self.socket_path, self._timeout)

    def _unreachable(self, e: BaseException) -> AdminUnreachable:
        where = self.socket_path
        if isinstance(e, FileNotFoundError | ConnectionRefusedError):
            return AdminUnreachable(
                f"no running node found (no control socket answers at {where}); start one with "
                "`ronctl run micronode` or pass --runtime-dir DIR"
            )
        if isinstance(e, PermissionError):
            return AdminUnreachable(
                f"permission denied on {where}: only the node's user (or root) may control it"
            )
        return AdminUnreachable(f"cannot reach the node's control socket {where}: {_reason(e)}")


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
