"""OAP/1: the framed wire protocol between peers and services (DESIGN.md §4), sans-IO.

Like h11, nothing here touches a socket: ``encode`` turns a ``Frame`` into bytes, ``decode``
turns one whole frame's bytes back, and ``FrameDecoder`` takes a byte stream split anywhere.
Every failure is one ``OapError`` with a status ``code`` and a stable ``reason`` from the
append-only canon ``REASONS`` (mirrored in ``specs/oap_reasons.json``). Sizes are checked
before allocation and compressed payloads are inflated under a hard bound.
"""

from ._codec import decode, encode
from ._constants import (
    ACK_REQ,
    APP_E2E,
    APP_PROTO_HELLO,
    CHUNK,
    COMP,
    END,
    EVENT,
    HEADER_LEN,
    INFLATE_RATIO,
    MAX_FRAME,
    REQ,
    RESERVED_FLAGS,
    RESP,
    START,
    VERSION,
    Flags,
)
from ._decoder import FrameDecoder
from ._errors import REASONS, OapError
from ._frame import Frame
from ._messages import (
    error_frame,
    hello_request,
    hello_response,
    is_hello_request,
    raise_for_status,
    response,
)
from ._payloads import (
    PAYLOAD_TYPES,
    Data,
    End,
    ErrorBody,
    Hello,
    HelloResponse,
    Start,
    pack_payload,
    unpack_payload,
)

__all__ = [
    "ACK_REQ",
    "APP_E2E",
    "APP_PROTO_HELLO",
    "CHUNK",
    "COMP",
    "END",
    "EVENT",
    "HEADER_LEN",
    "INFLATE_RATIO",
    "MAX_FRAME",
    "PAYLOAD_TYPES",
    "REASONS",
    "REQ",
    "RESERVED_FLAGS",
    "RESP",
    "START",
    "VERSION",
    "Data",
    "End",
    "ErrorBody",
    "Flags",
    "Frame",
    "FrameDecoder",
    "Hello",
    "HelloResponse",
    "OapError",
    "Start",
    "decode",
    "encode",
    "error_frame",
    "hello_request",
    "hello_response",
    "is_hello_request",
    "pack_payload",
    "raise_for_status",
    "response",
    "unpack_payload",
]
