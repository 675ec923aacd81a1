"""The persistent data dir of a node (macronode): whose it is, and that one node uses it at once.

DESIGN.md §6: a data dir owned by another user, or writable by group or others, is refused at
start (whoever can write it can swap in their own ``objects/`` or ``index/``). Two nodes on one
data dir would each keep their own quota accounting and race each other's commits, so a node
holds an exclusive ``flock`` on ``<data_dir>/node.lock`` for its lifetime.

Guarantees of ``DataDir.claim``: on return the dir exists, is a real directory (not a symlink)
owned by this user, not writable by group or others, and this process holds its lock; the lock
is released by ``close`` or by the kernel when the process dies, ``kill -9`` included, so a
crashed node never blocks the next one. The lock's descriptor is close-on-exec: services never
inherit it. Every refusal is a ``DataDirError`` whose ``str()`` is one line saying what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

__all__ = ["LOCK_NAME", "DataDir", "DataDirError"]

LOCK_NAME = "node.lock"


class DataDirError(Exception):
    """The data dir cannot be used by this node; ``str()`` is one line for the operator."""


def _check_owned_not_writable_by_others(path: Path) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise DataDirError(f"data dir {path} is not a directory (or is a symlink)")
    if st.st_uid != os.geteuid():
        raise DataDirError(
            f"data dir {path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()});"
            " pass --data-dir with a dir of your own"
        )
    if st.st_mode & 0o022:
        raise DataDirError(
            f"data dir {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod go-w {path}`"
        )


def _holder(lock_fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(lock_fd, 32, 0).decode().strip() or "x")
        return f"pid {pid}"
    return "pid unknown"


class DataDir:
    """A claimed data dir. Create with ``DataDir.claim``; ``close`` releases it (idempotent)."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    @classmethod
    def claim(cls, path: Path) -> DataDir:
        """Create ``path`` (0700) if needed, check whose it is, and lock it (see module doc)."""
        path = Path(os.path.abspath(path))
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"cannot create data dir {path}: {exc.strerror or exc}") from None
        _check_owned_not_writable_by_others(path)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            lock_fd = os.open(path / LOCK_NAME, flags, 0o600)
        except OSError as exc:
            raise DataDirError(f"cannot lock data dir {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(lock_fd)
            os.close(lock_fd)
            raise DataDirError(
                f"data dir {path} is in use by another node ({holder}); stop it first "
                "or pass another --data-dir"
            ) from None
        except BaseException:
            os.close(lock_fd)
            raise
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for the message above
        return cls(path, lock_fd)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __repr__(self) -> str:
        return f"DataDir({str(self.path)!r})"
