"""TLS certificates made from a node's Ed25519 identity key, and node ids read back from them.

Why an *issuer* and not a self-signed certificate (DESIGN §5 says self-signed): the stdlib's
``ssl`` cannot ask a client for a certificate without verifying it against a trust store, and
it has no verify callback, so an unknown peer's self-signed certificate can never be accepted on
the server side. Every node's certificate is therefore signed by one well-known issuer whose
private key is public (derived below from a fixed string). That issuer vouches for nothing: it
only lets OpenSSL accept the chain. Identity comes from TLS itself, which makes each side prove
it holds the private key of the public key in its certificate (CertificateVerify), and from the
pin: that public key must hash to the node id the peer address names (``peer_node_id``).

Guarantees: a certificate carries the node's own public key (nothing else about it matters); the
issuer's certificate is the same bytes on every node (Ed25519 signatures are deterministic);
``peer_node_id`` accepts only an Ed25519 key.
"""

from __future__ import annotations

import datetime
import functools

import attrs
import blake3
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID

from ipc.ids import node_id_of

__all__ = ["NodeCertificate", "PeerIdentityError", "issuer_pem", "peer_node_id"]

_ISSUER_SEED = b"rustyonions peer certificate issuer, v1 (public: it vouches for nothing)"
_ISSUER_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rustyonions peer issuer v1")])
_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)  # RFC 5280 "none"


class PeerIdentityError(Exception):
    """A peer's certificate is missing or does not carry an Ed25519 key."""


def _issuer_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(blake3.blake3(_ISSUER_SEED).digest())


@functools.cache
def issuer_pem() -> bytes:
    """The issuer's certificate (PEM): every node's trust store holds exactly this."""
    key = _issuer_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_ISSUER_NAME)
        .issuer_name(_ISSUER_NAME)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, None)
    )
    return cert.public_bytes(Encoding.PEM)


@attrs.frozen
class NodeCertificate:
    """A node's TLS certificate and private key (PEM), made from its identity key."""

    node_id: str
    cert_pem: bytes
    key_pem: bytes = attrs.field(repr=False)

    @classmethod
    def from_identity(cls, identity: Ed25519PrivateKey) -> NodeCertificate:
        public = identity.public_key()
        node_id = node_id_of(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
        cert = (
            x509.CertificateBuilder()
            # CN is at most 64 characters: the id's hex digits (the key is what is checked)
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id[5:])]))
            .issuer_name(_ISSUER_NAME)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOT_BEFORE)
            .not_valid_after(_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(_issuer_key(), None)
        )
        key_pem = identity.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        return cls(node_id, cert.public_bytes(Encoding.PEM), key_pem)


def peer_node_id(der: bytes | None) -> str:
    """The node id of the peer that presented certificate ``der`` (``getpeercert(True)``)."""
    if not der:
        raise PeerIdentityError("the peer presented no certificate")
    key = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise PeerIdentityError(f"the peer's certificate key is {type(key).__name__}, not Ed25519")
    return node_id_of(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
