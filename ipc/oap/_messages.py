"""Frames built from typed payloads: HELLO exchange and error responses."""

from __future__ import annotations

from ._constants import APP_PROTO_HELLO, REQ, RESP
from ._errors import OapError
from ._frame import Frame
from ._payloads import ErrorBody, Hello, HelloResponse, pack_payload, unpack_payload

_HELLO_PAYLOAD = pack_payload(Hello())


def hello_request(corr_id: int, *, tenant_id: int = 0) -> Frame:
    """The HELLO request: REQ, app_proto_id 0, an empty map as payload."""
    return Frame(
        flags=REQ,
        app_proto_id=APP_PROTO_HELLO,
        tenant_id=tenant_id,
        corr_id=corr_id,
        payload=_HELLO_PAYLOAD,
    )


def is_hello_request(frame: Frame) -> bool:
    """True if ``frame`` is a HELLO request (REQ, app_proto_id 0)."""
    return bool(frame.flags & REQ) and frame.app_proto_id == APP_PROTO_HELLO


def response(req: Frame, payload: bytes = b"", code: int = 200) -> Frame:
    """The response to ``req``: RESP with ``code`` and ``payload``; correlation, tenant and app
    protocol are copied from ``req`` so the peer can match it."""
    return Frame(
        flags=RESP,
        code=code,
        app_proto_id=req.app_proto_id,
        tenant_id=req.tenant_id,
        corr_id=req.corr_id,
        payload=payload,
    )


def hello_response(req: Frame, info: HelloResponse) -> Frame:
    """Answer HELLO ``req`` with ``info``: RESP, code 200, app_proto_id 0, same corr/tenant ids."""
    if not is_hello_request(req):
        raise ValueError("hello_response answers a HELLO request (REQ, app_proto_id 0)")
    return response(req, pack_payload(info))


def error_frame(req: Frame, err: OapError) -> Frame:
    """The error response to ``req``: RESP with ``err.code`` and an ``ErrorBody`` payload."""
    body = ErrorBody(reason=err.reason, detail=err.detail, retry_after=err.retry_after)
    return response(req, pack_payload(body), err.code)


def raise_for_status(frame: Frame) -> Frame:
    """Return ``frame`` unless its code is an error status (>= 400); then raise it as OapError.

    The raised error carries the frame's code (the wire is the truth, even for a reason this
    version does not know) and the body's reason, detail and retry_after. A malformed error
    body still raises, with reason ``schema_invalid`` and the frame's code.
    """
    code = frame.code
    if code < 400:
        return frame
    if code > 599:
        raise OapError("schema_invalid", f"status code {code} is out of range")
    try:
        body = unpack_payload(ErrorBody, frame.payload)
    except OapError as exc:
        raise OapError("schema_invalid", f"error body: {exc.detail}", code=code) from None
    raise OapError(body.reason, body.detail, code=code, retry_after=body.retry_after)
