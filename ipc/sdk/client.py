"""The app SDK's trio client: talk OAP/1 to a node's overlay like another node would.

    async with AsyncClient.connect("node:<hex>@127.0.0.1:9410") as node:
        info = await node.hello()
        size = await node.get_to(obj_id, sink)      # sink(bytes) per verified-so-far chunk
        data = await node.get(obj_id)               # whole, verified, at most max_size bytes
        record = await node.resolve("docs/readme")

Guarantees:

- the node is the one the address names (TLS 1.3, pinned by node id; ``DialError`` otherwise);
- ``get``/``get_to`` check every chunk's place and the whole BLAKE3 digest against the id: a
  mismatch is ``SdkError("digest_mismatch")`` and ``get`` returns nothing; ``get_to`` has passed
  the chunks on by then (write to a temp file and rename after, as ``ronctl get -o`` does); an
  object over 1 MiB is fetched as its manifest and then chunk by chunk, each verified before
  it is passed on (``specs/objects.md``), and ``put`` stores one so;
- failures are typed: ``SdkError`` carries the node's OAP ``reason``, ``code``, ``detail`` and
  ``retry_after``;
- every call takes an optional ``corr_id`` (u64): it travels in the request frames and comes
  back in the answers, so the node's log lines about it carry the caller's id;
- only idempotent operations are retried (HELLO, get, resolve): on a lost connection, ``busy``,
  ``peer_limit``, ``rate_limited``, ``not_ready`` or ``unavailable``, after 50-100 ms of jitter
  (or the node's ``retry_after``, capped at 2 s), at most 3 tries in all (the seeds' policy).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import blake3
import trio

from ipc import ids, manifest, oap
from ipc.proto import index, overlay
from ipc.sdk.errors import SdkError
from ipc.sdk.mail import Mailbox
from ipc.transport import (
    ChannelClosed,
    DialError,
    Limits,
    NodeCertificate,
    PeerAddr,
    dial,
    pq,
)
from ipc.transport.client import PeerClient, read_object
from ipc.transport.pq_exchange import PqRefused, dialer_exchange

__all__ = ["AsyncClient", "SdkError", "upload_frames"]

TRIES = 3
RETRY_CAP = 2.0
RETRYABLE = frozenset({"busy", "peer_limit", "rate_limited", "not_ready", "unavailable", "lost"})
T = TypeVar("T")


class AsyncClient:
    """One connection to one node (reconnected for a retry). Use ``AsyncClient.connect``."""

    def __init__(
        self,
        addr: PeerAddr,
        nursery: trio.Nursery,
        *,
        identity: NodeCertificate | None,
        tls: bool,
        timeout: float,
        pq_mode: str = "off",
    ) -> None:
        self.pq_mode = pq_mode
        self.pq = ""  # this connection's posture: pq, fallback or off
        self.addr = addr
        self._nursery = nursery
        self._identity = identity
        self._tls = tls
        self.timeout = timeout
        self._client: PeerClient | None = None

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        addr: str | PeerAddr,
        *,
        identity: NodeCertificate | None = None,
        tls: bool = True,
        timeout: float = 10.0,
        pq_mode: str | None = None,
    ) -> AsyncIterator[AsyncClient]:
        """A client of the node at ``addr`` (``<node id>@host:port``); anonymous unless
        ``identity`` (a node's certificate) is given. Connects at once (``DialError``).
        ``pq_mode``: ``off``, ``hybrid`` (the default where ML-KEM-768 is available: object
        payloads sealed again when the node can) or ``required``."""
        if pq_mode is None:
            pq_mode = "hybrid" if pq.available() else "off"
        peer = addr if isinstance(addr, PeerAddr) else PeerAddr.parse(addr)
        try:
            async with trio.open_nursery() as nursery:
                client = cls(
                    peer, nursery, identity=identity, tls=tls, timeout=timeout, pq_mode=pq_mode
                )
                await client._link()
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # the caller sees its own error (or the dial's), not trio's wrapping of it
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _link(self) -> PeerClient:
        if self._client is not None and not self._client.closed.is_set():
            return self._client
        limits = Limits(handshake_timeout=self.timeout)
        conn = await dial(self.addr, self._identity, self._nursery, limits=limits, tls=self._tls)
        client = PeerClient(conn)
        await self._nursery.start(client.run)
        try:
            self.pq = await dialer_exchange(
                client,
                self.pq_mode,
                dialer=self._identity.node_id if self._identity else None,
                listener=self.addr.node_id,
                timeout=self.timeout,
            )
        except PqRefused as exc:
            await conn.channel.aclose()
            raise DialError("pq_refused", str(exc)) from None
        self._client = client
        return client

    async def _retrying(
        self, op: Callable[[PeerClient], Awaitable[T]], *, retry_lost: bool = True
    ) -> T:
        """``op`` on the link, retried on the reasons of ``RETRYABLE`` (``lost`` only when
        ``retry_lost``: an operation that must not run twice is not retried once sent)."""
        for attempt in range(1, TRIES + 1):
            try:
                try:
                    return await op(await self._link())
                except (ChannelClosed, DialError) as exc:
                    raise SdkError("lost", str(exc), code=502) from None
                except oap.OapError as exc:
                    raise SdkError.of(exc) from None
                except trio.TooSlowError:
                    raise SdkError("timeout", f"no answer in {self.timeout} s", code=504) from None
            except SdkError as err:
                if err.reason not in RETRYABLE or attempt == TRIES:
                    raise
                if err.reason == "lost" and not retry_lost:
                    raise
                pause = random.uniform(0.05, 0.1)
                if err.retry_after:
                    pause = max(pause, float(err.retry_after))
                await trio.sleep(min(pause, RETRY_CAP))
        raise AssertionError("unreachable")

    async def hello(self, *, corr_id: int = 0) -> oap.HelloResponse:
        async def op(client: PeerClient) -> oap.HelloResponse:
            frame = await client.request(oap.hello_request(corr_id), timeout=self.timeout)
            oap.raise_for_status(frame)
            return oap.unpack_payload(oap.HelloResponse, frame.payload)

        result: oap.HelloResponse = await self._retrying(op)
        return result

    async def resolve(self, name: str, *, corr_id: int = 0) -> index.NameRecord:
        async def op(client: PeerClient) -> index.NameRecord:
            req = overlay.Resolve(name=name)
            frame = overlay.PEER.request_frame(req, corr_id=corr_id)
            return overlay.PEER.parse_reply(await client.request(frame, timeout=self.timeout), req)

        record: index.NameRecord = await self._retrying(op)
        return record

    async def get(self, obj_id: str, *, max_size: int = 64 << 20, corr_id: int = 0) -> bytes:
        """The whole object, verified (``SdkError("too_large")`` past ``max_size``)."""
        parts: list[bytes] = []

        def keep(piece: bytes) -> None:
            parts.append(piece)

        async def op(client: PeerClient) -> bytes:
            parts.clear()
            await _object(client, obj_id, keep, self.timeout, max_size, corr_id)
            return b"".join(parts)

        data: bytes = await self._retrying(op)
        return data

    async def put(self, data: bytes, token: str, *, corr_id: int = 0) -> overlay.Stored:
        """Store ``data`` on the node (``token``: a write token for it, e.g. from ``ronctl
        token mint``); its reply once durable there. Content-addressed, so a retry is safe and
        is done like any idempotent call. Over 1 MiB, the data goes as its chunks and then its
        manifests (``specs/objects.md``): the reply names the object's id and whole size."""
        if len(data) > manifest.CHUNK:
            view = memoryview(data)
            digests = []
            for off in range(0, len(data), manifest.CHUNK):
                piece = bytes(view[off : off + manifest.CHUNK])
                digests.append(bytes.fromhex(ids.parse_id((await self.put(piece, token)).id)))
            for listing in manifest.build(digests, len(data)):  # the root last
                root = await self.put(listing, token, corr_id=corr_id)
            return overlay.Stored(id=root.id, size=len(data), created=root.created)
        obj_id = ids.id_of(data)
        first, rest = upload_frames(obj_id, data, token, corr_id=corr_id)

        async def op(client: PeerClient) -> overlay.Stored:
            answer = await client.upload(first, rest, timeout=self.timeout + len(data) / 1e6)
            reply: overlay.Stored = overlay.PEER.parse_reply(
                answer, overlay.Put(id=obj_id, size=len(data))
            )
            return reply

        stored: overlay.Stored = await self._retrying(op)
        return stored

    def mailbox(self, name: str, token: str) -> Mailbox:
        """The mailbox ``name`` on this node (``name@node:<hex>``: on another node, reached
        through this one's outbox; sends only), used with ``token`` (op ``mail``)."""
        return Mailbox(self, name, token)

    async def get_to(
        self, obj_id: str, sink: Callable[[bytes], object], *, corr_id: int = 0
    ) -> int:
        """Stream the object into ``sink``; its size once the digest matched. Retried only if
        nothing reached ``sink`` yet."""
        delivered = 0

        def counted(piece: bytes) -> None:
            nonlocal delivered
            delivered += len(piece)
            sink(piece)

        async def op(client: PeerClient) -> int:
            if delivered:
                raise SdkError("lost", "the stream broke off after bytes were delivered", code=502)
            return await _object(client, obj_id, counted, self.timeout, None, corr_id)

        try:
            size: int = await self._retrying(op)
        except SdkError as err:
            if delivered and err.reason == "lost":
                err.reason = "broken"  # not retryable: the sink holds a partial object
            raise
        return size


def upload_frames(
    obj_id: str, data: bytes, token: str, *, corr_id: int = 0
) -> tuple[oap.Frame, list[oap.Frame]]:
    """The frames of a ``put`` of ``data`` claimed to be ``obj_id``: the REQ|START frame with the
    token in its capability segment, then the DATA chunks and the END frame."""
    first = oap.Frame(
        flags=oap.REQ | oap.START,
        app_proto_id=overlay.PEER_PROTO,
        corr_id=corr_id,
        cap=token.encode("ascii"),
        payload=overlay.PEER.request_frame(overlay.Put(id=obj_id, size=len(data))).payload,
    )
    view = memoryview(data)
    rest = [
        oap.Frame(
            flags=oap.REQ,
            app_proto_id=overlay.PEER_PROTO,
            payload=oap.pack_payload(
                oap.Data(obj=obj_id, off=off, data=bytes(view[off : off + oap.CHUNK]))
            ),
        )
        for off in range(0, len(data), oap.CHUNK)
    ]
    end = oap.Frame(
        flags=oap.REQ | oap.END,
        app_proto_id=overlay.PEER_PROTO,
        payload=oap.pack_payload(oap.End(obj=obj_id)),
    )
    return first, [*rest, end]


async def _object(
    client: PeerClient,
    obj_id: str,
    sink: Callable[[bytes], object],
    timeout: float,
    max_size: int | None,
    corr_id: int = 0,
) -> int:
    """Object ``obj_id`` into ``sink`` whatever its kind: a raw one as it streams; a chunked
    one chunk by chunk, each verified against its manifest before it reaches ``sink``; the
    object's size. What is stored under an id of up to one chunk is held until verified."""
    parts: list[bytes] = []
    size = 0

    def keep(piece: bytes) -> None:
        parts.append(piece)

    async def small(piece_id: str, limit: int) -> bytes:
        parts.clear()
        await _stream(client, piece_id, keep, timeout, limit, corr_id)
        return b"".join(parts)

    try:  # up to one chunk: held (it may be a manifest); larger: a raw object, streamed
        data = await small(obj_id, manifest.CHUNK)
    except oap.OapError as exc:
        if exc.reason != "too_large":
            raise
        return await _stream(client, obj_id, sink, timeout, max_size, corr_id)
    if not manifest.is_manifest(data):
        if max_size is not None and len(data) > max_size:
            raise oap.OapError("too_large", f"{obj_id} is {len(data)} bytes, over {max_size}")
        sink(data)
        return len(data)
    try:
        root = manifest.decode(data, max_size=max_size or manifest.MAX_SIZE)
    except manifest.ManifestError as exc:
        reason = "too_large" if exc.reason == "object_too_large" else exc.reason
        raise oap.OapError(reason, exc.detail) from None

    async def walk(node: manifest.Manifest) -> None:
        nonlocal size
        for i in range(len(node.entries)):
            piece = await small(node.entry_id(i), manifest.CHUNK)
            if node.level == 0:
                if len(piece) != node.entry_size(i) or manifest.is_manifest(piece):
                    raise oap.OapError("manifest_invalid", f"chunk {i} of {obj_id} is wrong")
                sink(piece)
                size += len(piece)
                continue
            try:
                sub = manifest.decode(piece, root=False)
            except manifest.ManifestError as exc:
                raise oap.OapError(exc.reason, exc.detail) from None
            if sub.size != node.entry_size(i) or sub.level >= node.level:
                raise oap.OapError("manifest_invalid", f"sub-manifest {i} of {obj_id}")
            await walk(sub)

    await walk(root)
    return size


async def _stream(
    client: PeerClient,
    obj_id: str,
    sink: Callable[[bytes], object],
    timeout: float,
    max_size: int | None,
    corr_id: int = 0,
) -> int:
    frame = overlay.PEER.request_frame(overlay.Get(id=obj_id), corr_id=corr_id)
    hasher = blake3.blake3()

    async def chunk(piece: bytes) -> None:
        hasher.update(piece)
        sink(piece)

    async with client.exchange(frame) as answers:
        size = await read_object(
            answers, obj_id, first_timeout=timeout, timeout=timeout, max_size=max_size, chunk=chunk
        )
    got = "b3:" + hasher.hexdigest()
    if got != obj_id:
        raise oap.OapError("digest_mismatch", f"the bytes received hash to {got}, not {obj_id}")
    return size
