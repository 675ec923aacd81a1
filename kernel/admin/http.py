"""The few ASGI pieces the admin plane needs: a request view, JSON responses, its routes
(``kernel.http.routes``, the one routing style of the node).

No framework on purpose: seven routes do not justify one, and owning the ASGI loop lets the events
stream watch ``http.disconnect`` itself. HTTP parsing stays in h11 (``kernel.http.server``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from urllib.parse import parse_qs

import attrs

from ipc.plain import Json, JsonObject
from kernel.http import routes
from kernel.http.asgi import Message, Receive, Scope, Send  # noqa: F401

JSON_TYPE = b"application/json"


@attrs.frozen
class Request:
    """One admin request: what a handler may look at."""

    method: str
    path: str
    params: Mapping[str, str]  # from the route template, e.g. {"service": NAME}
    query: Mapping[str, list[str]]
    receive: Receive
    send: Send
    caller: str = ""  # on the control socket: "uid N pid M" (SO_PEERCRED), for the audit log

    def query_one(self, key: str, default: str) -> str:
        return self.query.get(key, [default])[-1]


Handler = Callable[[Request], Awaitable[None]]
Route = routes.Route[Handler]  # the planes' routes map each method to its handler

MAX_JSON_BODY = 16 * 1024  # the control plane's request bodies are a few small fields


class BadBody(ValueError):
    """A request body that is not the small JSON object a route takes; ``str()`` is one line."""


async def read_body(req: Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The whole request body; ``BadBody`` if it is over ``limit`` bytes or the client left."""
    body = b""
    while True:
        message = await req.receive()
        if message["type"] != "http.request":
            raise BadBody("the client went away before sending its body")
        body += message.get("body", b"")
        if len(body) > limit:
            raise BadBody(f"request body over {limit} bytes")
        if not message.get("more_body", False):
            return body


async def read_json(req: Request, limit: int = MAX_JSON_BODY) -> JsonObject:
    """The request body as a JSON object (``{}`` when empty); ``BadBody`` if it is over
    ``limit`` bytes, not JSON, or not an object."""
    body = await read_body(req, limit)
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise BadBody("request body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadBody("request body must be a JSON object")
    return doc


def parse_query(raw: bytes) -> dict[str, list[str]]:
    return parse_qs(raw.decode("latin-1"), keep_blank_values=True)


async def start_json_lines(send: Send) -> None:
    """The head of a 200 stream of JSON lines (``/events``, ``/logs``), never cached."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/x-ndjson"),
                (b"cache-control", b"no-store"),
            ],
        }
    )


async def send_json(
    send: Send,
    status: int,
    body: Mapping[str, Json],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A complete JSON response (content-length set, so the connection can be kept alive)."""
    data = json.dumps(body, separators=(",", ":"), default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_TYPE),
                (b"content-length", str(len(data)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def send_error(
    send: Send, status: int, error: str, detail: str | None = None, **extra: Json
) -> None:
    body: JsonObject = {"error": error}
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    await send_json(send, status, body)
