"""The live lock: one robust, process-shared mutex per service, held by its live instance.

Why: a ``kill -9`` is seen by the supervisor (pidfd, SIGCHLD) only once the kernel has torn
the process down, 5-15 ms for a service (unmapping ~40 MB); a warm spare told to go after that
cannot be back in under 10 ms. The kernel releases a *robust* mutex whose owner thread dies at
the start of that teardown (the robust-futex list is walked before the memory is unmapped), so a
spare blocked on the live instance's mutex wakes 0.2-4 ms after the kill. The same mutex also
makes "exactly one live instance" something the kernel enforces: a process acts as the live
instance only while it holds the lock.

Layout of ``RUNTIME_DIR/spares/NAME.lock`` (one page, ``MAP_SHARED`` in every process):

* ``live`` (offset 0): the live lock. The live instance's holder thread takes it before the
  process acts and keeps it until the process dies (it never unlocks).
* ``words`` (offset 64): a second robust mutex guarding the three words after it, held for a few
  microseconds at a time: ``armed`` (the pid of the spare that may go live by itself), ``claimed``
  (the pid of the spare that did), ``holder`` (the pid holding ``live``, written by it).

The protocol (``kernel.launch.warm`` arms, ``kernel.launch.warm_go`` waits):

* The supervisor *arms* a warm spare only while a crash of the live instance would be restarted
  at once by the policy, and only if ``holder`` is that live instance (it really holds the lock).
* A spare's holder thread blocks on ``live``. When it gets it because its owner died
  (``EOWNERDEAD``), it *claims* under ``words``: if ``armed`` is its pid, ``claimed`` becomes its
  pid and it goes live without waiting for the supervisor. Otherwise it lets go of the lock and
  waits to be told to go (``g``), then takes the lock again: a spare keeps the lock only as the
  live instance.
* The supervisor *disarms* under ``words`` before it stops or replaces the live instance, and
  when a crash's decision is not "restart at once": after ``disarm`` returns, no spare can claim,
  and the returned pid says whether one already had. Claim and disarm are linearised by
  ``words``, so either the spare goes live and the supervisor knows it, or it does not.

The supervisor only ever *tries* ``words`` (``pthread_mutex_trylock``, a bounded spin): a trio
task never blocks on it.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kernel._libc import libc

__all__ = ["LOCK_FAILED_EXIT", "UNKNOWN", "HolderThread", "LiveLock", "lock_path"]

_PAGE = 4096
_LIVE, _WORDS = 0, 64  # two pthread_mutex_t (40 bytes on x86-64 glibc, 48 on arm64)
_ARMED, _CLAIMED, _HOLDER = 128, 132, 136
_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1
# disarm could not get the words lock in time (a spare stopped inside its claim): the caller
# must assume the spare claimed
UNKNOWN = -1
_TRY_FOR = 0.005  # s the supervisor spins on the words lock at most
# a process whose live lock fails exits with this (it is seen as a crash, and restarted)
LOCK_FAILED_EXIT = 71
# a spare that got the lock free (no live instance holds it yet) lets go and looks again
_FREE_RETRY_MIN, _FREE_RETRY_MAX = 0.005, 0.1


def lock_path(runtime_dir: Path, name: str) -> Path:
    return runtime_dir / "spares" / f"{name}.lock"


class LiveLock:
    """One service's lock page, mapped in this process."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        os.close(fd)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self._live = ctypes.c_void_p(base + _LIVE)
        self._words = ctypes.c_void_p(base + _WORDS)
        self._armed = ctypes.c_int32.from_buffer(self._map, _ARMED)
        self._claimed = ctypes.c_int32.from_buffer(self._map, _CLAIMED)
        self._holder = ctypes.c_int32.from_buffer(self._map, _HOLDER)

    @classmethod
    def create(cls, path: Path) -> LiveLock:
        """A new page at ``path`` (replacing any), both mutexes initialised. Supervisor only,
        before any process of the service exists."""
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_suffix(".new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(fd, _PAGE)
        lock = cls(fd)
        attr = ctypes.create_string_buffer(64)
        c = libc()
        _check(c.pthread_mutexattr_init(attr))
        _check(c.pthread_mutexattr_setpshared(attr, _PTHREAD_PROCESS_SHARED))
        _check(c.pthread_mutexattr_setrobust(attr, _PTHREAD_MUTEX_ROBUST))
        _check(c.pthread_mutex_init(lock._live, attr))
        _check(c.pthread_mutex_init(lock._words, attr))
        c.pthread_mutexattr_destroy(attr)
        os.replace(tmp, path)
        return lock

    @classmethod
    def open(cls, path: Path) -> LiveLock | None:
        """The page at ``path``; None when there is none (spares are off for the service)."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        return cls(fd)

    # ---- the supervisor's side (never blocks) -----------------------------------------------

    @property
    def holder(self) -> int:
        """The pid that last took the live lock to keep it (0: none yet)."""
        return self._holder.value

    def arm(self, spare: int, live: int) -> bool:
        """Let ``spare`` go live by itself when ``live`` dies; False (nothing changed) unless
        ``live`` holds the lock."""
        if not self._try_words():
            return False
        try:
            if self._holder.value != live:
                return False
            self._armed.value = spare
            return True
        finally:
            libc().pthread_mutex_unlock(self._words)

    def disarm(self) -> int:
        """No spare goes live by itself from now on; the pid of the one that already did (0:
        none; ``UNKNOWN``: the words lock stayed busy, assume one did)."""
        if not self._try_words():
            return UNKNOWN
        try:
            self._armed.value = 0
            return self._claimed.value
        finally:
            libc().pthread_mutex_unlock(self._words)

    def _try_words(self) -> bool:
        c, until = libc(), time.monotonic() + _TRY_FOR
        while True:
            rc = c.pthread_mutex_trylock(self._words)
            if rc == errno.EOWNERDEAD:  # a spare died inside its claim: the words are whole
                c.pthread_mutex_consistent(self._words)
                return True
            if rc == 0:
                return True
            if rc != errno.EBUSY or time.monotonic() >= until:
                return False
            time.sleep(0)  # a claim takes microseconds

    # ---- the service's side (blocking: the holder thread only) -------------------------------

    def _take_live(self) -> bool:
        """Block until this thread holds the live lock; True if its owner had died."""
        c = libc()
        rc = c.pthread_mutex_lock(self._live)
        if rc == errno.EOWNERDEAD:
            _check(c.pthread_mutex_consistent(self._live))
            return True
        _check(rc)
        return False

    def _claim(self, pid: int) -> bool:
        c = libc()
        rc = c.pthread_mutex_lock(self._words)
        if rc == errno.EOWNERDEAD:
            c.pthread_mutex_consistent(self._words)
        elif rc != 0:
            return False
        try:
            if self._armed.value != pid:
                return False
            self._armed.value = 0
            self._claimed.value = pid
            return True
        finally:
            c.pthread_mutex_unlock(self._words)


class HolderThread:
    """The thread that takes a service's live lock and holds it for the process's lifetime.

    ``spare``: the process is a warm spare; it keeps the lock only once told to go
    (``go()``) or after claiming it on the live instance's death. ``on_held(claimed)`` runs in
    the holder thread once the lock is held for good (``claimed``: the spare went live by itself).
    The thread then waits forever: a robust mutex is released when its owner *thread* ends, so
    the owner must live exactly as long as the process.
    """

    def __init__(self, lock: LiveLock, *, spare: bool, on_held: Callable[[bool], None]) -> None:
        self._lock = lock
        self._spare = spare
        self._on_held = on_held
        self._told = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ron-live-lock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def go(self) -> None:
        """The supervisor said go: keep the lock as soon as it is free."""
        self._told.set()

    def _run(self) -> None:
        try:
            self._hold()
        except BaseException as exc:  # the lock is unusable: a crash, not a process that hangs
            os.write(2, f"ron: live lock failed: {exc!r}\n".encode())
            os._exit(LOCK_FAILED_EXIT)

    def _hold(self) -> None:
        lock, pid, retry = self._lock, os.getpid(), _FREE_RETRY_MIN
        claimed = False
        while True:
            died = lock._take_live()
            if not self._spare or self._told.is_set():
                break
            if died and lock._claim(pid):
                claimed = True
                break
            # a spare keeps the lock only as the live instance: let go, and look again once a
            # live instance may hold it (polling only while nobody does), or when told to go
            libc().pthread_mutex_unlock(lock._live)
            retry = _FREE_RETRY_MIN if died else min(2 * retry, _FREE_RETRY_MAX)
            self._told.wait(retry)
        lock._holder.value = pid
        self._on_held(claimed)
        threading.Event().wait()  # held until the process ends


def _check(rc: int) -> None:
    if rc != 0:
        raise OSError(rc, os.strerror(rc))
