"""The persistent data dir of a node (macronode): whose it is, and that one node uses it at once.

DESIGN.md §6: a data dir owned by another user, or writable by group or others, is refused at
start (whoever can write it can swap in their own ``objects/`` or ``index/``). Two nodes on one
data dir would each keep their own quota accounting and race each other's commits, so a node
holds an exclusive ``flock`` on ``<data_dir>/node.lock`` for its lifetime.

Guarantees of ``DataDir.claim``: on return the dir exists, is a real directory (not a symlink)
owned by this user, not writable by group or others, and this process holds its lock; the lock
is released by ``close`` or by the kernel when the process dies, ``kill -9`` included, so a
crashed node never blocks the next one. The lock's descriptor is close-on-exec: services never
inherit it. Its ``keys/`` dir, if any, is private to this user (``check_keys_private``).
Every refusal is a ``DataDirError`` whose ``str()`` is one line saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from kernel._owned_dir import LockHeld, check_owned, take_lock

__all__ = ["LOCK_NAME", "DataDir", "DataDirError"]

LOCK_NAME = "node.lock"
KEYS_DIR = "keys"  # services.lib.keys.KEYS_DIR: the kernel checks it, the identity service owns it


class DataDirError(Exception):
    """The data dir cannot be used by this node; ``str()`` is one line for the operator."""


def check_keys_private(keys: Path) -> None:
    """Refuse a key dir (``services.lib.keys``' ``keys/``) or key file another user owns or that
    group/others may read or write: the node's identity and token keys are secrets, and a key
    someone else could have read or replaced is no identity. The identity service checks again."""
    if not keys.exists():
        return
    for entry in (keys, *sorted(keys.iterdir())):
        st = entry.lstat()
        kind = "key dir" if entry == keys else "key file"
        if st.st_uid != os.geteuid():
            raise DataDirError(
                f"{kind} {entry} is owned by uid {st.st_uid}, not this user (uid {os.geteuid()}); "
                "refusing to start with keys someone else controls"
            )
        if st.st_mode & 0o077:
            want = "700" if entry == keys else "600"
            raise DataDirError(
                f"{kind} {entry} has mode {st.st_mode & 0o777:o}: readable or writable by others; "
                f"run `chmod {want} {entry}` (and rotate: `ronctl token rotate`)"
            )


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
        check_owned(
            path,
            what="data dir",
            too_open=0o022,
            error=DataDirError,
            not_dir_fix="",
            owner_fix=f"not by this user (uid {os.geteuid()}); "
            "pass --data-dir with a dir of your own",
            mode_problem="writable by group or others",
            mode_fix=f"run `chmod go-w {path}`",
        )
        try:
            lock_fd = take_lock(path / LOCK_NAME)
        except LockHeld as held:
            holder = f"pid {held.note}" if held.note.isdigit() else "pid unknown"
            raise DataDirError(
                f"data dir {path} is in use by another node ({holder}); stop it first "
                "or pass another --data-dir"
            ) from None
        except OSError as exc:
            raise DataDirError(f"cannot lock data dir {path}: {exc.strerror or exc}") from None
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for the message above
        try:
            check_keys_private(path / KEYS_DIR)
        except DataDirError:
            os.close(lock_fd)
            raise
        return cls(path, lock_fd)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __repr__(self) -> str:
        return f"DataDir({str(self.path)!r})"
