"""TLS 1.3 contexts for the overlay, and the pin check that turns a session into a node id.

Server: asks every client for a certificate but accepts none (an SDK client has no node
identity; it proves itself with capability tokens); a client that does present one must chain
to the public issuer (``certs``) and is then known by the node id of its key. Client: requires
the server's certificate and checks, right after the handshake and before any application byte,
that it carries the node id the peer address names (``check_pin``).

The stdlib loads keys only from a path: the PEM goes through an anonymous RAM file
(``memfd_create``, opened as ``/proc/self/fd/N`` and closed at once), so the private key never
touches a filesystem (amnesia: a micronode's key lives only in RAM).
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Protocol

from .certs import NodeCertificate, PeerIdentityError, issuer_pem, peer_node_id

__all__ = ["PinMismatch", "check_pin", "client_context", "server_context", "session_peer"]


class _Session(Protocol):
    """An ``ssl.SSLObject``, ``ssl.SSLSocket`` or ``trio.SSLStream`` (which forwards it)."""

    def getpeercert(self, binary_form: bool = ...) -> Any: ...


class PinMismatch(Exception):
    """The peer is not the node its address names; ``str()`` says both ids."""


def _context(purpose: ssl._SSLMethod, cert: NodeCertificate | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cadata=issuer_pem().decode("ascii"))
    if cert is not None:
        _load_chain(ctx, cert)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: NodeCertificate) -> None:
    fd = os.memfd_create("ron-tls-key", os.MFD_CLOEXEC)  # RAM only, gone when closed
    try:
        view = memoryview(cert.cert_pem + cert.key_pem)
        while view:
            view = view[os.write(fd, view) :]
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def server_context(cert: NodeCertificate) -> ssl.SSLContext:
    """The listener's context: TLS 1.3, our certificate, client certificates optional."""
    ctx = _context(ssl.PROTOCOL_TLS_SERVER, cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(cert: NodeCertificate | None) -> ssl.SSLContext:
    """A dialer's context: TLS 1.3, the server's certificate required (pinned by node id, not
    by host name: ``check_hostname`` is off), ours presented when we have an identity."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, cert)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def session_peer(ssl_object: _Session) -> str | None:
    """The node id the peer proved in this session, or None if it presented no certificate."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return peer_node_id(der)


def check_pin(ssl_object: _Session, expected: str) -> str:
    """The peer's node id if it is ``expected``; else ``PinMismatch``."""
    try:
        got = session_peer(ssl_object)
    except PeerIdentityError as exc:
        raise PinMismatch(f"expected {expected}: {exc}") from None
    if got != expected:
        raise PinMismatch(f"expected {expected}, the peer is {got or 'anonymous'}")
    return got
