"""The post-quantum layer (``pq.mode = hybrid | required``, DESIGN §5): an ML-KEM-768 exchange
inside the authenticated TLS session keys a second AEAD layer over object payloads, so a
recorded session stays secret even if its X25519 exchange is broken later.

Sans-IO and built only from ``cryptography`` primitives (ML-KEM-768, HKDF-SHA256,
ChaCha20-Poly1305); nothing here is a home-made primitive.

- The dialer makes a fresh ML-KEM-768 key pair per connection and sends the encapsulation key;
  the listener encapsulates and answers the ciphertext; both now hold the same 32-byte secret.
- ``derive_keys``: HKDF-SHA256 over that secret, with the dialer's and the listener's node ids in
  ``info`` (an anonymous dialer is ``anon``), into two 32-byte keys, one per direction.
- ``Sealer``: ChaCha20-Poly1305 with a 96-bit counter nonce (4 zero bytes + the 64-bit frame
  counter of this direction, big-endian), never reused: the counter only grows and a sealer
  refuses to wrap. The AAD binds a sealed payload to its frame (app protocol and corr_id).
  ``Opener`` checks the same counter, so a dropped, replayed or reordered frame fails to open.
- Modes: ``off`` (no exchange), ``hybrid`` (exchange when the peer can, else plain TLS and
  ``pq_fallback_total``), ``required`` (a peer without it is refused; a node whose library lacks
  ML-KEM refuses to start, see ``available``).
"""

from __future__ import annotations

import struct

import attrs

__all__ = [
    "INFO",
    "MODES",
    "Opener",
    "PqError",
    "Sealer",
    "available",
    "decapsulate",
    "derive_keys",
    "encapsulate",
    "negotiate",
    "new_keypair",
]

MODES = ("off", "hybrid", "required")
INFO = b"rustyonions pq v1"
_NONCE_PREFIX = b"\x00\x00\x00\x00"
_MAX_COUNTER = (1 << 64) - 1
_AAD = struct.Struct(">HQ")  # app_proto_id, corr_id


class PqError(Exception):
    """The PQ layer cannot be used or a sealed payload does not open; ``str()`` says why."""


def available() -> bool:
    """True if this ``cryptography`` has ML-KEM-768 (it needs an OpenSSL with it)."""
    try:
        from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

        MLKEM768PrivateKey.generate()
    except Exception:
        return False
    return True


def new_keypair() -> tuple[object, bytes]:
    """(decapsulation key, encapsulation key bytes) for one connection."""
    from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

    key = MLKEM768PrivateKey.generate()
    return key, key.public_key().public_bytes_raw()


def encapsulate(ek: bytes) -> tuple[bytes, bytes]:
    """(shared secret, ciphertext) for the dialer's encapsulation key ``ek``."""
    from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey

    try:
        public = MLKEM768PublicKey.from_public_bytes(ek)
    except ValueError as exc:
        raise PqError(f"not an ML-KEM-768 encapsulation key: {exc}") from None
    secret, ciphertext = public.encapsulate()
    return secret, ciphertext


def decapsulate(key: object, ciphertext: bytes) -> bytes:
    try:
        secret: bytes = key.decapsulate(ciphertext)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise PqError(f"not an ML-KEM-768 ciphertext: {exc}") from None
    return secret


def derive_keys(secret: bytes, dialer: str | None, listener: str) -> tuple[bytes, bytes]:
    """(dialer -> listener key, listener -> dialer key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = b"|".join((INFO, (dialer or "anon").encode(), listener.encode()))
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=info).derive(secret)
    return okm[:32], okm[32:]


def negotiate(ours: str, theirs_can: bool) -> str:
    """This end's outcome: ``pq`` (sealed), ``fallback`` (plain TLS, counted) or ``refused``."""
    if ours == "off":
        return "off"
    if theirs_can:
        return "pq"
    return "refused" if ours == "required" else "fallback"


def _nonce(counter: int) -> bytes:
    return _NONCE_PREFIX + counter.to_bytes(8, "big")


@attrs.define
class Sealer:
    """Seals this direction's payloads in order; never reuses a nonce."""

    key: bytes = attrs.field(repr=False)
    counter: int = 0
    _aead: object = attrs.field(default=None, init=False, repr=False)

    def seal(self, payload: bytes, app_proto_id: int, corr_id: int) -> bytes:
        if self.counter > _MAX_COUNTER:
            raise PqError("this direction has sealed 2^64 payloads: reconnect")
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

            self._aead = ChaCha20Poly1305(self.key)
        nonce = _nonce(self.counter)
        self.counter += 1
        sealed: bytes = self._aead.encrypt(  # type: ignore[attr-defined]
            nonce, payload, _AAD.pack(app_proto_id, corr_id)
        )
        return sealed


@attrs.define
class Opener:
    """Opens the other direction's payloads; they must arrive in the order they were sealed."""

    key: bytes = attrs.field(repr=False)
    counter: int = 0
    _aead: object = attrs.field(default=None, init=False, repr=False)

    def open(self, sealed: bytes, app_proto_id: int, corr_id: int) -> bytes:
        from cryptography.exceptions import InvalidTag

        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

            self._aead = ChaCha20Poly1305(self.key)
        try:
            plain: bytes = self._aead.decrypt(  # type: ignore[attr-defined]
                _nonce(self.counter), sealed, _AAD.pack(app_proto_id, corr_id)
            )
        except InvalidTag:
            raise PqError(
                "a sealed payload did not open (tampered, replayed or reordered)"
            ) from None
        self.counter += 1
        return plain
