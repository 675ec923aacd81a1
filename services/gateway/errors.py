"""The gateway's JSON errors: ``{"error": "<reason>", "detail": "..."}`` with stable reasons.

A reason is a contract (clients branch on it, ``rejected_total{reason}`` counts it): the table
``REASONS`` is mirrored in ``specs/gateway_reasons.json`` and named in
``specs/gateway-openapi.yaml``; a test keeps the three equal. Where an OAP/1 canon reason fits
(``not_found``, ``busy``, ``integrity_failure``, ...) the gateway uses the same spelling, so an
error that crossed a command hop keeps its name over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from types import MappingProxyType
from typing import Final

from ipc import oap
from ipc.plain import JsonObject
from kernel.http.server import ServerError

__all__ = [
    "JSON_TYPE",
    "REASONS",
    "GatewayError",
    "error_body",
    "error_headers",
    "from_oap",
    "render_server_error",
]

JSON_TYPE = b"application/json"

REASONS: Final = MappingProxyType(
    {
        "bad_id": 400,  # not b3:<64 lowercase hex>
        "bad_json": 400,  # a body that must be JSON is not
        "not_found": 404,  # OAP canon
        "method_not_allowed": 405,
        "request_timeout": 408,  # the client did not send its body within the deadline
        "version_conflict": 409,  # expect_version did not match (svc-index)
        "body_too_large": 413,  # a body read whole (JSON routes) over body_cap
        "object_too_large": 413,  # a PUT /o body over max_object_size (announced or streamed)
        "range_not_satisfiable": 416,
        "schema_invalid": 422,  # OAP canon: well-formed JSON of the wrong shape
        "bad_name": 422,  # OAP canon (svc-index): not a valid name (ipc/proto/)
        "quota_exceeded": 429,  # OAP canon: request rate limit
        "busy": 429,  # OAP canon: too many requests in flight
        "internal": 500,  # OAP canon
        "integrity_failure": 500,  # OAP canon: stored bytes do not match their id; never served
        "unavailable": 503,  # OAP canon: storage or index unreachable (writes); Retry-After
        "insufficient_storage": 507,  # OAP canon: quota of the store
        "bad_request": 400,  # not valid HTTP/1.1 (h11 refused the request head or framing)
        "cap_required": 401,  # a write without a token (+ WWW-Authenticate: Bearer)
        "cap_invalid": 401,  # a token whose signature, key, expiry or revocation fails
        "cap_denied": 403,  # a valid token that does not allow this write (names the caveat)
        "empty_body": 400,  # PUT /o without a body (an object has at least one byte)
        "http_version_not_supported": 505,  # a request line of another HTTP than 1.0/1.1
        "stale_receipt": 409,  # a mailbox receipt of no current delivery (acked, redelivered)
        "too_large": 413,  # OAP canon (svc-mailbox): a message body over its cap
        "node_unknown": 404,  # OAP canon (svc-mailbox): a mailbox on a node nobody knows
        "no_name": 404,  # GET /n/{name}: no such name here (or the path cannot be one)
        "bad_type": 400,  # not a well-formed media type (Content-Type, ?type=, a name's type)
        "bad_filename": 400,  # ?filename= empty, too long, or with a control char, a slash
        "manifest_invalid": 422,  # specs/objects.md: an object's manifest (or a chunk) is malformed
    }
)
"""reason -> HTTP status. Append-only, like the OAP/1 canon."""


class GatewayError(Exception):
    """One failed request: ``status``, a ``reason`` from ``REASONS`` (or one relayed from a
    service with its own status), a human ``detail`` and, for pressure, ``retry_after`` seconds."""

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after: int | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        if status is None:
            status = REASONS[reason]
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.headers = tuple(headers)
        # True when a service already refused (and counted in rejected_total) this request: the
        # gateway relays it without counting the same rejection a second time
        self.relayed = False


def from_oap(exc: oap.OapError) -> GatewayError:
    """A service's OAP/1 error as an HTTP error: reason and detail kept, status mapped.

    A service that cannot be reached or answered too late becomes ``503 unavailable`` with
    ``Retry-After`` (the client should retry: the supervisor is restarting it); ``busy`` stays 429.
    """
    if exc.reason in ("unavailable", "timeout", "not_ready"):
        return GatewayError("unavailable", exc.detail, retry_after=exc.retry_after or 1)
    status = REASONS.get(exc.reason, exc.code)
    if not 400 <= status <= 599:
        status = 500
    retry = exc.retry_after if exc.retry_after is not None else (1 if status == 429 else None)
    err = GatewayError(exc.reason, exc.detail, status=status, retry_after=retry)
    err.relayed = True  # the service's protocol handler counted it (kernel.protocol_handler)
    return err


def error_body(err: GatewayError) -> bytes:
    body: JsonObject = {"error": err.reason, "detail": err.detail}
    return json.dumps(body, separators=(",", ":")).encode()


def error_headers(err: GatewayError, length: int) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", JSON_TYPE),
        (b"content-length", str(length).encode()),
        (b"cache-control", b"no-store"),
    ]
    if err.retry_after is not None:
        headers.append((b"retry-after", str(err.retry_after).encode()))
    headers.extend(err.headers)
    return headers


def render_server_error(err: ServerError) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The gateway's rendering of the answers the HTTP server gives itself (busy, bad request,
    timeout, a failed handler): the same JSON and headers as every other gateway error."""
    as_gateway = GatewayError(
        err.reason, err.detail, status=err.status, retry_after=err.retry_after
    )
    data = error_body(as_gateway)
    return error_headers(as_gateway, len(data)), data
