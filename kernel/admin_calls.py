"""How a service answers the admin routes it declared (``kernel.exposes.AdminRoute``).

The service hands ``ctx.command_server`` a table ``{template: answer}``; admin relay frames
(``ipc.proto.admin``) then go to ``answer`` and everything else to the service's own handler.
An answer is a JSON document and a status; the helpers below build the usual ones, so every
service's errors look the same (``{"error", "detail"}``, ``retry-after`` on 429/503).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

from ipc import oap
from ipc.commands import Handler
from ipc.proto.admin import ADMIN, ADMIN_PROTO, AdminAnswer, AdminCall

__all__ = [
    "AdminCall",
    "Answer",
    "BadRequest",
    "answer_json",
    "bad_request",
    "error_answer",
    "json_body",
    "one_line",
    "query_one",
    "with_admin_routes",
]

Answer = Callable[[AdminCall], Awaitable[AdminAnswer]]

# the status each command-socket failure reason maps to, when a route relays one to its caller
_STATUS = {
    "schema_invalid": 400,
    "bad_request": 400,
    "not_found": 404,
    "node_unknown": 404,
    "busy": 429,
    "rate_limited": 429,
    "unavailable": 503,
    "timeout": 503,
    "not_ready": 503,
}


class BadRequest(ValueError):
    """The caller's query or body does not fit the route; ``str()`` is the one-line detail."""


def one_line(exc: BaseException) -> str:
    """An exception as the one line an error body's ``detail`` carries."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=str).encode()


def answer_json(
    status: int, doc: object, *, audit: Mapping[str, object] | None = None, retry_after: int = 0
) -> AdminAnswer:
    """``doc`` as the answer; ``audit``: ``{"act": ..., details}`` when the call changed the
    node (the kernel records it with the caller)."""
    logged = _json(dict(audit)) if audit else b""
    return AdminAnswer(status=status, body=_json(doc), audit=logged, retry_after=retry_after)


def error_answer(status: int, error: str, detail: str) -> AdminAnswer:
    retry = 1 if status in (429, 503) else 0
    return answer_json(status, {"error": error, "detail": detail}, retry_after=retry)


def bad_request(exc: BaseException) -> AdminAnswer:
    return error_answer(400, "bad_request", one_line(exc))


def oap_error_answer(exc: oap.OapError) -> AdminAnswer:
    """A failure of the service's own work as the route's answer (429/503 say when to retry)."""
    status = _STATUS.get(exc.reason, 502)
    return error_answer(
        status, "bad_request" if status == 400 else exc.reason, exc.detail or exc.reason
    )


def query_one(call: AdminCall, key: str, default: str) -> str:
    """The last value of ``key`` in the query, or ``default``."""
    return call.query.get(key, [default])[-1]


def json_body(call: AdminCall) -> dict[str, object]:
    """The body as a JSON object (``{}`` when empty); ``BadRequest`` otherwise."""
    if not call.body.strip():
        return {}
    try:
        doc = json.loads(call.body)
    except (ValueError, RecursionError):
        raise BadRequest("request body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    return doc


def with_admin_routes(handler: Handler, routes: Mapping[str, Answer]) -> Handler:
    """``handler`` for the service's frames, ``routes`` for admin relay frames."""
    table = dict(routes)

    async def handle(frame: oap.Frame) -> oap.Frame:
        if frame.app_proto_id != ADMIN_PROTO:
            return await handler(frame)
        call = ADMIN.parse_request(frame)
        assert isinstance(call, AdminCall)
        answer = table.get(call.route)
        if answer is None:
            reply = error_answer(404, "not_found", f"no admin route {call.route}")
        else:
            try:
                reply = await answer(call)
            except BadRequest as exc:
                reply = bad_request(exc)
            except oap.OapError as exc:
                reply = oap_error_answer(exc)
        return ADMIN.reply_frame(frame, reply)

    return handle
