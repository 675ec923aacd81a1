"""The gateway's ASGI app: routes of DESIGN.md §8 over a ``Backend``, with admission control.

Routes (declared in ``ROUTES`` at the end: a route is one entry and one handler): ``PUT /o``,
``GET|HEAD /o/{id}``, ``GET /names``, ``GET|PUT /names/{name}``, ``GET|HEAD /n/{name}``
(content by name, typed: ``media``) and the mailbox routes ``/mb/...`` (``mail_routes``).
Guarantees:

- every answer is a typed status; errors are JSON ``{"error", "detail"}`` with a reason from
  ``errors.REASONS`` (never a 500 for bad input; 500 only for ``integrity_failure``/``internal``);
- admission (rate limit, in-flight cap, a Content-Length over its route's cap) answers at once;
- ``PUT /o`` streams its body whether it comes with Content-Length or chunked: one cap
  (``max_object_size``, 413) and the quota (507) are checked on the announced length before
  the body; ``body_cap`` bounds only the bodies that are read whole (JSON);
- a request body is counted as it arrives and refused (413) before the excess is buffered; a
  streamed upload holds at most one piece in memory; an object is served in ``chunk`` pieces;
- no byte of an object is sent before its whole digest was verified; a mismatch counts in
  ``integrity_fail_total`` (by svc-storage as it quarantines it; by the gateway if storage cannot
  be reached), is logged, and answered 500;
- a request's work and each wait on the client get ``timeout`` seconds (an idle deadline that
  progress on a streamed body pushes back), so nothing hangs;
- ``http_requests_total{route,method,status}`` is counted with the route template and
  ``request_latency_seconds{op}`` observes every request.

The app is a plain ASGI callable: the node's HTTP server (``kernel.http.server``) serves it in
the node, hypercorn's trio worker when ``server = "hypercorn"``; a test may call it directly.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import trio
from prometheus_client import Histogram

from ipc import caps, ids, manifest, oap
from ipc._types import Count
from ipc.plain import JsonObject
from ipc.proto import index as index_proto
from kernel import logs
from kernel.http.asgi import Receive, Scope, Send, answer_lifespan
from kernel.http.routes import Route, Router
from kernel.metrics import Metrics
from services.gateway import mail_routes, media
from services.gateway.auth import Guard
from services.gateway.backend import Backend, FetchWatch, NameRecord, Stored, StoredObject
from services.gateway.call import Call, Op
from services.gateway.chunked import ChunkedObject, check_manifest
from services.gateway.errors import GatewayError
from services.gateway.exchange import BodyReader, Exchange, content_length, header
from services.gateway.limits import (
    BodyCounter,
    Deadline,
    InflightLimiter,
    ShedWatch,
    TokenBucket,
)
from services.gateway.ranges import etag_matches, parse_range
from services.gateway.settings import GatewaySettings

__all__ = ["CACHE_IMMUTABLE", "GatewayApp", "check_name", "parse_object_id"]


CACHE_IMMUTABLE = b"public, max-age=29030400, immutable"
CACHE_NAMED = b"public, max-age=60"  # a name may point elsewhere a minute later; its ETag is the id
INDEX_PAGE = "index.html"
NAME_BODY_CAP = 4096  # a names PUT body is one small JSON map
SERVICE = "svc-gateway"
# every capability refusal is one rejection reason: "unauth" (auth_failures_total splits them)
_REJECTED_AS = {"cap_required": "unauth", "cap_invalid": "unauth", "cap_denied": "unauth"}


class _Both:
    """Two counters that move together (``rejected_total`` and ``auth_failures_total``)."""

    __slots__ = ("a", "b")

    def __init__(self, a: Count, b: Count) -> None:
        self.a, self.b = a, b

    def inc(self, amount: float = 1) -> None:
        self.a.inc(amount)
        self.b.inc(amount)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a path no route fits


def parse_object_id(text: object) -> str:
    """``text`` if it is ``b3:<64 lowercase hex>``, else ``GatewayError(bad_id)``."""
    if not ids.is_id(text):
        raise GatewayError("bad_id", "an object id is b3: followed by 64 lowercase hex digits")
    return str(text)


def check_name(name: str, scope: Scope | None = None) -> str:
    """``name`` if svc-index would accept it (``index_proto.check_name``), else ``bad_name``.

    A ``/`` in a name separates its segments and must be written as ``/``: a percent-encoded
    one (``%2F``) is refused rather than silently decoded into a separator, so the name a client
    sends is the name it gets back (``specs/gateway-openapi.yaml``)."""
    if scope is not None and b"%2f" in bytes(scope.get("raw_path", b"")).lower():
        raise GatewayError("bad_name", "write '/' in a name as '/', not %2F")
    try:
        return index_proto.check_name(name)
    except oap.OapError as exc:
        raise GatewayError("bad_name", exc.detail) from None


class GatewayApp:
    """The ASGI callable. ``metrics`` is a ``kernel.metrics.Metrics`` (or None in unit tests);
    ``fault_delay`` is awaited by every admitted request (the chaos ``slow`` fault) but a plain
    GET of an object held verified, which takes the ordinary path only while ``fault_slowing()``
    says the fault is on (without ``fault_slowing``, always)."""

    def __init__(
        self,
        backend: Backend,
        settings: GatewaySettings,
        *,
        metrics: Metrics | None = None,
        fault_delay: Callable[[], Awaitable[None]] | None = None,
        fault_slowing: Callable[[], bool] | None = None,
        guard: Guard | None = None,
        on_shedding: Callable[[bool], None] | None = None,
    ) -> None:
        self.backend = backend
        self.guard = guard  # None: writes are open (auth.writes = "open"; unit tests)
        self.settings = settings
        self.metrics = metrics
        self.fault_delay = fault_delay  # chaos drills' "slow" hook (kernel.faults), if any
        self.inflight = InflightLimiter(settings.max_inflight)
        # long polls wait on svc-mailbox, not on this loop: their own cap, not max_inflight's
        self.polls = InflightLimiter(settings.max_polls)
        self.mail = mail_routes.MailRoutes(backend.mail, settings.timeout)
        self.writes = InflightLimiter(min(settings.max_writes, settings.max_inflight))
        self.shedding = ShedWatch(on_shedding)  # sustained write shedding: report not-ready
        self.bucket = TokenBucket(settings.rate, settings.burst)
        # labelled metric children, created once: ``.labels()`` costs a lock and a dict lookup
        # per call (all label values come from small fixed sets, so these stay small)
        self._counted: dict[tuple[str, str, int], Count] = {}
        self._rejected: dict[str, Count] = {}
        self._latency: dict[str, Histogram] = {}
        # plain GETs of objects held verified skip the per-request deadline (_send_held): only
        # where the server bounds every write (ours; hypercorn's trio worker does not), and
        # never while the chaos "slow" fault is on (every request waits on it then)
        cannot_tell = fault_delay is not None and fault_slowing is None
        self._held_off = settings.server != "h11" or cannot_tell
        self._fault_slowing = fault_slowing if fault_slowing is not None else _never

    def _count(self, template: str, method: str, status: int, reason: str) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        key = (template, method, status)
        child = self._counted.get(key)
        if child is None:
            child = metrics.http_requests.labels(
                route=template, method=method if method in _METHODS else "OTHER", status=str(status)
            )
            if method in _METHODS:  # an unknown method never adds a key
                self._counted[key] = child
        child.inc()
        if reason:
            label = _REJECTED_AS.get(reason, reason)
            rejected = self._rejected.get(reason)
            if rejected is None:
                rejected = self._rejected[reason] = metrics.rejected.labels(reason=label)
                if label != reason:  # a capability refusal: also by its own reason
                    auth = metrics.auth_failures.labels(service=SERVICE, reason=reason)
                    self._rejected[reason] = _Both(rejected, auth)
                    rejected = self._rejected[reason]
            rejected.inc()

    def _observe(self, op: str, elapsed: float) -> None:
        child = self._latency.get(op)
        if child is None:
            assert self.metrics is not None  # the caller checked
            child = self._latency[op] = self.metrics.request_latency_seconds.labels(op=op)
        child.observe(elapsed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await answer_lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if not self._held_off and scope["method"] == "GET" and not scope["query_string"]:
            held = self._held(scope)
            if held is not None:
                await self._send_held(send, *held, started)
                return
        method = str(scope["method"]).upper()
        found = ROUTES.match(scope["path"])
        template = found[0].template if found is not None else UNMATCHED
        reason = ""

        def count(status: int) -> None:
            self._count(template, method, status, reason)

        ex = Exchange(send, count)
        try:
            try:
                with trio.CancelScope() as cs:
                    ex.deadline = Deadline(cs, self.settings.timeout, self.settings.min_rate)
                    await self._dispatch(scope, receive, ex, method, found, cs)
                if cs.cancelled_caught and ex.status == 0:
                    if ex.waiting_on_client:
                        raise GatewayError("request_timeout", "the request body stalled")
                    raise GatewayError(
                        "unavailable", "the data plane did not answer in time", retry_after=1
                    )
            except GatewayError as err:
                reason = "" if err.relayed else err.reason  # one rejection, one count
                if ex.status == 0:
                    await ex.error(err)
            except Exception as exc:  # a bug of ours: logged, answered and counted as one
                if isinstance(exc, OSError) and ex.status:
                    raise  # the client went away mid-answer: nothing to answer
                reason = "internal"
                logs.log(
                    "gateway_internal",
                    level="error",
                    reason=type(exc).__name__,
                    detail=str(exc)[:200],
                )
                if ex.status == 0:
                    await ex.error(GatewayError("internal", "the gateway failed on this request"))
                else:
                    raise
        finally:
            elapsed = time.perf_counter() - started
            op = found[0].methods.get(method) if found is not None else None
            if self.metrics is not None and op is not None and ex.status:
                self._observe(op.label, elapsed)

    def _held(self, scope: Scope) -> tuple[str, bytes] | None:
        """``GET /o/{id}``, plain (no query, no Range, no If-None-Match), of an object the
        backend holds verified and admitted now (rate, in-flight cap): its id and bytes. Else
        None, and the request takes the ordinary path, which answers it in full (and a refusal
        there as usual)."""
        path = scope["path"]
        if not path.startswith("/o/") or self._fault_slowing():
            return None
        for key, _ in scope["headers"]:
            if key in _NOT_PLAIN:
                return None
        obj_id = path[3:]
        data = self.backend.held(obj_id)  # only ids it holds: a malformed one is never there
        if data is None or self.inflight.inflight >= self.inflight.limit:
            return None
        try:
            self.bucket.take()
        except GatewayError:
            return None
        return obj_id, data

    async def _send_held(self, send: Send, obj_id: str, data: bytes, started: float) -> None:
        """The ordinary path's answer to a plain GET (the same status, headers and counts),
        without its per-request deadline: every write to the client is bounded by the server
        (``kernel.http.server``), and nothing else is waited on. About a third of the app's CPU
        on the ordinary path (measured in-process, without sockets: ~15 vs ~45 us per GET
        4 KiB)."""
        try:
            with self.inflight.slot():
                self._count(_OBJECT_ROUTE, "GET", 200, "")
                headers = [
                    (b"content-length", str(len(data)).encode()),
                    *_OCTET_HEADERS,
                    *object_headers(obj_id, CACHE_IMMUTABLE),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": data, "more_body": False})
        finally:  # observed like any answered request, also when the client left mid-answer
            if self.metrics is not None:
                self._observe(_GET_OBJECT, time.perf_counter() - started)

    async def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        ex: Exchange,
        method: str,
        found: tuple[Route[Op], dict[str, str]] | None,
        cs: trio.CancelScope,
    ) -> None:
        if found is None:
            raise GatewayError("not_found", f"no route for {scope['path']}")
        route, params = found
        op = route.methods.get(method)
        if op is None:
            allow = route.allow.encode()
            raise GatewayError(
                "method_not_allowed",
                f"{route.template} allows {route.allow}",
                headers=[(b"allow", allow)],
            )
        self.bucket.take()
        slots = self.polls if op.admission == "poll" else self.inflight
        with slots.slot(), self._write_slot() if op.admission == "write" else nullcontext():
            if self.fault_delay is not None:
                await self.fault_delay()
            await op.serve(self, Call(scope, receive, ex, method, route.template, params, cs))

    @contextmanager
    def _write_slot(self) -> Iterator[None]:
        """One of ``max_writes`` slots (writes are shed before reads), counted for ShedWatch."""
        try:
            self.writes.__enter__()
        except GatewayError:
            self.shedding.shed()
            raise
        self.shedding.admitted()
        try:
            yield
        finally:
            self.writes.__exit__()

    async def keys_loaded(self) -> None:
        """Before a write's token is checked: a gateway just started waits for its keys."""
        if self.guard is not None:
            await self.guard.first_keys.wait()

    def _authorize(self, scope: Scope, op: str, name: str | None) -> caps.Token | None:
        """The token that allows this write (None when writes are open); before any body."""
        if self.guard is None:
            return None
        return self.guard.check(scope, op, name, content_length(scope))

    # --- objects ---------------------------------------------------------------------------

    async def _get_object(
        self,
        c: Call,
        obj_id: str,
        typed: Sequence[tuple[bytes, bytes]],
        cache: bytes = CACHE_IMMUTABLE,
    ) -> None:
        """Serve ``obj_id`` with ``typed`` headers (``media.typed_headers`` and a download's):
        ETag = the id, conditional GET, Range, HEAD; ``cache``: immutable for an id, short for
        a name (names move)."""
        scope, ex = c.scope, c.ex
        common = object_headers(obj_id, cache)
        etag = f'"{obj_id}"'
        if etag_matches(header(scope, b"if-none-match"), etag) and await self.backend.exists(
            obj_id
        ):
            # Content-addressed: the client's copy under this id is by definition current.
            await ex.start(304, common)
            await ex.body(b"")
            return
        obj = await self._open_verified(obj_id, ex, c.receive)
        if not isinstance(obj, ChunkedObject):
            try:
                await self._send_object(c, obj, typed, common)
            finally:
                await obj.aclose()  # a raw object's close never checkpoints: no shield needed
            return
        failure: Exception | None = None
        try:
            async with trio.open_nursery() as ahead:  # its chunks fetched ahead of the reads
                obj.use(ahead)
                try:
                    await self._send_object(c, obj, typed, common)
                except Exception as exc:  # raised as itself below, not in a nursery's group
                    failure = exc
                ahead.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await obj.aclose()
        if failure is not None:
            raise failure

    async def _send_object(
        self,
        c: Call,
        obj: StoredObject,
        typed: Sequence[tuple[bytes, bytes]],
        common: list[tuple[bytes, bytes]],
    ) -> None:
        """Headers (Range: 206, Content-Range), then the bytes (none for HEAD)."""
        ex = c.ex
        span = parse_range(header(c.scope, b"range"), obj.size)
        start, end = span if span is not None else (0, obj.size)
        headers = [(b"content-length", str(end - start).encode()), *typed, *common]
        if span is not None:
            headers.append((b"content-range", f"bytes {start}-{end - 1}/{obj.size}".encode()))
        await obj.prepare(start, end)  # a chunked object's refusals, while they can be 4xx
        await ex.start(206 if span is not None else 200, headers)
        if c.method == "HEAD":
            await ex.body(b"")
            return
        await self._stream(ex, obj, start, end, c.cs)

    async def _get_manifest(self, c: Call, obj_id: str) -> None:
        """``GET /o/{id}?manifest``: a chunked object's root manifest as JSON (its chunks are
        not read); 404 for a raw object."""
        obj = await self._open_verified(obj_id, c.ex, c.receive)
        try:
            if not isinstance(obj, ChunkedObject):
                raise GatewayError("not_found", f"{obj_id} is a raw object: it has no manifest")
            doc = obj.manifest.as_json()
        finally:
            await obj.aclose()
        await c.ex.json(200, doc, [(b"etag", f'"{obj_id}"'.encode())])

    async def _open_verified(self, obj_id: str, ex: Exchange, receive: Receive) -> StoredObject:
        async def hangup() -> None:  # a fetch through a peer stops when its client leaves
            while (await receive())["type"] != "http.disconnect":
                pass

        watch = FetchWatch(ex.deadline.progress if ex.deadline is not None else None, hangup)
        try:
            return await self.backend.open_object(obj_id, self.settings.chunk, watch)
        except GatewayError as err:
            if err.reason == "integrity_failure":
                await self._integrity_failure(obj_id)
            raise

    async def _integrity_failure(self, obj_id: str) -> None:
        """Never served; svc-storage moves it aside and counts it in ``integrity_fail_total``
        (once per object). Only when storage cannot be told does the gateway count it itself."""
        logs.log("integrity_failure", level="error", reason="digest_mismatch", obj=obj_id)
        try:
            await self.backend.quarantine(obj_id)
        except GatewayError as err:
            if self.metrics is not None:
                self.metrics.integrity_fail.inc()
            logs.log("quarantine_failed", level="warning", reason=err.reason, obj=obj_id)

    async def _stream(
        self, ex: Exchange, obj: StoredObject, start: int, end: int, cs: trio.CancelScope
    ) -> None:
        # a chunked object's chunk is in memory, verified: sent whole (16x fewer sends)
        chunk = manifest.CHUNK if isinstance(obj, ChunkedObject) else self.settings.chunk
        pos = start
        if start < len(obj.head):
            piece = obj.head[start:end]
            pos += len(piece)
            await ex.body(piece, more=pos < end)
        while pos < end:
            piece = await obj.read(pos, min(chunk, end - pos))
            if not piece:
                raise RuntimeError(f"object shrank while serving it at offset {pos}")
            pos += len(piece)
            await ex.body(piece, more=pos < end)
            if ex.deadline is not None:
                ex.deadline.progress(len(piece))  # the idle deadline moves, the overall one holds
        if start == end:
            await ex.body(b"")

    async def _check_room(self, length: int, *, so_far: str = "") -> int:
        """507 when ``length`` bytes cannot fit the store; else the bytes it can take (-1:
        unknown). Before the body, on the announced ``Content-Length`` (so before ``100
        Continue``): the client learns it without uploading; during a chunked upload, on the
        bytes received so far. A refusal is always checked against a fresh view (a GC may
        just have made room)."""
        free = await self.backend.free_space()
        if free is not None and (length > free[0] or free[1] < 1):
            free = await self.backend.free_space(fresh=True)
        if free is None:
            return -1
        if length > free[0] or free[1] < 1:
            raise GatewayError(
                "insufficient_storage",
                f"the store can take {free[0]} more bytes and {free[1]} more objects; "
                f"this object is {so_far}{length} bytes",
            )
        return free[0]

    async def _put_object(
        self,
        scope: Scope,
        receive: Receive,
        ex: Exchange,
        cs: trio.CancelScope,
        token: caps.Token | None = None,
    ) -> None:
        # Content-Length or chunked: the body streams either way, so both share one cap
        # (max_object_size) and both are checked before the body (so before ``100 Continue``)
        length = content_length(scope)
        if length is not None and length > self.settings.max_object_size:
            raise GatewayError(
                "object_too_large",
                f"Content-Length {length} is over max_object_size "
                f"({self.settings.max_object_size} bytes)",
            )
        kind = media.upload_type(scope)  # a malformed Content-Type: 400 before the body
        if length:
            await self._check_room(length)
        counter = BodyCounter(self.settings.max_object_size, "object_too_large")
        cap_limit = token.max_size() if token is not None else None
        if cap_limit is not None and cap_limit < counter.cap:
            # a body of unknown size: the token's max_size caveat is enforced as it arrives
            counter = BodyCounter(cap_limit, "cap_denied", "max_size: body")
        body = BodyReader(receive, ex, counter, cs, self.settings.timeout)
        small = self.settings.chunk
        pieces: list[bytes] = []  # joined only if there are several (a small body: usually one)
        buffered = 0
        while buffered <= small:
            piece = await body.next()
            if piece is None:
                data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                if not data:
                    raise GatewayError("empty_body", "PUT /o needs the object as its body")
                check_manifest(data, self.settings.max_object_size)
                stored = await self.backend.put_small(data)
                await self._stored(ex, stored, kind)
                return
            pieces.append(piece)
            buffered += len(piece)
        upload = await self.backend.begin_upload(self.settings.max_object_size)
        try:
            await upload.write(b"".join(pieces))
            del pieces
            room = -1 if length else await self._check_room(buffered)
            while (piece := await body.next()) is not None:
                buffered += len(piece)
                if 0 <= room < buffered:  # past what the store could take: look again, now
                    room = await self._check_room(buffered, so_far="already ")
                await upload.write(piece)
            ex.waiting_on_client = False
            stored = await upload.commit()
        finally:
            await upload.abort()  # a no-op once committed
        await self._stored(ex, stored, kind)

    async def _stored(self, ex: Exchange, stored: Stored, kind: str | None) -> None:
        """The answer to a PUT once it is durable; with a type, once that is recorded too (a
        retry of the idempotent PUT completes what a failure here left)."""
        doc: JsonObject = {"id": stored.id, "size": stored.size}
        if kind is not None:
            await self.backend.set_type(stored.id, kind)
            doc["type"] = kind
        await ex.json(
            201 if stored.created else 200,
            doc,
            [(b"location", f"/o/{stored.id}".encode()), (b"etag", f'"{stored.id}"'.encode())],
        )

    # --- names -----------------------------------------------------------------------------

    async def _get_name(self, ex: Exchange, name: str) -> None:
        await ex.json(200, _name_doc(await self.backend.get_name(name)))

    async def _list_names(self, scope: Scope, ex: Exchange) -> None:
        """``GET /names?prefix=P&after=A&max=N``: names in order, ``more`` when there are more."""
        query = mail_routes.query_of(scope)
        unknown = set(query) - {"prefix", "after", "max"}
        if unknown:
            raise GatewayError("schema_invalid", f"unknown parameter {sorted(unknown)[0]!r}")
        limit = mail_routes.count_of(query, "max", 100, index_proto.LIST_MAX)
        prefix, after = query.get("prefix", ""), query.get("after", "")
        if len(prefix) > index_proto.NAME_MAX or len(after) > index_proto.NAME_MAX:
            raise GatewayError(
                "schema_invalid", f"prefix and after are at most {index_proto.NAME_MAX} characters"
            )
        listed = await self.backend.list_names(prefix, after, limit)
        await ex.json(200, {"names": [_name_doc(r) for r in listed.names], "more": listed.more})

    async def _put_name(
        self, scope: Scope, receive: Receive, ex: Exchange, name: str, cs: trio.CancelScope
    ) -> None:
        cap = min(NAME_BODY_CAP, self.settings.body_cap)
        length = content_length(scope)
        if length is not None and length > cap:
            raise GatewayError("body_too_large", f"a names body is at most {cap} bytes")
        body = BodyReader(
            receive, ex, BodyCounter(cap, "body_too_large"), cs, self.settings.timeout
        )
        raw = bytearray()
        while (piece := await body.next()) is not None:
            raw += piece
        obj_id, expect, kind = _parse_name_body(bytes(raw))
        await ex.json(200, _name_doc(await self.backend.put_name(name, obj_id, expect, kind)))

    async def _serve_name(self, c: Call, path: str) -> None:
        """``GET|HEAD /n/{name}``: the bytes a name points at, typed; ``dir/`` serves
        ``dir/index.html``; ``dir`` without its slash, when only ``dir/index.html`` exists, is
        redirected there (so the page's relative links resolve under it)."""
        name = path + INDEX_PAGE if path.endswith("/") else path
        record = await self._name_record(name)
        if (
            record is None
            and not path.endswith("/")
            and await self._name_record(name + "/" + INDEX_PAGE) is not None
        ):
            where = "/n/" + urllib.parse.quote(name, safe="/") + "/"
            await c.ex.start(301, [(b"location", where.encode()), (b"content-length", b"0")])
            await c.ex.body(b"")
            return
        if record is None:
            raise GatewayError("no_name", f"no name {name!r:.300} on this node")
        kind = media.name_type(record.type, record.name)
        typed = media.typed_headers(kind, self.settings.html_csp)
        await self._get_object(c, record.id, typed, CACHE_NAMED)

    async def _name_record(self, name: str) -> NameRecord | None:
        """The name's record; None when there is none, or when ``name`` cannot be one (a
        path that cannot be a name is a page that does not exist, not a malformed request)."""
        try:
            index_proto.check_name(name)
        except oap.OapError:
            return None
        try:
            return await self.backend.get_name(name)
        except GatewayError as err:
            if err.reason == "not_found":
                return None
            raise


MAX_VERSION = (1 << 63) - 1  # svc-index stores versions as SQLite INTEGERs
_TOO_BIG = object()  # a JSON integer of more digits than any version has


def _small_int(text: str) -> object:
    return int(text) if len(text.lstrip("-")) <= 19 else _TOO_BIG


_NAME_BODY = '{"id": "b3:...", "expect_version"?: N, "type"?: "text/html"}'


def _parse_name_body(raw: bytes) -> tuple[str, int | None, str | None]:
    try:
        doc = json.loads(raw, parse_int=_small_int)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        raise GatewayError("bad_json", f"expected JSON {_NAME_BODY}") from None
    if (
        not isinstance(doc, dict)
        or not set(doc) <= {"id", "expect_version", "type"}
        or "id" not in doc
    ):
        raise GatewayError("schema_invalid", f"expected {_NAME_BODY}")
    obj_id = doc["id"]
    if not isinstance(obj_id, str):
        raise GatewayError("schema_invalid", "id must be a string")
    kind = doc.get("type")
    if kind is not None:
        if not isinstance(kind, str):
            raise GatewayError("schema_invalid", "type must be a string (a media type)")
        kind = media.media_type(kind, "type")
    if "expect_version" not in doc:
        return parse_object_id(obj_id), None, kind
    expect = doc["expect_version"]
    if type(expect) is not int or not 0 <= expect <= MAX_VERSION:
        raise GatewayError(
            "schema_invalid",
            f"expect_version must be an integer 0..{MAX_VERSION} (omit it for none)",
        )
    return parse_object_id(obj_id), expect, kind


def _name_doc(record: NameRecord) -> JsonObject:
    """A name's JSON; ``type`` only when it has one (the shape of untyped names is unchanged)."""
    doc: JsonObject = {"name": record.name, "id": record.id, "version": record.version}
    if record.type:
        doc["type"] = record.type
    return doc


# --- the routes (DESIGN.md §8; specs/gateway-openapi.yaml) -----------------------------------


async def _put_object(app: GatewayApp, c: Call) -> None:
    await app.keys_loaded()
    token = app._authorize(c.scope, "put", None)
    await app._put_object(c.scope, c.receive, c.ex, c.cs, token)


# a GET of an id with no query (most of them): bytes, whatever the settings (no CSP on bytes)
_OCTET_HEADERS = tuple(media.typed_headers(media.OCTETS, ""))
_OBJECT_ROUTE, _GET_OBJECT = "/o/{id}", "gateway_get_object"
# request headers that make a GET more than "the bytes": such a GET takes the ordinary path
_NOT_PLAIN = frozenset({b"range", b"if-none-match"})


def _never() -> bool:
    return False


def object_headers(obj_id: str, cache: bytes) -> list[tuple[bytes, bytes]]:
    """What every answer about an object's bytes says besides its type and length."""
    return [
        (b"etag", f'"{obj_id}"'.encode()),
        (b"cache-control", cache),
        (b"accept-ranges", b"bytes"),
    ]


async def _get_object(app: GatewayApp, c: Call) -> None:
    obj_id = parse_object_id(c.params["id"])
    if not c.scope.get("query_string"):
        await app._get_object(c, obj_id, _OCTET_HEADERS)
        return
    query = mail_routes.query_of(c.scope)
    if "manifest" in query:
        await app._get_manifest(c, obj_id)
        return
    kind, extra = media.download_type(query)
    typed = media.typed_headers(kind, app.settings.html_csp)
    await app._get_object(c, obj_id, [*typed, *extra])


async def _serve_name(app: GatewayApp, c: Call) -> None:
    await app._serve_name(c, c.params["name"])


async def _list_names(app: GatewayApp, c: Call) -> None:
    await app._list_names(c.scope, c.ex)


async def _get_name(app: GatewayApp, c: Call) -> None:
    await app._get_name(c.ex, check_name(c.params["name"], c.scope))


async def _put_name(app: GatewayApp, c: Call) -> None:
    name = check_name(c.params["name"], c.scope)
    await app.keys_loaded()
    app._authorize(c.scope, "name", name)
    await app._put_name(c.scope, c.receive, c.ex, name, c.cs)


def _mail(serve: mail_routes.MailServe) -> Callable[[GatewayApp, Call], Awaitable[None]]:
    async def handle(app: GatewayApp, c: Call) -> None:
        await app.keys_loaded()
        await serve(app.mail, c, app._authorize)

    return handle


def _mail_routes() -> list[Route[Op]]:
    by_template: dict[str, dict[str, Op]] = {}
    for template, method, serve, admission in mail_routes.MAIL_ROUTES:
        op = Op(mail_routes.label(template), _mail(serve), admission)
        by_template.setdefault(template, {})[method] = op
    return [Route(template, methods) for template, methods in by_template.items()]


ROUTES: Router[Op] = Router(
    [
        Route("/o", {"PUT": Op("gateway_put_object", _put_object, "write")}),
        Route(
            _OBJECT_ROUTE,
            {
                "GET": Op(_GET_OBJECT, _get_object),
                "HEAD": Op("gateway_head_object", _get_object),
            },
        ),
        Route("/names", {"GET": Op("gateway_list_names", _list_names)}),
        Route(
            "/names/{name}",
            {
                "GET": Op("gateway_get_name", _get_name),
                "PUT": Op("gateway_put_name", _put_name, "write"),
            },
            tail=True,  # names may hold "/" (svc-index decides what is valid)
        ),
        Route(
            "/n/{name}",
            {
                "GET": Op("gateway_get_by_name", _serve_name),
                "HEAD": Op("gateway_head_by_name", _serve_name),
            },
            tail=True,  # site/img/logo.png; site/ serves site/index.html
        ),
        *_mail_routes(),
    ]
)
"""Every route of the gateway: a template, and per method its handler, latency op and
admission class (``services.gateway.call``)."""
