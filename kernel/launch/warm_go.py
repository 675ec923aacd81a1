"""A warm spare's end of its go socket: say "warm", then wait to be told to go live.

A warm spare (``kernel.launch.warm``) is a service process the fork server started ahead of a
crash. Its harness (``kernel.service``) prepares everything that does not depend on being the
live instance, then calls ``GoSocket.wait``: it sends ``w`` (the supervisor may count the spare
as warm) and waits for ``g``, or, where the service has a live lock (``kernel.launch.live_lock``),
for the live instance to die while the supervisor has armed this spare: then it goes live by
itself, without the supervisor's round trip. Anything else (EOF: the supervisor dropped the spare
or is gone) ends the process at once with ``ORPHAN_EXIT``, before it has bound, published or
written anything, which is why an unclaimed spare can be thrown away at any moment.

Guarantee: ``wait`` returns at most once per process, and only after ``g`` or a claim; with a
live lock it returns only once this process holds it, so no two processes act as the live
instance at once, and no spare goes live twice (the supervisor sends ``g`` once per spare and
arms each spare once).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import MutableMapping

import trio

from kernel import childenv
from kernel.launch.live_lock import HolderThread, LiveLock

__all__ = ["ORPHAN_EXIT", "GoSocket", "hold_live_lock", "normal_priority", "prepare_idle"]

# the same code as a forked service released without Go (zygote.ORPHAN_EXIT)
ORPHAN_EXIT = 70


def prepare_idle() -> bool:
    """Prepare this spare at idle CPU priority (``SCHED_IDLE``): a spare forked behind a crash
    must not slow the services coming back, nor the live ones. Only where this process may
    return to normal priority afterwards (root, or ``RLIMIT_NICE`` >= 20: probed on a throwaway
    thread first), else nothing changes. True if it is idle now; ``GoSocket.wait`` restores."""
    allowed: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            allowed.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, name="ron-sched-probe")
    thread.start()
    thread.join()
    if not allowed:
        return False
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # threads made now inherit it
    return True


def normal_priority(pid: int | None = None) -> None:
    """Every thread of this process (or of ``pid``) back to ``SCHED_OTHER``: the spare has
    prepared, or is taken before it has (the supervisor hurries it along)."""
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid or 'self'}/task"):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))


class GoSocket:
    """The spare's end of the SEQPACKET pair the zygote made (fd in ``RON_WARM_GO``)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.idle = False  # prepared at SCHED_IDLE (prepare_idle): wait restores

    @classmethod
    def take(cls, environ: MutableMapping[str, str]) -> GoSocket | None:
        """The go socket named in ``environ`` (removed from it, so no child of the service
        inherits the name); None for a service started the ordinary way."""
        raw = environ.pop(childenv.WARM_GO, None)
        if raw is None:
            return None
        return cls(socket.socket(fileno=int(raw)))

    async def wait(self, lock: LiveLock | None) -> None:
        """Say ``w``; return once this process is the live instance: told ``g`` (and holding
        ``lock``), or, with ``lock``, armed and the live instance dead (``kernel.launch.
        live_lock``). Exits the process (70) on anything else from the supervisor."""
        if self.idle:  # prepared: waiting costs no CPU, and going live must not wait for it
            normal_priority()
        self._sock.setblocking(False)
        if lock is None:
            await self._told_go()
            self._sock.close()
            return
        held = _Held(lock, spare=True)
        async with trio.open_nursery() as nursery:

            async def told() -> None:
                await self._told_go()
                held.thread.go()

            nursery.start_soon(told)
            await held.event.wait()
            if held.claimed:  # live by itself: the supervisor's g (if any) finds the socket open
                nursery.cancel_scope.cancel()
        if not held.claimed:
            self._sock.close()

    async def _told_go(self) -> None:
        # best effort: if the supervisor already sent g (it took us before we were warm) and
        # closed its end, this fails, and the g still waits to be read below
        with contextlib.suppress(OSError):
            self._sock.send(b"w")
        try:
            while True:
                try:
                    word = self._sock.recv(1)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self._sock)
        except OSError:
            word = b""
        if word != b"g":
            os._exit(ORPHAN_EXIT)  # never acted: nothing to clean up, no finaliser to run


async def hold_live_lock(lock: LiveLock) -> None:
    """Return once this process (not a spare: a service started the ordinary way) holds its
    service's live lock; at once unless a process that held it is still being torn down."""
    await _Held(lock, spare=False).event.wait()


class _Held:
    """A started ``HolderThread`` as trio sees it: ``event`` is set once the lock is held,
    ``claimed`` says whether by a claim (the spare went live by itself)."""

    def __init__(self, lock: LiveLock, *, spare: bool) -> None:
        self.event = trio.Event()
        self.claimed = False
        token = trio.lowlevel.current_trio_token()

        def on_held(claimed: bool) -> None:  # in the holder thread
            self.claimed = claimed
            token.run_sync_soon(self.event.set)

        self.thread = HolderThread(lock, spare=spare, on_held=on_held)
        self.thread.start()
