"""The gateway's mailbox routes (DESIGN.md §8) over svc-mailbox's protocol.

- ``POST /mb/{mailbox}``: the body is the message (``Idempotency-Key`` header optional) →
  201 ``{"msg_id"}``, a duplicate key → 200 with the first message's id;
- ``POST /mb/{mailbox}/receive?max=N&visibility=S&wait=S`` → 200 ``{"messages": [{"msg_id",
  "receipt", "deliveries", "body" (base64)}]}``;
- ``POST /mb/{mailbox}/ack`` ``{"receipts": [...]}`` → 200 ``{"acked": N}``; ``/nack``
  (``"delay"``) → ``{"nacked": N}``; ``/extend`` (``"visibility"``) → ``{"extended": N}``; a
  stale receipt in any of them → 409 ``stale_receipt`` (the others took effect: the detail
  says how many);
- ``GET /mb/{mailbox}/dlq?max=N`` → ``{"messages": [{"msg_id", "deliveries", "sent_at",
  "body"}]}``; ``POST /mb/{mailbox}/dlq/redrive?max=N`` → ``{"redriven": N}``;
- ``GET /mb/{mailbox}/receipt/{msg_id}`` → ``{"msg_id", "state", "to", "at"}``: what became of
  a message sent to ``mailbox`` (``queued`` in the outbox, ``delivered`` to its node, ...);
- ``POST /mb/{mailbox}/batch`` ``{"send": [{"body" (base64), "key"?}], "ack": [receipts]}`` →
  200 ``{"sent": [{"msg_id", "created"}], "acked": N, "stale": [receipts]}``: many messages and
  acks in one request, by the rules of the single routes (the sends first, in order, in one
  transaction, each ``key`` deduplicated like an ``Idempotency-Key``; then the acks, where a
  stale receipt acks nothing and is listed, not an error, so the sends' ids still come back).

Every route needs a token allowing the ``mail`` op on the mailbox (checked before any body is
read). A message body over ``MAX_BODY`` is 413 before it is buffered; the JSON bodies are at
most ``JSON_CAP`` bytes.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar
from urllib.parse import parse_qs

import trio

from ipc import caps, oap
from ipc.plain import JsonObject
from ipc.proto import mailbox as proto
from ipc.proto.codec import Request
from kernel.http.asgi import Receive, Scope
from services.gateway.call import Admission, Call
from services.gateway.errors import GatewayError
from services.gateway.exchange import BodyReader, Exchange, content_length, header, read_all
from services.gateway.limits import BodyCounter

__all__ = ["MAIL_ROUTES", "MailRoutes", "count_of", "label", "query_of"]

JSON_CAP = 65_536
R = TypeVar("R")

MailServe = Callable[["MailRoutes", Call, "Authorize"], Awaitable[None]]


def label(template: str) -> str:
    """A mailbox route's ``request_latency_seconds`` op: ``gateway_mail_`` + its last segment."""
    return "gateway_mail_" + template.split("/")[-1].strip("{}")


class MailCall(Protocol):
    """svc-mailbox's typed reply to ``request`` within ``timeout`` (``Backend.mail``)."""

    def __call__(self, request: Request[R], timeout: float, /) -> Awaitable[R]: ...


Authorize = Callable[[Scope, str, str | None], object]


def query_of(scope: Scope) -> dict[str, str]:
    """The query string as a map (the last of a repeated key); 400 when it is not ASCII."""
    try:
        raw = parse_qs(
            bytes(scope.get("query_string", b"")).decode("ascii"), keep_blank_values=True
        )
    except UnicodeDecodeError:
        raise GatewayError("bad_request", "the query string is not ASCII") from None
    return {key: values[-1] for key, values in raw.items()}


def _number(query: dict[str, str], key: str, default: float, low: float, high: float) -> float:
    text = query.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise GatewayError("schema_invalid", f"{key} must be a number in {low:g}..{high:g}")
    return value


def count_of(query: dict[str, str], key: str, default: int, most: int = proto.MAX_BATCH) -> int:
    """The whole number ``query[key]`` in 1..``most`` (``default`` when absent), else 422."""
    value = _number(query, key, default, 1, most)
    if value != int(value):
        raise GatewayError("schema_invalid", f"{key} must be a whole number")
    return int(value)


def _message(m: proto.Delivery | proto.DeadLetter, fields: tuple[str, ...]) -> JsonObject:
    """A message as JSON: ``fields`` as they are, the body in base64."""
    return {**{f: getattr(m, f) for f in fields}, "body": base64.b64encode(m.body).decode()}


def _mailbox(text: str) -> str:
    try:
        proto.split_address(text)
    except oap.OapError as exc:
        raise GatewayError("bad_name", exc.detail) from None
    return text


class MailRoutes:
    """Serves the routes above; ``call`` reaches svc-mailbox (``StoreBackend.mail``)."""

    def __init__(self, call: MailCall, timeout: float) -> None:
        self.call = call
        self.timeout = timeout

    def _enter(self, c: Call, authorize: Authorize) -> tuple[str, object, dict[str, str]]:
        """The mailbox (400 if it is no address), the token that allows mail to it (checked
        before any body), and the query (400 if it is not ASCII)."""
        address = _mailbox(c.params["mailbox"])
        token = authorize(c.scope, "mail", address)
        return address, token, query_of(c.scope)

    async def send(self, c: Call, authorize: Authorize) -> None:
        address, token, _query = self._enter(c, authorize)
        owner = caps.owner(token) if isinstance(token, caps.Token) else None
        await self._send(c.scope, c.receive, c.ex, address, c.cs, owner)

    async def receipt(self, c: Call, authorize: Authorize) -> None:
        address, _token, _query = self._enter(c, authorize)
        msg_id = c.params["msg_id"][:64]
        state = await self.call(proto.Receipt(msg_id=msg_id), self.timeout)
        if state.state == "unknown" or (state.to and state.to != address):
            raise GatewayError("not_found", f"no message {msg_id!r} sent to {address}")
        doc = {"msg_id": state.msg_id, "state": state.state, "to": state.to, "at": state.at}
        await c.ex.json(200, doc)

    async def dlq(self, c: Call, authorize: Authorize) -> None:
        address, _token, query = self._enter(c, authorize)
        dead = await self.call(
            proto.Dlq(mailbox=address, max=count_of(query, "max", 100)), self.timeout
        )
        rows = [_message(m, ("msg_id", "deliveries", "sent_at")) for m in dead.messages]
        await c.ex.json(200, {"messages": rows})

    async def redrive(self, c: Call, authorize: Authorize) -> None:
        address, _token, query = self._enter(c, authorize)
        moved = await self.call(
            proto.Redrive(mailbox=address, max=count_of(query, "max", proto.MAX_BATCH)),
            self.timeout,
        )
        await c.ex.json(200, {"redriven": moved.count})

    async def receive(self, c: Call, authorize: Authorize) -> None:
        address, _token, query = self._enter(c, authorize)
        await self._receive(c.ex, address, query, c.cs)

    async def batch(self, c: Call, authorize: Authorize) -> None:
        """Sends and acks in one request (see the module doc), to a mailbox of this node."""
        address, token, _query = self._enter(c, authorize)
        if "@" in address:
            raise GatewayError("bad_name", "a batch is for a mailbox of this node (no @node)")
        owner = caps.owner(token) if isinstance(token, caps.Token) else None
        length = content_length(c.scope)
        if length is not None and length > BATCH_CAP:
            raise GatewayError("body_too_large", f"a batch body is at most {BATCH_CAP} bytes")
        raw = await read_all(
            BodyReader(
                c.receive, c.ex, BodyCounter(BATCH_CAP, "body_too_large"), c.cs, self.timeout
            )
        )
        outgoing, receipts = _parse_batch(raw)
        doc: JsonObject = {"sent": [], "acked": 0, "stale": []}
        if outgoing:
            sent = await self.call(
                proto.Send(mailbox=address, messages=outgoing, owner=owner), self.timeout
            )
            doc["sent"] = [{"msg_id": r.msg_id, "created": r.created} for r in sent.results]
        if receipts:
            changed = await self.call(proto.Ack(mailbox=address, receipts=receipts), self.timeout)
            doc["acked"], doc["stale"] = changed.count, list(changed.stale)
        await c.ex.json(200, doc)

    async def change(self, c: Call, authorize: Authorize) -> None:
        """``ack``, ``nack`` or ``extend`` (the last segment of the route)."""
        address, _token, _query = self._enter(c, authorize)
        await self._change(c.scope, c.receive, c.ex, c.template, address, c.cs)

    async def _send(
        self,
        scope: Scope,
        receive: Receive,
        ex: Exchange,
        address: str,
        cs: trio.CancelScope,
        owner: str | None,
    ) -> None:
        length = content_length(scope)
        if length is not None and length > proto.MAX_BODY:
            raise GatewayError("body_too_large", f"a message is at most {proto.MAX_BODY} bytes")
        counter = BodyCounter(proto.MAX_BODY, "body_too_large")
        data = await read_all(BodyReader(receive, ex, counter, cs, self.timeout))
        if not data:
            raise GatewayError("empty_body", "a message has at least one byte")
        key = header(scope, b"idempotency-key")
        if key is not None and not 1 <= len(key) <= proto.KEY_MAX:
            raise GatewayError("schema_invalid", f"Idempotency-Key is 1-{proto.KEY_MAX} characters")
        sent = await self.call(
            proto.Send(
                mailbox=address, messages=(proto.Outgoing(body=data, key=key),), owner=owner
            ),
            self.timeout,
        )
        one = sent.results[0]
        await ex.json(201 if one.created else 200, {"msg_id": one.msg_id})

    async def _receive(
        self, ex: Exchange, address: str, query: dict[str, str], cs: trio.CancelScope
    ) -> None:
        limit = count_of(query, "max", 1)
        visibility = None
        if "visibility" in query:
            visibility = _number(query, "visibility", 0, 0, proto.MAX_VISIBILITY)
        wait = _number(query, "wait", 0, 0, proto.MAX_WAIT)
        cs.deadline = max(cs.deadline, trio.current_time() + wait + self.timeout)
        got = await self.call(
            proto.Receive(mailbox=address, max=limit, visibility=visibility, wait=wait),
            wait + self.timeout,
        )
        doc = [_message(m, ("msg_id", "receipt", "deliveries")) for m in got.messages]
        await ex.json(200, {"messages": doc})

    async def _change(
        self,
        scope: Scope,
        receive: Receive,
        ex: Exchange,
        template: str,
        address: str,
        cs: trio.CancelScope,
    ) -> None:
        action = template.rsplit("/", 1)[1]
        length = content_length(scope)
        if length is not None and length > JSON_CAP:
            raise GatewayError("body_too_large", f"a {action} body is at most {JSON_CAP} bytes")
        raw = await read_all(
            BodyReader(receive, ex, BodyCounter(JSON_CAP, "body_too_large"), cs, self.timeout)
        )
        receipts, number = _parse_change(raw, action)
        if action == "ack":
            request: proto.Ack | proto.Nack | proto.Extend = proto.Ack(
                mailbox=address, receipts=receipts
            )
            key = "acked"
        elif action == "nack":
            request = proto.Nack(mailbox=address, receipts=receipts, delay=number or 0.0)
            key = "nacked"
        else:
            if number is None:
                raise GatewayError("schema_invalid", 'extend needs "visibility" (seconds)')
            request = proto.Extend(mailbox=address, receipts=receipts, visibility=number)
            key = "extended"
        changed = await self.call(request, self.timeout)
        if changed.stale:
            raise GatewayError(
                "stale_receipt",
                f"{len(changed.stale)} receipt(s) belong to no current delivery (acked, "
                f"redelivered or never issued); {changed.count} took effect",
            )
        await ex.json(200, {key: changed.count})


# a batch travels to svc-mailbox in one OAP/1 frame: its messages' bytes together are at most
# one message's (MAX_BODY); its JSON (base64: 4/3, plus keys) at most BATCH_CAP
BATCH_CAP = 1_572_864
_BATCH_SHAPE = '{"send": [{"body": "<base64>", "key": "..."}], "ack": ["<receipt>"]}'


def _receipt_strings(items: list[object]) -> bool:
    """Whether every item could be a receipt (a string of 1-128 characters)."""
    return all(isinstance(r, str) and 0 < len(r) <= 128 for r in items)


def _parse_batch(raw: bytes) -> tuple[tuple[proto.Outgoing, ...], tuple[str, ...]]:
    """A batch body's messages and receipts; 400/422 with the expected shape otherwise."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise GatewayError("bad_json", f"expected JSON {_BATCH_SHAPE}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"send", "ack"}:
        raise GatewayError("schema_invalid", f"expected {_BATCH_SHAPE}")
    if not doc or any(not isinstance(v, list) or not v for v in doc.values()):
        raise GatewayError(
            "schema_invalid", f"send and/or ack, each a non-empty list: {_BATCH_SHAPE}"
        )
    sends, acks = doc.get("send", []), doc.get("ack", [])
    if len(sends) > proto.MAX_BATCH or len(acks) > proto.MAX_BATCH:
        raise GatewayError("schema_invalid", f"at most {proto.MAX_BATCH} sends and acks each")
    if not _receipt_strings(acks):
        raise GatewayError("schema_invalid", "ack is a list of receipt strings")
    outgoing = tuple(_outgoing(i, m) for i, m in enumerate(sends))
    total = sum(len(m.body) + len(m.key or "") + 16 for m in outgoing)
    if total > proto.MAX_BODY:
        raise GatewayError(
            "body_too_large", f"a batch's messages are at most {proto.MAX_BODY} bytes together"
        )
    return outgoing, tuple(acks)


def _outgoing(index: int, item: object) -> proto.Outgoing:
    """One message of a batch: ``{"body": base64, "key"?: 1-128 characters}``."""
    where = f"send[{index}]"
    if not isinstance(item, dict) or "body" not in item or not set(item) <= {"body", "key"}:
        raise GatewayError("schema_invalid", f'{where} is {{"body": "<base64>", "key": "..."}}')
    key = item.get("key")
    if "key" in item and not (isinstance(key, str) and 1 <= len(key) <= proto.KEY_MAX):
        raise GatewayError("schema_invalid", f"{where}.key is 1-{proto.KEY_MAX} characters")
    text = item["body"]
    try:
        body = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except ValueError:
        raise GatewayError("schema_invalid", f"{where}.body is not base64") from None
    if not body:
        raise GatewayError("empty_body", f"{where}: a message has at least one byte")
    if len(body) > proto.MAX_BODY:
        raise GatewayError(
            "body_too_large", f"{where}: a message is at most {proto.MAX_BODY} bytes"
        )
    return proto.Outgoing(body=body, key=key)


_NUMBER_KEY = {"ack": None, "nack": "delay", "extend": "visibility"}


def _parse_change(raw: bytes, action: str) -> tuple[tuple[str, ...], float | None]:
    number_key = _NUMBER_KEY[action]
    shape = '{"receipts": ["..."]' + (f', "{number_key}": S' if number_key else "") + "}"
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise GatewayError("bad_json", f"expected JSON {shape}") from None
    allowed = {"receipts"} | ({number_key} if number_key else set())
    if not isinstance(doc, dict) or "receipts" not in doc or not set(doc) <= allowed:
        raise GatewayError("schema_invalid", f"expected {shape}")
    receipts = doc["receipts"]
    if (
        not isinstance(receipts, list)
        or not 1 <= len(receipts) <= proto.MAX_BATCH
        or not _receipt_strings(receipts)
    ):
        raise GatewayError(
            "schema_invalid", f"receipts is a list of 1-{proto.MAX_BATCH} receipt strings"
        )
    number = doc.get(number_key) if number_key else None
    if number is not None and (
        type(number) not in (int, float) or not 0 <= number <= proto.MAX_VISIBILITY
    ):
        raise GatewayError(
            "schema_invalid", f"{number_key} is seconds in 0..{proto.MAX_VISIBILITY:.0f}"
        )
    return tuple(receipts), (None if number is None else float(number))


MAIL_ROUTES: tuple[tuple[str, str, MailServe, Admission], ...] = (
    ("/mb/{mailbox}", "POST", MailRoutes.send, "write"),
    ("/mb/{mailbox}/receive", "POST", MailRoutes.receive, "poll"),
    ("/mb/{mailbox}/ack", "POST", MailRoutes.change, "read"),
    ("/mb/{mailbox}/nack", "POST", MailRoutes.change, "read"),
    ("/mb/{mailbox}/extend", "POST", MailRoutes.change, "read"),
    ("/mb/{mailbox}/dlq", "GET", MailRoutes.dlq, "read"),
    ("/mb/{mailbox}/dlq/redrive", "POST", MailRoutes.redrive, "read"),
    ("/mb/{mailbox}/receipt/{msg_id}", "GET", MailRoutes.receipt, "read"),
    ("/mb/{mailbox}/batch", "POST", MailRoutes.batch, "write"),
)
"""(template, method, handler, admission) of each mailbox route (its latency op: ``label``)."""
