"""The object store on disk: layout, a temp-file writer and a verify-before-serve reader.

Plain synchronous file code (no trio): trio callers run it through ``trio.to_thread``. Both the
gateway (reads, temp uploads) and svc-storage (the single committer) use it, so the layout is
defined once::

    <data_dir>/objects/<hex[:2]>/<hex>   committed objects, immutable (256 fan-out dirs)
    <data_dir>/objects/tmp/<name>        uploads in progress (0600, created O_EXCL)
    <data_dir>/objects/quarantine/...    objects whose bytes no longer match their id
    <data_dir>/objects/pins/<hex>        empty files: pinned objects (a GC keeps them)

Guarantees:
- ``open_verified`` hashes the whole object and compares it to the id BEFORE it returns; a
  ``VerifiedObject`` serves only bytes of the inode it verified, even if the file is then moved.
- ``TempObject`` never writes outside ``objects/tmp``; only svc-storage moves a temp file into
  ``objects/<xx>/`` and only after fsyncing it (see ``specs/storage-protocol.md``), so a file under
  ``objects/<xx>/`` is always whole.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final

import blake3

from ipc import ids

__all__ = [
    "FANOUT",
    "OBJECTS_DIR",
    "PINS_DIR",
    "QUARANTINE_DIR",
    "READ_CHUNK",
    "TMP_DIR",
    "IntegrityError",
    "NotFound",
    "ObjectTooLarge",
    "StoreError",
    "StoreFull",
    "TempObject",
    "VerifiedObject",
    "ensure_layout",
    "fsync_dir",
    "hash_file",
    "install",
    "object_file",
    "object_path",
    "open_unverified",
    "open_verified",
    "quarantine",
    "remove_temp",
    "scan_usage",
    "stat_entries",
    "store_root",
    "sweep_temps",
    "sync_file",
    "sync_filesystem",
    "temp_path",
    "verify_opened",
]

OBJECTS_DIR: Final = "objects"
TMP_DIR: Final = "tmp"
QUARANTINE_DIR: Final = "quarantine"
PINS_DIR: Final = "pins"
READ_CHUNK: Final = 1 << 20  # hashing reads: 1 MiB (blake3 releases the GIL on large updates)
SERVE_CHUNK: Final = 1 << 16  # what ``VerifiedObject.chunks`` yields: 64 KiB
FANOUT: Final = tuple(f"{i:02x}" for i in range(256))
_TMP_NAME_RE: Final = re.compile(r"[0-9a-f]{1,16}-[0-9a-f]{32}")
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600


class StoreError(Exception):
    """Base of every object-store failure."""


class NotFound(StoreError):
    """No such object (or temp file)."""


class IntegrityError(StoreError):
    """The stored bytes do not hash to their id (or a temp file does not match its claim)."""


class ObjectTooLarge(StoreError):
    """An object grew past its size cap."""


class StoreFull(StoreError):
    """A quota (bytes or objects) would be exceeded."""


class BadTempName(StoreError, ValueError):
    """A temp name that ``TempObject`` could not have made (e.g. a path)."""


# -- layout ---------------------------------------------------------------------------------------


def store_root(data_dir: Path | str) -> Path:
    """The store's root inside a service data dir: ``data_dir/objects``."""
    return Path(data_dir) / OBJECTS_DIR


def ensure_layout(root: Path) -> None:
    """Create the root, the 256 fan-out dirs, ``tmp``, ``quarantine`` and ``pins`` (0700);
    idempotent.

    New directories are fsynced into their parent, so a later rename into them is durable."""
    created = not root.is_dir()
    root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    if created:
        fsync_dir(root.parent)
    new = False
    for name in (*FANOUT, TMP_DIR, QUARANTINE_DIR, PINS_DIR):
        try:
            (root / name).mkdir(mode=_DIR_MODE)
            new = True
        except FileExistsError:
            pass
    if new:
        fsync_dir(root)


def object_file(root: Path, obj_id: str) -> str:
    """``object_path`` as a string (the layout is decided here): on every read's path, where
    ``pathlib`` costs more than the open itself."""
    hexid = ids.parse_id(obj_id)
    return f"{root}/{hexid[:2]}/{hexid}"


def object_path(root: Path, obj_id: str) -> Path:
    """Where ``obj_id`` lives (raises ``ids.BadId`` for a malformed id)."""
    return Path(object_file(root, obj_id))


def fanout_of(obj_id: str) -> str:
    """The fan-out dir ``obj_id`` lives in (``object_path``'s parent's name)."""
    return ids.parse_id(obj_id)[:2]


def temp_path(root: Path, name: str) -> Path:
    """The path of temp file ``name``; raises ``BadTempName`` unless ``TempObject`` could have
    made that name (so a request can never point the committer at another file)."""
    if not isinstance(name, str) or _TMP_NAME_RE.fullmatch(name) is None:
        raise BadTempName(f"{name!r:.80} is not a temp object name")
    return root / TMP_DIR / name


# -- writing --------------------------------------------------------------------------------------


class TempObject:
    """An upload in progress: a fresh 0600 file in ``objects/tmp`` hashed as it is written.

    ``write`` appends and raises ``ObjectTooLarge`` (after removing the file) past ``max_size``;
    ``finish`` closes the file and returns ``(id, size, tmp_name)`` for svc-storage's ``commit``
    (it does not fsync: the committer does, in groups); ``abort`` removes the file and may be
    called any number of times. As a context manager it aborts when the block raises or ends
    before ``finish``.
    """

    def __init__(self, root: Path, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.max_size = max_size
        self.size = 0
        self.name = f"{os.getpid():x}-{secrets.token_hex(16)}"
        self.path = temp_path(root, self.name)
        self._hasher = blake3.blake3()
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``. Raises ``ObjectTooLarge`` past the cap, ``StoreError`` if closed."""
        if self._fd is None:
            raise StoreError("temp object is closed")
        view = memoryview(data).cast("B")
        if self.size + len(view) > self.max_size:
            self.abort()
            raise ObjectTooLarge(f"object exceeds the {self.max_size}-byte cap")
        self._hasher.update(view)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
            self.size += written

    def finish(self) -> tuple[str, int, str]:
        """Close the file; ``(id, size, tmp_name)``. The file stays until committed or aborted."""
        if self._fd is None:
            raise StoreError("temp object is closed")
        fd, self._fd = self._fd, None
        os.close(fd)
        return ids.format_id(self._hasher.digest()), self.size, self.name

    def abort(self) -> None:
        """Close and remove the temp file. Idempotent, and harmless after a commit moved it."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> TempObject:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or self._fd is not None:
            self.abort()


def remove_temp(root: Path, name: str) -> None:
    """Remove temp file ``name`` if it exists."""
    temp_path(root, name).unlink(missing_ok=True)


# -- hashing and reading --------------------------------------------------------------------------


def _open_regular(path: Path | str) -> tuple[int, os.stat_result]:
    """(fd, fstat) of a regular file, never following a symlink; ``NotFound`` otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"{os.path.basename(path)} not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotFound(f"{os.path.basename(path)} is not a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotFound(f"{os.path.basename(path)} is not a regular file")
    return fd, st


def _hash_fd(fd: int) -> tuple[str, int]:
    """(id, size) of everything readable from ``fd`` from offset 0."""
    hasher = blake3.blake3()
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    off = 0
    while True:
        n = os.preadv(fd, [buf], off)
        if n == 0:
            return ids.format_id(hasher.digest()), off
        hasher.update(view[:n])
        off += n


def hash_file(path: Path) -> tuple[str, int]:
    """(id, size) of the regular file at ``path``; ``NotFound`` if there is none."""
    fd, _ = _open_regular(path)
    try:
        return _hash_fd(fd)
    finally:
        os.close(fd)


class VerifiedObject:
    """An open object whose whole content matched its id when opened.

    ``read(off, n)`` returns at most ``n`` bytes from ``off`` (clipped to ``size``). Objects up to
    ``READ_CHUNK`` bytes were read once to verify and are served from that copy; larger ones are
    read again with ``os.pread`` from the verified inode (``fd`` None: ``data`` is the whole
    object, verified when it was read). Close it (or use ``with``).
    """

    def __init__(self, obj_id: str, fd: int | None, size: int, data: bytes | None) -> None:
        self.id = obj_id
        self.size = size
        self._fd: int | None = fd
        self._data = data

    def read(self, off: int, n: int) -> bytes:
        if off < 0 or n < 0:
            raise ValueError("offset and length must be >= 0")
        end = min(self.size, off + n)
        if off >= end:
            return b""
        if self._data is not None:
            return self._data if (off, end) == (0, self.size) else self._data[off:end]
        if self._fd is None:
            raise StoreError("verified object is closed")
        parts = []
        while off < end:
            chunk = os.pread(self._fd, end - off, off)
            if not chunk:  # the verified file shrank: nobody may do that to an object
                raise IntegrityError(f"{self.id} changed while open")
            parts.append(chunk)
            off += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end)`` in pieces of at most 64 KiB (for streaming responses)."""
        stop = self.size if end is None else min(end, self.size)
        while start < stop:
            piece = self.read(start, min(SERVE_CHUNK, stop - start))
            yield piece
            start += len(piece)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> VerifiedObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_verified(root: Path, obj_id: str) -> VerifiedObject:
    """Open ``obj_id`` after verifying its full BLAKE3 digest.

    Raises ``ids.BadId`` (a malformed id), ``NotFound``, or ``IntegrityError`` when the bytes do
    not match the id (the caller must not serve it and should ask svc-storage to quarantine it).
    """
    fd, st = open_unverified(root, obj_id)
    return verify_opened(obj_id, fd, st.st_size)


def open_unverified(root: Path, obj_id: str) -> tuple[int, os.stat_result]:
    """(fd, fstat) of ``obj_id``'s file, NOT verified: only for ``verify_opened``, which a
    caller may run elsewhere (a worker thread) once the size is known. Raises like
    ``open_verified``."""
    return _open_regular(object_file(root, obj_id))


def verify_opened(obj_id: str, fd: int, size: int) -> VerifiedObject:
    """``open_unverified``'s file as a ``VerifiedObject`` once its digest matched ``obj_id``;
    the fd is closed when it does not (or on any error)."""
    try:
        if size <= READ_CHUNK:
            data = os.pread(fd, size + 1, 0)  # +1: notice a file longer than fstat said
            got, data_or_none = ids.id_of(data), data
        else:
            got, _ = _hash_fd(fd)
            data_or_none = None
        if got != obj_id:
            raise IntegrityError(f"{obj_id}: stored bytes hash to {got}")
        return VerifiedObject(obj_id, fd, size, data_or_none)
    except BaseException:
        os.close(fd)
        raise


# -- committing (svc-storage only) ----------------------------------------------------------------


def _fsync_path(path: Path, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_file(path: Path) -> None:
    """fsync the file at ``path`` (data and metadata)."""
    _fsync_path(path, os.O_NOFOLLOW)


# libc is already loaded in every Python process: dlopen(NULL) finds syncfs without
# ctypes.util.find_library, which runs `ldconfig -p` in a subprocess at import
_libc = ctypes.CDLL(None, use_errno=True)


def sync_filesystem(path: Path) -> None:
    """syncfs(2) on the filesystem holding ``path``: every dirty file and directory entry on it
    is on stable storage when this returns (Linux >= 5.8 also reports writeback errors). One call
    makes a whole batch durable, where fsync per file costs one journal commit each."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory: makes the entries created/renamed in it durable."""
    _fsync_path(path, os.O_DIRECTORY)


def install(root: Path, tmp_name: str, obj_id: str) -> bool:
    """Move a (verified, fsynced) temp file to its object path. True if it created the object;
    False if the object already existed (the temp file is removed: same id, same bytes)."""
    src = temp_path(root, tmp_name)
    dst = object_path(root, obj_id)
    if dst.exists():
        src.unlink(missing_ok=True)
        return False
    os.rename(src, dst)
    return True


def quarantine(root: Path, obj_id: str) -> int | None:
    """Re-verify ``obj_id``; if its bytes do not match, move it into ``quarantine/`` (durably)
    and return its size. None if it verifies. Raises ``NotFound`` if there is no such object."""
    path = object_path(root, obj_id)
    try:
        open_verified(root, obj_id).close()
        return None
    except IntegrityError:
        pass
    size = path.stat().st_size
    aside = root / QUARANTINE_DIR / f"{path.name}.{time.time_ns()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        raise NotFound(f"{obj_id} not found") from None
    fsync_dir(path.parent)
    fsync_dir(aside.parent)
    return size


def sweep_temps(root: Path, max_age: float, *, now: float | None = None) -> int:
    """Remove temp files not modified for ``max_age`` seconds (uploads a crash abandoned).
    Returns how many were removed."""
    cutoff = (time.time() if now is None else now) - max_age
    removed = 0
    with os.scandir(root / TMP_DIR) as entries:
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def stat_entries(root: Path, fanout: str) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """Each entry of one fan-out dir with its stat (one removed meanwhile is left out)."""
    with os.scandir(root / fanout) as entries:
        for entry in entries:
            try:
                yield entry, entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue


def scan_usage(root: Path) -> tuple[int, int]:
    """(bytes, objects) committed in the store, by walking the fan-out dirs."""
    total = count = 0
    for name in FANOUT:
        size, n = scan_dir_usage(root, name)
        total += size
        count += n
    return total, count


def scan_dir_usage(root: Path, fanout: str) -> tuple[int, int]:
    """(bytes, objects) committed in one fan-out dir."""
    total = count = 0
    with os.scandir(root / fanout) as entries:
        for entry in entries:
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
            count += 1
    return total, count


USAGE_HINT: Final = "usage.json"


def read_usage_hint(root: Path) -> tuple[int, int] | None:
    """(bytes, objects) the last process wrote, or None (none yet, or unreadable)."""
    try:
        doc = json.loads((root / USAGE_HINT).read_bytes())
        used, count = doc["bytes"], doc["objects"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if type(used) is not int or type(count) is not int or used < 0 or count < 0:
        return None
    return used, count


def write_usage_hint(root: Path, used: int, count: int) -> None:
    """Replace the hint atomically (no fsync: a hint; a machine crash may leave an older one)."""
    tmp = root / (USAGE_HINT + ".tmp")
    tmp.write_text(json.dumps({"bytes": used, "objects": count}))
    os.replace(tmp, root / USAGE_HINT)
