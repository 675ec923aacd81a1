"""Capability tokens (DESIGN.md §5, wire format in ``specs/caps.md``): macaroon-style chains.

A token is a header (version, root key id ``kid``, a random 16-byte token ``id``), a list of
caveats and a 32-byte signature::

    sig_0 = MAC(root_key[kid], header_bytes)
    sig_i = MAC(sig_(i-1), caveat_bytes_i)        signature = sig_n

with ``MAC`` = keyed BLAKE3 (the ``blake3`` package's keyed mode; a 32-byte key). This is the
macaroon construction (the test suite runs it with HMAC-SHA256 against ``pymacaroons``).
Whoever holds a token can append a caveat without any key (``attenuate``); nobody can remove one
without the root key, and every caveat must hold, so appending never widens what a token allows.

Guarantees:

- the chain MACs the exact bytes a token carries (its header and each caveat), and the text
  must be the one base64url spelling of its body: any single changed byte or character fails
  (``CapInvalid``); tokens made here are always encoded in msgpack's shortest form;
- ``decode`` and ``verify`` raise only ``CapError`` subclasses for anything a client sent, and
  bound their work: at most ``MAX_TOKEN_CHARS`` characters and ``MAX_CAVEATS`` caveats;
- ``verify`` checks the chain in constant time against the root key named by ``kid`` (several
  keys may verify during a rotation's overlap), then revocation, then every caveat against the
  request: ``CapInvalid`` (401 ``cap_invalid``) for a bad, unknown-kid, revoked or expired token,
  ``CapDenied`` (403 ``cap_denied``) naming the first caveat the request does not satisfy.

Pure: no I/O, no clock of its own (callers pass ``now``), no global state.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any, Final

import attrs
import blake3
import msgpack

from ipc.plain import AnyField, Json, JsonObject

__all__ = [
    "MAX_CAVEATS",
    "MAX_TOKEN_CHARS",
    "OPS",
    "PREFIX",
    "VERSION",
    "Audience",
    "CapDenied",
    "CapError",
    "CapInvalid",
    "Caveat",
    "Expires",
    "MaxSize",
    "Need",
    "Ops",
    "Prefix",
    "Tenant",
    "Token",
    "Verifier",
    "attenuate",
    "chain",
    "check_chain",
    "check_need",
    "keyed_blake3",
    "mint",
    "owner",
    "verify",
]

VERSION: Final = 1
PREFIX: Final = "ron1."  # the text form: PREFIX + base64url(msgpack body), no padding
MAX_TOKEN_CHARS: Final = 4096
MAX_CAVEATS: Final = 32
KEY_LEN: Final = 32
ID_LEN: Final = 16
OPS: Final = ("put", "name", "mail")  # the write ops a token may carry
_U128_MAX: Final = (1 << 128) - 1

Mac = Callable[[bytes, bytes], bytes]


class CapError(Exception):
    """A token that does not allow the request; ``reason`` is the stable HTTP-facing reason."""

    reason = "cap_invalid"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CapInvalid(CapError):
    """Malformed, signed by no key we know, tampered with, revoked or expired (401)."""

    reason = "cap_invalid"


class CapDenied(CapError):
    """A valid token whose caveat ``caveat`` excludes this request (403)."""

    reason = "cap_denied"

    def __init__(self, caveat: str, detail: str) -> None:
        super().__init__(f"{caveat}: {detail}")
        self.caveat = caveat


def keyed_blake3(key: bytes, data: bytes) -> bytes:
    """The chain's MAC: BLAKE3 in keyed mode, 32 bytes."""
    return blake3.blake3(data, key=key).digest()


def chain(mac: Mac, root_key: bytes, header: bytes, caveats: Iterable[bytes]) -> bytes:
    """The macaroon chain over already-encoded ``header`` and ``caveats`` (see module doc)."""
    sig = mac(root_key, header)
    for caveat in caveats:
        sig = mac(sig, caveat)
    return sig


# --- caveats -------------------------------------------------------------------------------------


def _u128(value: int) -> None:
    if type(value) is not int or not 0 <= value <= _U128_MAX:
        raise ValueError("tenant must be an integer in 0..2**128-1")


def _sorted_ops(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(value)))


def _u64(_inst: object, attr: AnyField, value: int) -> None:
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise ValueError(f"{attr.name} must be an integer in 0..2**64-1")


@attrs.frozen
class Expires:
    """Valid before ``at`` (unix seconds)."""

    at: int = attrs.field(validator=_u64)
    TAG = "exp"
    FIELD = "at"  # the one field (decoding sets it directly)

    def value(self) -> object:
        return self.at

    def check(self, need: Need) -> None:
        if need.now >= self.at:
            raise CapInvalid(f"expired at {self.at} (now {int(need.now)})")


@attrs.frozen
class Ops:
    """Only these operations (a subset of ``OPS``)."""

    ops: tuple[str, ...] = attrs.field(converter=_sorted_ops)
    TAG = "ops"
    FIELD = "ops"  # the one field (decoding sets it directly)

    @ops.validator
    def _known(self, _attr: AnyField, value: tuple[str, ...]) -> None:
        unknown = [op for op in value if op not in OPS]
        if unknown or not value:
            raise ValueError(f"ops must be a non-empty subset of {'|'.join(OPS)}")

    def value(self) -> object:
        return list(self.ops)

    def check(self, need: Need) -> None:
        if need.op not in self.ops:
            raise CapDenied("ops", f"{need.op!r} is not one of {','.join(self.ops)}")


@attrs.frozen
class Prefix:
    """Only names (or mailbox paths) under ``prefix``; a content-addressed object has no name,
    so a write of one (``name`` None) is not limited by it (``Ops`` governs that)."""

    prefix: str = attrs.field(validator=attrs.validators.instance_of(str))
    TAG = "prefix"
    FIELD = "prefix"  # the one field (decoding sets it directly)

    def value(self) -> object:
        return self.prefix

    def check(self, need: Need) -> None:
        if need.name is not None and not need.name.startswith(self.prefix):
            raise CapDenied("prefix", f"{need.name!r} is not under {self.prefix!r}")


@attrs.frozen
class MaxSize:
    """Only bodies of at most ``limit`` bytes. A body of unknown size (``size`` None: streamed)
    passes here, and the verifier caps the stream at ``Token.max_size()`` as it arrives."""

    limit: int = attrs.field(validator=_u64)
    TAG = "max_size"
    FIELD = "limit"  # the one field (decoding sets it directly)

    def value(self) -> object:
        return self.limit

    def check(self, need: Need) -> None:
        if need.size is not None and need.size > self.limit:
            raise CapDenied("max_size", f"{need.size} bytes is over {self.limit}")


@attrs.frozen
class Audience:
    """Only at the node ``node_id`` (``node:<hex>``)."""

    node_id: str = attrs.field(validator=attrs.validators.instance_of(str))
    TAG = "aud"
    FIELD = "node_id"  # the one field (decoding sets it directly)

    def value(self) -> object:
        return self.node_id

    def check(self, need: Need) -> None:
        if need.audience != self.node_id:
            raise CapDenied("aud", f"the token is for {self.node_id}, not this node")


@attrs.frozen
class Tenant:
    """Only for tenant ``tenant`` (the OAP/1 u128 tenant id)."""

    tenant: int = attrs.field(validator=lambda _i, _a, v: _u128(v))
    TAG = "tenant"
    FIELD = "tenant"  # the one field (decoding sets it directly)

    def value(self) -> object:
        return self.tenant.to_bytes(16, "big")

    def check(self, need: Need) -> None:
        if need.tenant != self.tenant:
            raise CapDenied("tenant", f"the token is for tenant {self.tenant}")


Caveat = Expires | Ops | Prefix | MaxSize | Audience | Tenant


def _decoded(cls: type[Any], value: object) -> Any:
    """A caveat built from a value ``_BY_TAG`` already checked, without running the class's
    validators again (decoding is on every cold verify's path; the checks are the same)."""
    inst = object.__new__(cls)
    object.__setattr__(inst, cls.FIELD, value)
    return inst


def _u64_value(value: Json, what: str) -> int:
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise CapInvalid(f"caveat {what} must be an integer 0..2^64-1")
    return value


def _ops_value(value: Json) -> tuple[str, ...]:
    ops = tuple(sorted(set(_str_list(value))))
    if not ops or any(op not in OPS for op in ops):
        raise CapInvalid(f"caveat ops must be a non-empty subset of {'|'.join(OPS)}")
    return ops


_BY_TAG: Final[Mapping[str, Callable[[Json], Caveat]]] = {
    "exp": lambda v: _decoded(Expires, _u64_value(v, "exp")),
    "ops": lambda v: _decoded(Ops, _ops_value(v)),
    "prefix": lambda v: _decoded(Prefix, _exact(v, str, "prefix")),
    "max_size": lambda v: _decoded(MaxSize, _u64_value(v, "max_size")),
    "aud": lambda v: _decoded(Audience, _exact(v, str, "aud")),
    "tenant": lambda v: Tenant(int.from_bytes(_bytes16(v), "big")),
}


def _exact(value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:
        raise CapInvalid(f"caveat {what} must be {kind.__name__}")
    return value


def _str_list(value: Json) -> list[str]:
    if type(value) is not list or not all(type(v) is str for v in value):
        raise CapInvalid("caveat ops must be an array of strings")
    return value


def _bytes16(value: Json) -> bytes:
    if type(value) is not bytes or len(value) != 16:
        raise CapInvalid("caveat tenant must be 16 bytes")
    return value


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")  # MAX_CAVEATS < 2**16


def caveat_bytes(caveat: Caveat) -> bytes:
    """One caveat as the chain MACs it: msgpack ``[tag, value]``."""
    return _pack([caveat.TAG, caveat.value()])


# --- the request a token is checked against ------------------------------------------------------


@attrs.frozen
class Need:
    """What a request needs: ``op`` (one of ``OPS``), the ``name`` or path it writes (None for a
    content-addressed object), the body ``size``, this node's id as ``audience``, the tenant and
    the verifier's clock ``now`` (unix seconds)."""

    op: str
    audience: str
    now: float
    name: str | None = None
    size: int | None = None
    tenant: int = 0


# --- tokens --------------------------------------------------------------------------------------


@attrs.frozen
class Token:
    kid: str
    id: bytes
    caveats: tuple[Caveat, ...]
    signature: bytes
    version: int = VERSION
    # The bytes the chain MACs, as the token carries them: decoding takes them from the body,
    # so verifying re-encodes nothing; built here for a token made in code. (attenuate passes
    # them: attrs.evolve would otherwise copy stale ones.)
    header: bytes = attrs.field(kw_only=True, eq=False, repr=False)
    caveat_bytes: tuple[bytes, ...] = attrs.field(kw_only=True, eq=False, repr=False)

    @header.default
    def _encode_header(self) -> bytes:
        return _pack([self.version, self.kid, self.id])

    @caveat_bytes.default
    def _encode_caveats(self) -> tuple[bytes, ...]:
        return tuple(caveat_bytes(c) for c in self.caveats)

    def header_bytes(self) -> bytes:
        return self.header

    def body(self) -> bytes:
        """The msgpack body: an array of 5 whose caveats are the encoded ``caveat_bytes``."""
        return b"".join(
            (
                b"\x95",  # fixarray of 5; the header's own fixarray-of-3 byte is not repeated
                self.header[1:],
                _array_header(len(self.caveats)),
                *self.caveat_bytes,
                _pack(self.signature),
            )
        )

    def encode(self) -> str:
        """The text form (what ``Authorization: Bearer`` carries)."""
        return PREFIX + base64.urlsafe_b64encode(self.body()).rstrip(b"=").decode("ascii")

    def max_size(self) -> int | None:
        """The smallest ``MaxSize`` limit, for a verifier streaming a body of unknown size."""
        limits = [c.limit for c in self.caveats if isinstance(c, MaxSize)]
        return min(limits) if limits else None

    def inspect(self) -> JsonObject:
        """``{"id", "kid", "caveats"}`` for people: never the signature."""
        shown: list[JsonObject] = []
        for c in self.caveats:
            value = c.value()
            shown.append({c.TAG: value.hex() if isinstance(value, bytes) else value})
        return {"id": self.id.hex(), "kid": self.kid, "caveats": shown}

    @classmethod
    def decode(cls, text: object) -> Token:
        """The token ``text`` spells, or ``CapInvalid`` (see the module doc)."""
        if not isinstance(text, str) or not text.startswith(PREFIX):
            raise CapInvalid(f"not a token (expected {PREFIX}...)")
        if len(text) > MAX_TOKEN_CHARS:
            raise CapInvalid(f"token longer than {MAX_TOKEN_CHARS} characters")
        b64 = text[len(PREFIX) :]
        try:
            body = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except (binascii.Error, ValueError):
            raise CapInvalid("token is not base64url") from None
        token = cls._from_body(body)
        if base64.urlsafe_b64encode(body).rstrip(b"=") != b64.encode():  # one base64 spelling
            raise CapInvalid("token is not in canonical form")
        return token

    @classmethod
    def _from_body(cls, body: bytes) -> Token:
        """Parse the body in one pass, keeping the exact bytes of the header and of each caveat
        (what the chain MACs: a changed byte anywhere changes a MAC input or breaks the parse)."""
        if body[:1] != b"\x95":  # the header's bytes below assume this one-byte array header
            raise CapInvalid("token must be [version, kid, id, caveats, signature]")
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=len(body))
        unpacker.feed(body)
        try:
            unpacker.read_array_header()
            version, kid, token_id = unpacker.unpack(), unpacker.unpack(), unpacker.unpack()
            header = b"\x93" + body[1 : unpacker.tell()]
            n = unpacker.read_array_header()
            if n > MAX_CAVEATS:
                raise CapInvalid(f"caveats must be an array of at most {MAX_CAVEATS}")
            raw_caveats, slices = [], []
            for _ in range(n):
                start = unpacker.tell()
                raw_caveats.append(unpacker.unpack())
                slices.append(body[start : unpacker.tell()])
            signature = unpacker.unpack()
            complete = unpacker.tell() == len(body)
        except CapInvalid:
            raise
        except Exception:  # msgpack's OutOfData, FormatError, ValueError, UnicodeDecodeError, ...
            raise CapInvalid("token is not msgpack of the right shape") from None
        if not complete:
            raise CapInvalid("trailing bytes after the token")
        if version != VERSION or type(version) is not int:
            raise CapInvalid(f"unsupported token version {version!r:.20}")
        if type(kid) is not str or not kid:
            raise CapInvalid("kid must be a non-empty string")
        if type(token_id) is not bytes or len(token_id) != ID_LEN:
            raise CapInvalid(f"token id must be {ID_LEN} bytes")
        if type(signature) is not bytes or len(signature) != KEY_LEN:
            raise CapInvalid(f"signature must be {KEY_LEN} bytes")
        caveats: list[Caveat] = []
        for raw in raw_caveats:
            if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not str:
                raise CapInvalid("a caveat must be [tag, value]")
            make = _BY_TAG.get(raw[0])
            if make is None:
                raise CapInvalid(f"unknown caveat {raw[0]!r:.20}")
            try:
                caveats.append(make(raw[1]))
            except (ValueError, TypeError) as exc:
                raise CapInvalid(f"caveat {raw[0]}: {exc}") from None
        return cls(
            kid=kid,
            id=token_id,
            caveats=tuple(caveats),
            signature=signature,
            header=header,
            caveat_bytes=tuple(slices),
        )


def mint(
    root_key: bytes,
    kid: str,
    caveats: Iterable[Caveat] = (),
    *,
    token_id: bytes | None = None,
    mac: Mac = keyed_blake3,
) -> Token:
    """A new token signed with ``root_key`` (32 bytes) under ``kid``; a random id unless given."""
    if len(root_key) != KEY_LEN:
        raise ValueError(f"a root key is {KEY_LEN} bytes")
    unsigned = Token(kid=kid, id=token_id or secrets.token_bytes(ID_LEN), caveats=(), signature=b"")
    sig = mac(root_key, unsigned.header)
    return attenuate(attrs.evolve(unsigned, signature=sig), *caveats, mac=mac)


def attenuate(token: Token, *caveats: Caveat, mac: Mac = keyed_blake3) -> Token:
    """``token`` narrowed by ``caveats``: no key needed, never wider than before."""
    if len(token.caveats) + len(caveats) > MAX_CAVEATS:
        raise ValueError(f"a token carries at most {MAX_CAVEATS} caveats")
    sig = token.signature
    encoded = tuple(caveat_bytes(c) for c in caveats)
    for data in encoded:
        sig = mac(sig, data)
    return attrs.evolve(
        token,
        caveats=token.caveats + tuple(caveats),
        signature=sig,
        caveat_bytes=token.caveat_bytes + encoded,
    )


def check_chain(token: Token | str, keys: Mapping[str, bytes], *, mac: Mac = keyed_blake3) -> Token:
    """The decoded token if its chain was signed by the root key its ``kid`` names; else
    ``CapInvalid``. Says nothing yet about what the token allows (``check_need``)."""
    tok = token if isinstance(token, Token) else Token.decode(token)
    key = keys.get(tok.kid)
    if key is None:
        raise CapInvalid(f"unknown key id {tok.kid!r:.40}")
    expected = chain(mac, key, tok.header_bytes(), tok.caveat_bytes)
    if not hmac.compare_digest(expected, tok.signature):
        raise CapInvalid("bad signature")
    return tok


def owner(token: Token) -> str:
    """Whose share a write counts toward: the token's tenant when it names one, else the token
    itself (its id: attenuated copies share it, so narrowing one does not escape the share)."""
    for caveat in token.caveats:
        if isinstance(caveat, Tenant):
            return f"tenant:{caveat.tenant}"
    return f"token:{token.id.hex()}"


def check_need(token: Token, need: Need, *, revoked: Container[bytes] = frozenset()) -> Token:
    """``token`` (already chain-checked) if not revoked and every caveat holds for ``need``.
    Whether the token is valid at all is settled first (revocation, then every expiry: 401
    ``CapInvalid``), only then what it allows (403 ``CapDenied``): an expired token is never
    reported as merely not allowing this, whatever the order of its caveats."""
    if token.id in revoked:
        raise CapInvalid(f"token {token.id.hex()} is revoked")
    for caveat in token.caveats:
        if isinstance(caveat, Expires):
            caveat.check(need)
    for caveat in token.caveats:
        if not isinstance(caveat, Expires):
            caveat.check(need)
    return token


def verify(
    token: Token | str,
    keys: Mapping[str, bytes],
    need: Need,
    *,
    revoked: Container[bytes] = frozenset(),
    mac: Mac = keyed_blake3,
) -> Token:
    """The decoded token if it allows ``need``; else ``CapInvalid`` or ``CapDenied`` (module doc).
    ``keys``: root keys by kid (every key still in its overlap window); ``revoked``: token ids."""
    return check_need(check_chain(token, keys, mac=mac), need, revoked=revoked)


class Verifier:
    """``verify`` for one process's stream of requests, with the root keys it trusts.

    A token a client reuses is decoded and its chain checked once: at most ``cache_size``
    verified tokens are remembered (the cache is cleared whole when full, and whenever the keys
    change), so a repeat costs a dict lookup plus what must run every time: revocation and every
    caveat (expiry included) against the request. Not thread-safe (one trio thread).
    """

    def __init__(
        self, keys: Mapping[str, bytes], *, cache_size: int = 4096, mac: Mac = keyed_blake3
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be >= 1")
        self._keys = dict(keys)
        self._cache: dict[str, Token] = {}
        self._cache_size = cache_size
        self._mac = mac

    def set_keys(self, keys: Mapping[str, bytes]) -> None:
        """Trust exactly ``keys`` from now on (a rotation, or the end of an overlap window)."""
        self._keys = dict(keys)
        self._cache.clear()

    def verify(self, text: str, need: Need, *, revoked: Container[bytes] = frozenset()) -> Token:
        """As ``verify``: the token if it allows ``need``, else ``CapInvalid``/``CapDenied``."""
        token = self._cache.get(text)
        if token is None:
            token = check_chain(text, self._keys, mac=self._mac)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[text] = token
        return check_need(token, need, revoked=revoked)
