"""Key custody (DESIGN.md §5): the node's Ed25519 identity key and the capability root keys.

Files, all under ``<data_dir>/keys/`` (0700): ``identity.key`` (the 32-byte Ed25519 private
key) and ``caps.keys`` (msgpack: ``[[kid, key, created, retire_at], ...]``). On a macronode the
data dir is on disk; on a micronode it is the node's tmpfs dir, so keys never touch a disk, and
the node overwrites them before it removes that dir (``kernel.runtime.wipe_secrets``).

Guarantees:

- every file is created 0600 (``O_EXCL``, written, fsynced, renamed into place: a crash never
  leaves a torn key file) and the dir 0700;
- opening refuses, with one line naming the file and the fix, a key file or dir that another user
  owns or that group/others may read or write (a key anyone else can read is no secret);
- the node id is ``"node:" + BLAKE3-256 hex of the raw public key``: the 256-bit space of object
  ids, stable for as long as the identity key lives;
- rotation keeps the previous key verifying until its ``retire_at`` (the overlap window); keys
  past it are dropped from the file at the next save.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

import attrs
import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ipc.ids import node_id_of

__all__ = [
    "CAPS_FILE",
    "IDENTITY_FILE",
    "KEYS_DIR",
    "KeyCustodyError",
    "KeyStore",
    "RootKey",
    "load_identity",
    "node_id_of",
    "read_identity_file",
    "write_private",
]

KEYS_DIR = "keys"
IDENTITY_FILE = "identity.key"
CAPS_FILE = "caps.keys"
ROOT_KEY_LEN = 32


class KeyCustodyError(Exception):
    """The keys cannot be trusted or written; ``str()`` is one line saying what to fix."""


@attrs.frozen
class RootKey:
    kid: str
    key: bytes = attrs.field(repr=False)
    created: float
    retire_at: float | None = None  # None: the active key

    def live(self, now: float) -> bool:
        return self.retire_at is None or now < self.retire_at


def _check_private(path: Path, *, is_dir: bool) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    kind = "dir" if is_dir else "file"
    if (stat.S_ISDIR(st.st_mode) if is_dir else stat.S_ISREG(st.st_mode)) is False:
        raise KeyCustodyError(f"key {kind} {path} is not a regular {kind}; refusing to use it")
    if st.st_uid != os.getuid():
        raise KeyCustodyError(
            f"key {kind} {path} is owned by uid {st.st_uid}, not the node's uid {os.getuid()}; "
            "refusing to use it"
        )
    if st.st_mode & 0o077:
        want = "700" if is_dir else "600"
        raise KeyCustodyError(
            f"key {kind} {path} has mode {stat.S_IMODE(st.st_mode):o}; keys must be private "
            f"(chmod {want} {path})"
        )


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: a 0600 temp file, fsynced, renamed, the dir
    fsynced."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_identity(directory: Path) -> Ed25519PrivateKey:
    """The identity key svc-passport keeps in ``directory``, for another service of the node
    that must prove the node's identity itself (svc-overlay's TLS). Read-only: never creates
    it. ``FileNotFoundError`` if absent; ``KeyCustodyError`` if not private or damaged."""
    path = directory / IDENTITY_FILE
    _check_private(directory, is_dir=True)
    _check_private(path, is_dir=False)
    try:
        return Ed25519PrivateKey.from_private_bytes(path.read_bytes())
    except ValueError as exc:
        raise KeyCustodyError(f"key file {path} is damaged: {exc}") from None


def read_identity_file(path: Path) -> Ed25519PrivateKey:
    """An identity key file (``ronctl identity new``: the 32 raw bytes of an Ed25519 private
    key); ``KeyCustodyError`` with the fix when it is missing, foreign, not private or not one."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise KeyCustodyError(
            f"identity key file {path} does not exist (ronctl identity new {path} makes one)"
        ) from None
    _check_private(path, is_dir=False)
    if st.st_size != 32:
        raise KeyCustodyError(f"{path} is not an identity key file (32 bytes, not {st.st_size})")
    return Ed25519PrivateKey.from_private_bytes(path.read_bytes())


class KeyStore:
    """The node's keys in one directory. Create with ``KeyStore.open``; not thread-safe."""

    def __init__(self, directory: Path, identity: Ed25519PrivateKey, roots: list[RootKey]) -> None:
        self.directory = directory
        self._identity = identity
        self._roots = roots
        self.public_key = identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.node_id = node_id_of(self.public_key)
        self._stamp: _Stamp | None = None  # the files as read_ahead found them

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        now: float,
        identity_file: Path | None = None,
        ahead: KeyStore | None = None,
    ) -> KeyStore:
        """Load the keys in ``directory``, creating an identity and a first root key if absent.
        ``identity_file`` (``identity.key_file``): the identity comes from there (read, never
        written) and ``directory`` holds a copy for the node's other services. ``ahead``:
        what ``read_ahead`` returned (a warm spare's), used if the files are unchanged since.
        ``KeyCustodyError`` if anything there is not private to the node's user."""
        _check_private(directory, is_dir=True)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(directory, is_dir=True)
        identity_path, caps_path = directory / IDENTITY_FILE, directory / CAPS_FILE
        for path in (identity_path, caps_path):
            _check_private(path, is_dir=False)
        if identity_file is not None:
            raw = read_identity_file(identity_file).private_bytes_raw()
            if not identity_path.exists() or identity_path.read_bytes() != raw:
                write_private(identity_path, raw)
        if ahead is not None and ahead._stamp is not None and ahead._stamp == _stamp(directory):
            store = ahead  # nothing written since it was read (every write is a rename)
        else:
            try:
                if not identity_path.exists():
                    write_private(identity_path, Ed25519PrivateKey.generate().private_bytes_raw())
                store = cls._from_files(directory)
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                raise KeyCustodyError(f"key files in {directory} are damaged: {exc}") from None
        if not any(r.retire_at is None for r in store._roots):
            store.rotate(now=now, overlap=0.0)
        return store

    @classmethod
    def _from_files(cls, directory: Path) -> KeyStore:
        identity = Ed25519PrivateKey.from_private_bytes((directory / IDENTITY_FILE).read_bytes())
        return cls(directory, identity, _load_roots(directory / CAPS_FILE))

    @classmethod
    def read_ahead(cls, directory: Path) -> KeyStore | None:
        """The keys as they are now, read without writing anything (a warm spare's start: the
        keys are the live instance's, ``open(ahead=...)`` takes them if still current); None
        when there are none yet or they cannot be read (``open`` then says why)."""
        stamp = _stamp(directory)  # before reading: a write after it changes the stamp
        if stamp is None:
            return None
        try:
            for path in (directory, directory / IDENTITY_FILE, directory / CAPS_FILE):
                _check_private(path, is_dir=path == directory)
            store = cls._from_files(directory)
        except (OSError, KeyCustodyError, ValueError, TypeError, msgpack.UnpackException):
            return None
        store._stamp = stamp
        return store

    def sign(self, data: bytes) -> bytes:
        return self._identity.sign(data)

    def verifier(self) -> Ed25519PublicKey:
        return self._identity.public_key()

    @property
    def active(self) -> RootKey:
        return next(r for r in self._roots if r.retire_at is None)

    def live_keys(self, now: float) -> dict[str, bytes]:
        """Root keys that verify at ``now``: the active one and any still in their overlap."""
        return {r.kid: r.key for r in self._roots if r.live(now)}

    def roots(self) -> tuple[RootKey, ...]:
        return tuple(self._roots)

    def rotate(self, *, now: float, overlap: float) -> RootKey:
        """A new active root key; the previous one verifies until ``now + overlap``."""
        used = {r.kid for r in self._roots}
        n = len(self._roots) + 1
        while f"k{n}" in used:
            n += 1
        fresh = RootKey(f"k{n}", secrets.token_bytes(ROOT_KEY_LEN), now)
        kept = [
            attrs.evolve(r, retire_at=now + overlap) if r.retire_at is None else r
            for r in self._roots
            if r.live(now)
        ]
        kept = [r for r in kept if r.live(now)]
        self._roots = [*kept, fresh]
        self._save()
        return fresh

    def prune(self, now: float) -> bool:
        """Drop keys past their overlap; True if any was dropped (and the file rewritten)."""
        kept = [r for r in self._roots if r.live(now)]
        if len(kept) == len(self._roots):
            return False
        self._roots = kept
        self._save()
        return True

    def _save(self) -> None:
        rows = [[r.kid, r.key, r.created, r.retire_at] for r in self._roots]
        write_private(self.directory / CAPS_FILE, msgpack.packb(rows, use_bin_type=True))


_Stamp = tuple[tuple[int, int, int], tuple[int, int, int]]


def _stamp(directory: Path) -> _Stamp | None:
    """(inode, mtime, size) of the identity and root-key files; None if either is missing."""
    try:
        a = (directory / IDENTITY_FILE).stat()
        b = (directory / CAPS_FILE).stat()
    except OSError:
        return None
    return (a.st_ino, a.st_mtime_ns, a.st_size), (b.st_ino, b.st_mtime_ns, b.st_size)


def _load_roots(path: Path) -> list[RootKey]:
    if not path.exists():
        return []
    rows = msgpack.unpackb(path.read_bytes(), raw=False)
    roots = []
    for kid, key, created, retire_at in rows:
        if type(kid) is not str or type(key) is not bytes or len(key) != ROOT_KEY_LEN:
            raise ValueError("a root key row is [kid, 32-byte key, created, retire_at]")
        roots.append(RootKey(kid, key, float(created), None if retire_at is None else retire_at))
    return roots
