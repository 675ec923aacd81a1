"""How a typed service protocol travels in OAP/1 frames: the pattern every service follows.

A protocol is a set of request classes (attrs, frozen), each naming its ``OP`` and its
``REPLY`` class. On the wire a request is an OAP/1 REQ frame whose ``app_proto_id`` names the
service and whose payload is the msgpack map ``{"op": OP, **fields}`` (a field that is None is
left out: optional); a success is RESP 200 with the reply's fields as a msgpack map; a failure
is an OAP/1 error frame with a canon reason.

Guarantees:

- decoding is strict both ways (``ipc.convert``): every required field, no unknown field,
  exact msgpack types (``int`` is an unsigned integer where the class says so, never a bool;
  ``bytes`` is msgpack bin), and the classes' validators; so a bad request never reaches a
  handler and a bad reply never reaches a caller;
- a malformed request is ``OapError("schema_invalid")`` (422) naming the op and the key; a frame
  for another service is ``OapError("unknown_app_proto")`` (400);
- encoding a request and decoding it gives back an equal value (and the same for replies).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import attrs
import msgpack

from ipc import convert, oap
from ipc.plain import Json, JsonObject

__all__ = ["AnyRequest", "Request", "Requester", "ServiceProtocol", "call"]

R = TypeVar("R")


class Request(Generic[R]):
    """Base of a request class: ``OP`` is its name on the wire, ``REPLY`` its success reply.

    ``Request[Reply]`` types the reply, so ``call`` returns a ``Reply`` to a type checker too.
    """

    OP: ClassVar[str]
    REPLY: ClassVar[type]


AnyRequest = Request[Any]
"""A request whatever its reply (Any: each request class names its own ``REPLY``)."""


class Requester(Protocol):
    """What sends one request frame and returns the answer (``ipc.commands.CommandClient``)."""

    def request(self, frame: oap.Frame, *, timeout: float | None = None) -> Awaitable[oap.Frame]:
        """The answer to ``frame``; a transport failure raises ``OapError``."""
        ...


def _pack(value: Any, first: Mapping[str, Json] | None = None) -> bytes:  # Any: attrs value
    # recurse: a reply may hold attrs values (a list of peers); they travel as maps
    fields = {k: v for k, v in attrs.asdict(value, recurse=True).items() if v is not None}
    packed: bytes = msgpack.packb({**(first or {}), **fields}, use_bin_type=True)
    return packed


def _unpack_map(payload: bytes, what: str) -> JsonObject:
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise oap.OapError("schema_invalid", f"{what} is not msgpack") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise oap.OapError("schema_invalid", f"{what} is not a map with string keys")
    return value


def _structure(data: JsonObject, cls: type[R], what: str) -> R:
    try:
        return convert.structure(data, cls)
    except convert.SchemaError as exc:
        raise oap.OapError("schema_invalid", f"{what}: {exc.message}"[:200]) from None


@attrs.frozen
class ServiceProtocol:
    """One service's protocol: its ``app_proto_id`` and its request classes."""

    service: str
    app_proto_id: int
    requests: tuple[type[AnyRequest], ...]
    _by_op: Mapping[str, type[AnyRequest]] = attrs.field(init=False)

    @_by_op.default
    def _index(self) -> Mapping[str, type[AnyRequest]]:
        return {cls.OP: cls for cls in self.requests}

    @property
    def ops(self) -> Iterable[str]:
        return self._by_op.keys()

    def request_class(self, op: str) -> type[AnyRequest]:
        """The request class of ``op``; ``KeyError`` if the protocol has none."""
        return self._by_op[op]

    def request_frame(self, request: AnyRequest, *, corr_id: int = 0) -> oap.Frame:
        """The REQ frame carrying ``request``."""
        if type(request) not in self.requests:
            raise TypeError(f"{type(request).__name__} is not a request of {self.service}")
        payload = _pack(request, {"op": request.OP})
        return oap.Frame(
            flags=oap.REQ, app_proto_id=self.app_proto_id, corr_id=corr_id, payload=payload
        )

    def parse_request(self, frame: oap.Frame) -> AnyRequest:
        """The typed request in ``frame``; ``OapError`` (400 ``unknown_app_proto``, 422
        ``schema_invalid``) for anything else."""
        if frame.app_proto_id != self.app_proto_id:
            raise oap.OapError(
                "unknown_app_proto",
                f"{self.service} serves 0x{self.app_proto_id:04x}, not 0x{frame.app_proto_id:04x}",
            )
        fields = _unpack_map(frame.payload, "request")
        op = fields.pop("op", None)
        cls = self._by_op.get(op) if isinstance(op, str) else None
        if cls is None:
            raise oap.OapError("schema_invalid", f"unknown op {op!r:.40}")
        return _structure(fields, cls, str(op))

    def reply_frame(self, req: oap.Frame, reply: Any) -> oap.Frame:  # Any: attrs value
        """The success reply (RESP 200) to ``req`` carrying ``reply``."""
        return oap.response(req, _pack(reply))

    def parse_reply(self, frame: oap.Frame, request: Request[R]) -> R:
        """The typed reply to ``request``; an error frame raises its ``OapError``."""
        oap.raise_for_status(frame)
        reply: R = _structure(_unpack_map(frame.payload, "reply"), request.REPLY, request.OP)
        return reply


async def call(
    client: Requester,
    protocol: ServiceProtocol,
    request: Request[R],
    *,
    timeout: float | None = None,
) -> R:
    """Send ``request`` to the service behind ``client`` and return its typed reply; a failure
    (the service's or the transport's) raises ``OapError``."""
    frame = await client.request(protocol.request_frame(request), timeout=timeout)
    return protocol.parse_reply(frame, request)
