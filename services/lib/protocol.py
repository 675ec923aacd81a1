"""The command protocol of svc-storage and svc-index, shared by both ends.

A request is an OAP/1 REQ frame whose ``app_proto_id`` names the service (``STORAGE_PROTO``,
``INDEX_PROTO``) and whose payload is a msgpack map ``{"op": <name>, ...fields}``. Success is a
RESP 200 frame with a msgpack map; failures are OAP/1 error frames with canon reasons. The field
table below (``SCHEMAS``) is the contract, written out in ``specs/storage-protocol.md``; both
``request_frame`` and ``parse_request`` enforce it strictly (every required field, no unknown
field, exact msgpack types), so a bad request never reaches a handler.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import msgpack

from ipc import oap

__all__ = [
    "INDEX_PROTO",
    "NAME_MAX",
    "SCHEMAS",
    "STORAGE_PROTO",
    "check_name",
    "ok_frame",
    "parse_ok",
    "parse_request",
    "request_frame",
]

STORAGE_PROTO: Final = 0x0101
INDEX_PROTO: Final = 0x0102

# op -> field -> (msgpack type, required). ``int`` means an unsigned integer (never a bool).
_Fields = Mapping[str, tuple[type, bool]]
SCHEMAS: Final[Mapping[int, Mapping[str, _Fields]]] = {
    STORAGE_PROTO: {
        "commit": {"tmp": (str, True), "id": (str, True), "size": (int, True)},
        "put": {"data": (bytes, True)},
        "stat": {"id": (str, True)},
        "quarantine": {"id": (str, True)},
        "usage": {},
    },
    INDEX_PROTO: {
        "get": {"name": (str, True)},
        "put": {"name": (str, True), "id": (str, True), "expect_version": (int, False)},
    },
}

NAME_MAX: Final = 255
_NAME_RE: Final = re.compile(r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*")


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid index name, else raise ``OapError("bad_name")``.

    A name is 1..255 characters: segments of ``[A-Za-z0-9._~-]`` joined by single ``/``; no
    leading, trailing or doubled ``/``, and no segment ``.`` or ``..`` (names go into URL paths).
    """
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= NAME_MAX
        or _NAME_RE.fullmatch(name) is None
        or any(seg in (".", "..") for seg in name.split("/"))
    ):
        raise oap.OapError("bad_name", f"{name!r:.80} is not a valid name")
    return name


def _check_fields(proto: int, op: object, fields: Mapping[str, Any]) -> str:
    ops = SCHEMAS.get(proto)
    if ops is None:
        raise oap.OapError("unknown_app_proto", f"app_proto_id 0x{proto:04x} is not served here")
    if not isinstance(op, str) or op not in ops:
        raise oap.OapError("schema_invalid", f"unknown op {op!r:.40}")
    schema = ops[op]
    for key, value in fields.items():
        if key not in schema:
            raise oap.OapError("schema_invalid", f"{op}: unknown field {key!r:.40}")
        kind = schema[key][0]
        if type(value) is not kind or (kind is int and value < 0):
            raise oap.OapError("schema_invalid", f"{op}: {key} must be {kind.__name__}")
    for key, (_, required) in schema.items():
        if required and key not in fields:
            raise oap.OapError("schema_invalid", f"{op}: missing field {key!r}")
    return op


def request_frame(proto: int, op: str, *, corr_id: int = 0, **fields: Any) -> oap.Frame:
    """A request for ``op`` of service ``proto``; fields are checked against ``SCHEMAS``.
    A field given as None is left out (for optional fields)."""
    present = {k: v for k, v in fields.items() if v is not None}
    _check_fields(proto, op, present)
    payload = msgpack.packb({"op": op, **present}, use_bin_type=True)
    return oap.Frame(flags=oap.REQ, app_proto_id=proto, corr_id=corr_id, payload=payload)


def _unpack_map(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise oap.OapError("schema_invalid", f"{what} is not msgpack") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise oap.OapError("schema_invalid", f"{what} is not a map with string keys")
    return value


def parse_request(frame: oap.Frame) -> tuple[str, dict[str, Any]]:
    """``(op, fields)`` of a request; raises ``OapError`` (422 ``schema_invalid``, 400
    ``unknown_app_proto``) for anything that does not match ``SCHEMAS`` exactly."""
    if frame.app_proto_id not in SCHEMAS:
        raise oap.OapError(
            "unknown_app_proto", f"app_proto_id 0x{frame.app_proto_id:04x} is not served here"
        )
    fields = _unpack_map(frame.payload, "request")
    op = fields.pop("op", None)
    return _check_fields(frame.app_proto_id, op, fields), fields


def ok_frame(req: oap.Frame, **fields: Any) -> oap.Frame:
    """The success reply (RESP 200) to ``req`` carrying ``fields`` as a msgpack map."""
    return oap.response(req, msgpack.packb(fields, use_bin_type=True))


def parse_ok(frame: oap.Frame) -> dict[str, Any]:
    """The fields of a success reply; an error frame raises its ``OapError``."""
    oap.raise_for_status(frame)
    return _unpack_map(frame.payload, "reply")


def op_handler(
    *,
    proto: int,
    service: str,
    hello: oap.HelloResponse,
    dispatch: Callable[[oap.Frame, str, dict[str, Any]], Awaitable[oap.Frame]],
    metrics: Any,
) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    """The command handler svc-storage and svc-index share: HELLO, the app protocol check,
    ``op`` parsing, then ``dispatch``; every rejection counted in ``rejected_total{reason}`` and
    every request timed in ``request_latency_seconds{op="<service>_<op>"}``."""
    prefix = service.removeprefix("svc-")

    async def handle(req: oap.Frame) -> oap.Frame:
        if oap.is_hello_request(req):
            return oap.hello_response(req, hello)
        start = time.perf_counter()
        op = "invalid"
        try:
            if req.app_proto_id != proto:
                raise oap.OapError("unknown_app_proto", f"{service} serves 0x{proto:04x}")
            op, fields = parse_request(req)
            return await dispatch(req, op, fields)
        except oap.OapError as exc:
            metrics.rejected.labels(reason=exc.reason).inc()
            raise
        finally:
            elapsed = time.perf_counter() - start
            metrics.request_latency_seconds.labels(op=f"{prefix}_{op}").observe(elapsed)

    return handle
