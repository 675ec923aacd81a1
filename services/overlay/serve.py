"""What svc-overlay answers a peer on one connection: HELLO, object streams, name lookups.

Guarantees:

- an object is verified whole against its id before its START frame is sent (never a byte of
  a corrupt object: it is reported to svc-storage for quarantine and answered 500
  ``integrity_failure``); a missing one is 404 ``not_found``;
- requests on one connection run concurrently, at most ``inflight`` at once (one more is
  answered 429 ``busy``), each stream's frames sent in order through the channel's writer;
- a frame the decoder refuses (over ``max_frame``: 413 ``frame_too_large``, or malformed) is
  answered with one error frame and the connection is closed (OAP errors are final);
- when the connection goes away, its streams stop (their tasks are cancelled with it);
- uploads (``put``) are checked against the write token before a byte is stored, verified
  against their id and committed through svc-storage (``services.overlay.upload``);
- mailbox requests (svc-mailbox's protocol) are authorized (``services.overlay.mail``) before
  they are relayed to svc-mailbox, whose answer goes back as it is;
- DHT requests (svc-dht's peer protocol) are relayed to svc-dht with ``via`` (the node id the
  connection proved, None for an anonymous client) and ``ip`` stamped over whatever the sender
  wrote; 503 ``unavailable`` when the node runs no svc-dht.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from pathlib import Path

import attrs
import trio

from ipc import ids, manifest, oap
from ipc.proto import dht, index, mailbox, overlay, storage
from ipc.proto.codec import AnyRequest, Request
from ipc.transport import ChannelClosed, Connection
from ipc.transport.budget import Grant, SendBudget
from ipc.transport.pq_exchange import listener_answer
from kernel import logs
from kernel.key_feed import FirstKeys
from services.lib import objstore
from services.lib.tokens import TokenGate
from services.overlay.mail import authorize_mail
from services.overlay.upload import Commit, Uploads, authorize

__all__ = ["PeerServer"]

BLOCK = 1 << 20  # bytes read from the store per thread hop (sent as 64 KiB DATA chunks)
VERIFIERS = 4
DEFAULT_BUDGET = 64 << 20  # bytes held for sending by all streams at once (``send_budget``)
GROUP = 16  # DATA chunks handed to the writer at once (1 MiB: the channel bounds how many wait)
IndexCall = Callable[[Request[index.NameRecord]], Awaitable[index.NameRecord]]
Quarantine = Callable[[str], Awaitable[None]]
MailCall = Callable[[oap.Frame, float], Awaitable[oap.Frame]]
"""A mailbox request frame to svc-mailbox (and how long a receive may wait): its answer frame."""
DhtCall = Callable[[oap.Frame], Awaitable[oap.Frame]]
"""A DHT request frame (svc-dht's local protocol, stamped) to svc-dht: its answer frame."""


class PeerServer:
    """The handler ``ipc.transport.Listener`` runs for every connection."""

    def __init__(
        self,
        store_root: Path,
        hello: oap.HelloResponse,
        *,
        resolve: IndexCall,
        quarantine: Quarantine,
        inflight: int,
        node_id: str = "",
        pq_mode: str = "off",
        gate: TokenGate | None = None,
        first_keys: FirstKeys | None = None,
        commit: Commit | None = None,
        mail: MailCall | None = None,
        dht_call: DhtCall | None = None,
        federation: AbstractSet[str] = frozenset(),
        budget: SendBudget | None = None,
        mail_from: str = "peers",
    ) -> None:
        # bytes held for sending, in all and per source IP / node id (a reader that does not
        # read holds its share until the write timeout cuts it, never more)
        self.budget = budget or SendBudget(DEFAULT_BUDGET, DEFAULT_BUDGET // 4)
        # whole-object verifications at once (each hashes the object before its first byte):
        # a flood of GETs costs a queue, not a thread and a buffer each
        self.verifying = trio.CapacityLimiter(VERIFIERS)
        self.mail = mail  # None: this node runs no svc-mailbox
        self.dht = dht_call  # None: this node runs no svc-dht
        self.federation = federation  # node ids whose outboxes may forward without a token
        self.mail_from = mail_from  # "nodes": any proven node may, "peers": the listed ones
        self.gate = gate  # None: writes are open (auth.writes = "open"), else tokens checked
        # the gate's first key set (a KeyFeed sets it; nothing to wait for without a gate)
        self.first_keys = first_keys if first_keys is not None else FirstKeys(None)
        self.commit = commit  # None: this server takes no uploads
        self.node_id = node_id  # ours: the listener's id in the PQ key derivation
        self.pq_mode = pq_mode
        self.root = store_root
        self.hello = hello
        self.resolve = resolve
        self.quarantine = quarantine
        self.inflight = inflight
        self.streams = 0  # object streams being sent now (all connections)
        self.inbound: dict[int, Connection] = {}  # by conn_id: the nodes connected to us

    def _forwarders(self, conn: Connection) -> AbstractSet[str]:
        """The node ids whose forwarded sends this connection may carry without a token: its
        own proven id when ``mail_from`` is ``nodes`` or it is a listed peer, else none."""
        if conn.peer_id and (self.mail_from == "nodes" or conn.peer_id in self.federation):
            return frozenset((conn.peer_id,))
        return frozenset()

    def inbound_peers(self) -> list[overlay.PeerState]:
        """The nodes connected to us now (one entry per node; anonymous clients left out)."""
        seen: dict[str, overlay.PeerState] = {}
        for conn in self.inbound.values():
            if conn.peer_id and conn.peer_id not in seen:
                host, port = conn.remote[:2]
                shown = f"[{host}]" if ":" in host else host
                seen[conn.peer_id] = overlay.PeerState(
                    node_id=conn.peer_id,
                    addr=f"{conn.peer_id}@{shown}:{port}",
                    state="connected",
                    pq="pq" if conn.channel.sealed else "",
                    bytes_in=0,
                    bytes_out=0,
                    direction="in",
                    listed=False,
                )
        return list(seen.values())

    async def __call__(self, conn: Connection) -> None:
        self.inbound[conn.conn_id] = conn
        try:
            await self._serve(conn)
        finally:
            del self.inbound[conn.conn_id]

    async def _serve(self, conn: Connection) -> None:
        slots = trio.Semaphore(self.inflight)
        async with trio.open_nursery() as nursery:
            uploads = Uploads(conn, self.root, self.commit or _no_commit, self.inflight)
            try:
                while True:
                    try:
                        frame = await conn.channel.receive()
                    except oap.OapError as exc:  # the stream is not OAP/1 any more: answer, close
                        logs.log(
                            "peer_protocol_error",
                            level="warning",
                            reason=exc.reason,
                            conn_id=conn.conn_id,
                            peer=conn.peer_id or f"{conn.remote[0]}:{conn.remote[1]}",
                        )
                        await _answer_error(conn, oap.Frame(flags=oap.REQ), exc)
                        return
                    if uploads.owns(frame):  # DATA/END of an upload in progress
                        await uploads.route(frame)
                        continue
                    if oap.is_hello_request(frame):
                        await conn.channel.send(oap.hello_response(frame, self.hello))
                        continue
                    try:
                        if frame.app_proto_id == mailbox.MAILBOX_PROTO:
                            request = mailbox.PROTOCOL.parse_request(frame)
                        elif frame.app_proto_id == dht.PEER_PROTO:
                            request = self._stamp_dht(conn, frame)
                        else:
                            request = overlay.PEER.parse_request(frame)
                    except oap.OapError as exc:
                        await _answer_error(conn, frame, exc)
                        continue
                    if isinstance(request, overlay.Pq):  # in line: keys before the next frame
                        await self._pq(conn, frame, request)
                        continue
                    if self.pq_mode == "required" and not conn.channel.sealed:
                        err = oap.OapError("pq_required", "pq.mode = required: send pq first")
                        await _answer_error(conn, frame, err)
                        if isinstance(request, overlay.Put):
                            uploads.refuse(frame)
                        continue
                    if isinstance(request, overlay.Put):
                        try:
                            if self.commit is None:
                                raise oap.OapError("unavailable", "this node takes no uploads")
                            await self.first_keys.wait()
                            authorize(self.gate, frame, request)
                            uploads.start(nursery, frame, request)
                        except oap.OapError as exc:
                            uploads.refuse(frame)
                            await _answer_error(conn, frame, exc)
                        continue
                    if frame.app_proto_id == mailbox.MAILBOX_PROTO:
                        try:
                            if self.mail is None:
                                raise oap.OapError("unavailable", "this node runs no mailbox")
                            await self.first_keys.wait()
                            stamped = authorize_mail(
                                self.gate,
                                frame,
                                request,
                                peer_id=conn.peer_id,
                                federation=self._forwarders(conn),
                                node_id=self.node_id,
                            )
                        except oap.OapError as exc:
                            await _answer_error(conn, frame, exc)
                            continue
                        if stamped is not None:  # a send: relayed with its origin or owner
                            request = stamped
                            frame = mailbox.PROTOCOL.request_frame(stamped, corr_id=frame.corr_id)
                    try:
                        slots.acquire_nowait()
                    except trio.WouldBlock:
                        err = oap.OapError(
                            "busy", f"{self.inflight} requests in flight", retry_after=1
                        )
                        await _answer_error(conn, frame, err)
                        continue
                    nursery.start_soon(self._one, conn, frame, request, slots)
            except ChannelClosed:
                pass
            finally:
                nursery.cancel_scope.cancel()

    def _stamp_dht(self, conn: Connection, frame: oap.Frame) -> AnyRequest:
        """A DHT request as svc-dht must see it: ``via`` and ``ip`` are what this connection
        proved, never what the sender wrote."""
        request = dht.PEER.parse_request(frame)
        stamped: AnyRequest = attrs.evolve(request, via=conn.peer_id, ip=conn.remote[0])  # type: ignore[misc]
        return stamped

    async def _pq(self, conn: Connection, frame: oap.Frame, request: overlay.Pq) -> None:
        try:
            reply, _ = listener_answer(
                conn.channel, request, self.pq_mode, dialer=conn.peer_id, listener=self.node_id
            )
        except oap.OapError as exc:
            await _answer_error(conn, frame, exc)
            return
        await conn.channel.send(overlay.PEER.reply_frame(frame, reply))

    async def _one(
        self, conn: Connection, frame: oap.Frame, request: object, slots: trio.Semaphore
    ) -> None:
        try:
            with conn.channel.serving():  # the peer waits for this: it is not idle meanwhile
                await self._answer(conn, frame, request)
        except oap.OapError as exc:
            await _answer_error(conn, frame, exc)
        except ChannelClosed:
            pass
        finally:
            slots.release()

    async def _answer(self, conn: Connection, frame: oap.Frame, request: object) -> None:
        if isinstance(request, overlay.Get):
            await self._stream(conn, frame, request.id)
        elif isinstance(request, overlay.Resolve):
            record = await self.resolve(index.GetName(name=request.name))
            await conn.channel.send(overlay.PEER.reply_frame(frame, record))
        elif frame.app_proto_id == dht.PEER_PROTO:
            if self.dht is None:
                raise oap.OapError("unavailable", "this node runs no DHT")
            # relayed with the connection's proven node id and address stamped in; the
            # answer goes back under the peer protocol's id
            assert isinstance(request, dht.PEER_REQUESTS)  # parsed by dht.PEER (see __call__)
            relayed = dht.LOCAL.request_frame(request, corr_id=frame.corr_id)
            answer = await self.dht(relayed)
            await conn.channel.send(
                attrs.evolve(answer, corr_id=frame.corr_id, app_proto_id=dht.PEER_PROTO)
            )
        elif self.mail is not None:  # a mailbox request, authorized (see __call__)
            # relayed as it came (decoded once, to authorize it; the token stays here) and
            # answered with svc-mailbox's frame as it is: no decoding and encoding again
            wait = request.wait if isinstance(request, mailbox.Receive) else 0.0
            answer = await self.mail(attrs.evolve(frame, cap=b""), wait)
            await conn.channel.send(attrs.evolve(answer, corr_id=frame.corr_id))

    async def _stream(self, conn: Connection, req: oap.Frame, obj_id: str) -> None:
        try:
            obj = await trio.to_thread.run_sync(
                objstore.open_verified, self.root, obj_id, limiter=self.verifying
            )
        except objstore.NotFound:
            raise oap.OapError("not_found", f"no object {obj_id} here") from None
        except objstore.IntegrityError:
            logs.log(
                "integrity_failure",
                level="error",
                id=obj_id,
                reason="integrity_failure",
                conn_id=conn.conn_id,
                corr_id=req.corr_id,
            )
            await self.quarantine(obj_id)
            raise oap.OapError("integrity_failure", f"{obj_id} failed verification") from None
        except ids.BadId as exc:
            raise oap.OapError("schema_invalid", str(exc)) from None
        self.streams += 1
        sealed = oap.APP_E2E if conn.channel.sealed else 0  # PQ: object bytes sealed again
        try:
            head = obj.read(0, len(manifest.MAGIC)) if obj.size <= objstore.READ_CHUNK else b""
            kind = "manifest" if manifest.is_manifest(head) else "raw"
            start = oap.Start(obj=obj_id, size=obj.size, kind=kind)
            await conn.channel.send(_part(req, oap.START, oap.pack_payload(start)))
            off = 0
            keys = (conn.remote[0], conn.peer_id) if conn.peer_id else (conn.remote[0],)
            while off < obj.size:
                grant = await self.budget.acquire(keys, min(BLOCK, obj.size - off))
                try:
                    await self._send_block(conn, req, obj, obj_id, off, grant, sealed)
                except BaseException:
                    grant.release()  # not queued: ours to give back (else the channel's)
                    raise
                off += grant.n
            end = oap.End(obj=obj_id)
            await conn.channel.send(_part(req, oap.END, oap.pack_payload(end)))
        finally:
            self.streams -= 1
            obj.close()

    async def _send_block(
        self,
        conn: Connection,
        req: oap.Frame,
        obj: objstore.VerifiedObject,
        obj_id: str,
        off: int,
        grant: Grant,
        sealed: int,
    ) -> None:
        """``grant.n`` bytes from ``off``, as DATA chunks in groups; the grant goes back when
        the last group is written."""
        if obj.size <= objstore.READ_CHUNK:
            block = obj.read(off, grant.n)  # a slice of the verified copy
        else:  # one thread hop per block, not per 64 KiB chunk
            block = await trio.to_thread.run_sync(obj.read, off, grant.n)
        view = memoryview(block)
        parts = [
            _part(
                req,
                sealed,
                oap.pack_payload(
                    oap.Data(obj=obj_id, off=off + at, data=bytes(view[at : at + oap.CHUNK]))
                ),
            )
            for at in range(0, len(block), oap.CHUNK)
        ]
        del block, view  # the frames hold the bytes now
        for at in range(0, len(parts), GROUP):  # one hand-off per GROUP chunks
            last = at + GROUP >= len(parts)
            await conn.channel.send_many(
                parts[at : at + GROUP], on_written=grant.release if last else None
            )


async def _no_commit(_req: storage.Commit) -> storage.Stored:
    raise oap.OapError("unavailable", "this node takes no uploads")


def _part(req: oap.Frame, flag: int, payload: bytes) -> oap.Frame:
    return oap.Frame(
        flags=oap.RESP | flag,
        code=200,
        app_proto_id=req.app_proto_id,
        tenant_id=req.tenant_id,
        corr_id=req.corr_id,
        payload=payload,
    )


async def _answer_error(conn: Connection, req: oap.Frame, err: oap.OapError) -> None:
    with contextlib.suppress(ChannelClosed):
        await conn.channel.send(oap.error_frame(req, err))
