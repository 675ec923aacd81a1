"""The two checks every node directory gets (the runtime dir and the data dir): that it is a
real directory of ours and not too open, and an exclusive ``flock`` on a lock file inside it.

Guarantees: ``check_owned`` raises the caller's error class with one line naming the problem and
its fix; ``take_lock`` returns a close-on-exec descriptor holding an exclusive, non-blocking
``flock`` (released by the kernel when the process dies, ``kill -9`` included), or raises
``LockHeld`` carrying what the lock file says about its holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

__all__ = ["LockHeld", "check_owned", "take_lock"]


class LockHeld(Exception):
    """Another process holds the lock; ``note`` is the lock file's content (may be empty)."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


def check_owned(
    path: Path,
    *,
    what: str,
    too_open: int,
    error: type[Exception],
    not_dir_fix: str,
    owner_fix: str,
    mode_problem: str,
    mode_fix: str,
) -> None:
    """``path`` must be a directory (not a symlink), owned by this user, with none of the
    ``too_open`` mode bits; else ``error`` with ``"<what> <path> <problem>; <fix>"``."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {path} is not a directory (or is a symlink){not_dir_fix}")
    if st.st_uid != os.geteuid():
        raise error(f"{what} {path} is owned by uid {st.st_uid}, {owner_fix}")
    if st.st_mode & too_open:
        raise error(
            f"{what} {path} is {mode_problem} (mode {stat.S_IMODE(st.st_mode):04o}); {mode_fix}"
        )


def take_lock(lock_path: Path) -> int:
    """Open (0600, no symlink) and exclusively ``flock`` ``lock_path``; ``OSError`` if it cannot
    be opened, ``LockHeld`` if another process holds it."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(lock_path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        note = ""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            note = os.pread(fd, 64, 0).decode().strip()
        os.close(fd)
        raise LockHeld(note) from None
    except BaseException:
        os.close(fd)
        raise
    return fd
