"""Dialing peers and serving them: TLS 1.3 connections known by node id, under explicit limits.

Guarantees:

- ``dial`` connects, handshakes and checks the pin within ``handshake_timeout``; a peer whose
  certificate does not carry the address's node id is refused before any application byte
  (``PinMismatch``), counted (``dialed("pin_mismatch")``) and logged by the caller;
- ``Listener`` serves at most ``max_conns`` connections at once (one more is closed at once,
  before any handshake: counted as ``busy``), ``per_ip`` from one IP address and ``per_peer``
  per peer (a node by its node id, an anonymous client by its IP address; one more gets one OAP
  error frame ``peer_limit`` with ``retry_after``, then the close), before the handler sees
  anything. Connections still in their TLS handshake count apart, at most ``max_handshakes``
  in all and ``handshakes_per_ip`` from one IP (one more is closed at once: ``handshake_limit``),
  each cut at ``handshake_timeout``: sockets that never handshake cannot take the places of
  established peers (kubo's resource manager is the model). Every limit is a setting (libp2p's
  hidden limits are the lesson);
- the handler gets a ``Connection`` whose ``channel`` writer is already running; when the
  handler returns or the peer goes away, its tasks are cancelled and the socket closed;
- plain TCP (no TLS) only when ``tls=False`` is passed explicitly (tests, local development).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import attrs
import trio

from ipc import oap

from . import partition
from .addr import PeerAddr
from .certs import NodeCertificate, PeerIdentityError
from .channel import Channel, ChannelClosed, Timeouts
from .meter import Meter
from .pacing import Bucket
from .tls import PinMismatch, check_pin, client_context, server_context, session_peer

__all__ = ["Connection", "DialError", "Limits", "Listener", "dial"]

_conn_ids = itertools.count(1)
_SILENT = Meter()  # the default: count nothing


@attrs.frozen
class Limits:
    """A transport's limits (the seeds' defaults); every one is a setting of svc-overlay."""

    max_conns: int = 1024
    per_peer: int = 8
    per_ip: int = 64
    max_handshakes: int = 256
    handshakes_per_ip: int = 16
    handshake_timeout: float = 5.0
    timeouts: Timeouts = attrs.field(factory=Timeouts)
    max_frame: int = oap.MAX_FRAME
    retry_after: int = 1
    rate_conn: float = 0.0  # bytes/s sent on one connection (0 = off)
    rate_peer: float = 0.0  # ... to one peer over all its connections
    rate_global: float = 0.0  # ... by this listener in all


class DialError(Exception):
    """A dial failed; ``result`` is the stable label (``refused``, ``timeout``, ``tls_error``,
    ``pin_mismatch``) and ``str()`` one line for a human."""

    def __init__(self, result: str, detail: str) -> None:
        super().__init__(detail)
        self.result = result


@attrs.define
class Connection:
    """One open connection: its channel, who is on the other end, and a log id."""

    channel: Channel
    peer_id: str | None  # the node id it proved; None for an anonymous (SDK) client
    remote: tuple[str, int]
    conn_id: int = attrs.field(factory=lambda: next(_conn_ids))


def _metered_channel(
    stream: trio.abc.Stream, limits: Limits, meter: Meter, pacers: tuple[Bucket, ...] = ()
) -> Channel:
    return Channel(
        stream, timeouts=limits.timeouts, max_frame=limits.max_frame, meter=meter, pacers=pacers
    )


async def dial(
    addr: PeerAddr,
    cert: NodeCertificate | None,
    nursery: trio.Nursery,
    *,
    limits: Limits | None = None,
    meter: Meter = _SILENT,
    tls: bool = True,
    context: ssl.SSLContext | None = None,
) -> Connection:
    """Connect to ``addr`` and prove both identities; the channel's writer runs in ``nursery``.
    ``cert`` None dials anonymously (an SDK client); ``context`` reuses a client context."""
    limits = limits or Limits()
    if partition.cut_off(addr.node_id):
        meter.dialed("partitioned")
        raise DialError("partitioned", f"{addr}: cut off (an injected partition)")
    started = time.perf_counter()
    try:
        with trio.fail_after(limits.handshake_timeout):
            tcp = await trio.open_tcp_stream(addr.host, addr.port)
            if not tls:
                stream: trio.abc.Stream = tcp
                peer: str | None = addr.node_id  # plain TCP proves nothing: dev/test only
            else:
                ssl_stream = trio.SSLStream(tcp, context or client_context(cert))
                try:
                    await ssl_stream.do_handshake()
                    peer = check_pin(ssl_stream, addr.node_id)
                except BaseException:
                    await trio.aclose_forcefully(ssl_stream)
                    raise
                meter.handshake(time.perf_counter() - started)
                stream = ssl_stream
    except trio.TooSlowError:
        meter.dialed("timeout")
        meter.io_timeout("handshake")
        detail = f"{addr}: no handshake within {limits.handshake_timeout} s"
        raise DialError("timeout", detail) from None
    except PinMismatch as exc:
        meter.dialed("pin_mismatch")
        raise DialError("pin_mismatch", f"{addr.host}:{addr.port}: {exc}") from None
    except (trio.BrokenResourceError, ssl.SSLError) as exc:
        meter.dialed("tls_error")
        meter.tls_failure()
        raise DialError("tls_error", f"{addr}: TLS failed: {_cause(exc)}") from None
    except OSError as exc:
        meter.dialed("refused")
        raise DialError("refused", f"{addr}: {exc.strerror or exc}") from None
    meter.dialed("ok")
    channel = _metered_channel(stream, limits, meter)
    channel.peer = peer
    nursery.start_soon(channel.writer)
    return Connection(channel, peer, (addr.host, addr.port))


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__ or exc
    return " ".join(str(inner).split())[:160] or type(inner).__name__


Handler = Callable[[Connection], Awaitable[None]]


class Listener:
    """Serves ``handler`` on a listening socket someone else bound (the node: the port survives
    restarts of the service)."""

    def __init__(
        self,
        sock: socket.socket,
        cert: NodeCertificate,
        handler: Handler,
        *,
        limits: Limits | None = None,
        meter: Meter = _SILENT,
        tls: bool = True,
        on_refused: Callable[[str, str, tuple[str, int]], None] | None = None,
    ) -> None:
        self.sock = sock
        self.handler = handler
        self.limits = limits or Limits()
        self.meter = meter
        self.context = server_context(cert) if tls else None
        self.open = 0  # established (handshake done)
        self.per_peer: Counter[str] = Counter()
        self.per_ip: Counter[str] = Counter()
        self.handshaking: Counter[str] = Counter()  # by IP
        self.shaking = 0  # in all
        self._node_rate = Bucket(self.limits.rate_global)
        self._peer_rates: dict[str, Bucket] = {}  # while the peer has a connection
        self.on_refused = on_refused  # (reason, detail, remote): the service logs it

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.sock.setblocking(False)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                self.meter.accepted()
                nursery.start_soon(self._connection, stream)

    async def _connection(self, tcp: trio.SocketStream) -> None:
        remote = _remote(tcp)
        ip = remote[0]
        if self.open >= self.limits.max_conns:  # before any work: no handshake, just close
            self._refused("busy", f"{self.limits.max_conns} connections open", remote)
            await trio.aclose_forcefully(tcp)
            return
        if (
            self.shaking >= self.limits.max_handshakes
            or self.handshaking[ip] >= self.limits.handshakes_per_ip
        ):
            self._refused("handshake_limit", "too many handshakes under way", remote)
            await trio.aclose_forcefully(tcp)
            return
        self.meter.inflight(1)
        try:
            self.handshaking[ip] += 1
            self.shaking += 1
            try:
                shaken = await self._handshake(tcp, remote)
            finally:
                self.shaking -= 1
                _forget(self.handshaking, ip)
            if shaken is None:
                return
            peer_id, stream = shaken
            key = peer_id or ip
            if partition.cut_off(peer_id):
                self._refused("partitioned", "cut off (an injected partition)", remote)
                await trio.aclose_forcefully(stream)
                return
            if self.open >= self.limits.max_conns:
                await self._refuse(stream, "busy", f"{self.limits.max_conns} open", remote)
                return
            if self.per_ip[ip] >= self.limits.per_ip or self.per_peer[key] >= self.limits.per_peer:
                detail = "too many connections from this peer or address already"
                await self._refuse(stream, "peer_limit", detail, remote)
                return
            await self._established(stream, peer_id, key, remote)
        finally:
            self.meter.inflight(-1)

    async def _established(
        self, stream: trio.abc.Stream, peer_id: str | None, key: str, remote: tuple[str, int]
    ) -> None:
        self.open += 1
        self.per_ip[remote[0]] += 1
        self.per_peer[key] += 1
        if key not in self._peer_rates:
            self._peer_rates[key] = Bucket(self.limits.rate_peer)
        pacers = (Bucket(self.limits.rate_conn), self._peer_rates[key], self._node_rate)
        try:
            await self._serve_one(stream, peer_id, remote, pacers)
        finally:
            self.open -= 1
            _forget(self.per_ip, remote[0])
            if _forget(self.per_peer, key):
                del self._peer_rates[key]

    async def _handshake(
        self, tcp: trio.SocketStream, remote: tuple[str, int]
    ) -> tuple[str | None, trio.abc.Stream] | None:
        if self.context is None:
            return None, tcp
        started = time.perf_counter()
        ssl_stream = trio.SSLStream(tcp, self.context, server_side=True)
        try:
            with trio.fail_after(self.limits.handshake_timeout):
                await ssl_stream.do_handshake()
            peer_id = session_peer(ssl_stream)
        except trio.TooSlowError:
            self.meter.io_timeout("handshake")
            self._refused("timeout", "no TLS handshake in time", remote)
        except (trio.BrokenResourceError, ssl.SSLError, PeerIdentityError) as exc:
            self.meter.tls_failure()
            self._refused("tls_error", _cause(exc), remote)
        else:
            self.meter.handshake(time.perf_counter() - started)
            return peer_id, ssl_stream
        await trio.aclose_forcefully(ssl_stream)
        return None

    async def _serve_one(
        self,
        stream: trio.abc.Stream,
        peer_id: str | None,
        remote: tuple[str, int],
        pacers: tuple[Bucket, ...],
    ) -> None:
        channel = _metered_channel(stream, self.limits, self.meter, pacers)
        channel.peer = peer_id
        conn = Connection(channel, peer_id, remote)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(channel.writer)
                try:
                    await self.handler(conn)
                    await channel.finish()  # the handler's last frames still go out
                except ChannelClosed:
                    pass  # the peer went away or timed out (counted by the channel)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            await channel.aclose()

    async def _refuse(
        self, stream: trio.abc.Stream, reason: str, detail: str, remote: tuple[str, int]
    ) -> None:
        """One OAP error frame (to a request that has not been read: corr_id 0), then close."""
        self._refused(reason, detail, remote)
        err = oap.OapError(reason, detail, retry_after=self.limits.retry_after)
        frame = oap.error_frame(oap.Frame(flags=oap.REQ), err)
        with trio.move_on_after(1.0):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(oap.encode(frame))
        await trio.aclose_forcefully(stream)

    def _refused(self, reason: str, detail: str, remote: tuple[str, int]) -> None:
        self.meter.rejected(reason)
        if self.on_refused is not None:
            self.on_refused(reason, detail, remote)


def _forget(counts: Counter[str], key: str) -> bool:
    """One fewer under ``key``; True when none is left (the entry is gone: bounded memory)."""
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]
        return True
    return False


def _remote(stream: trio.SocketStream) -> tuple[str, int]:
    try:
        host, port = stream.socket.getpeername()[:2]
        return str(host), int(port)
    except OSError:
        return "?", 0
