"""A warm spare's end of its go socket: say "warm", then wait to be told to go live.

A warm spare (``kernel.launch.warm``) is a service process the fork server started ahead of a
crash. Its harness (``kernel.service``) prepares everything that does not depend on being the
live instance, then calls ``GoSocket.wait``: it sends ``w`` (the supervisor may count the spare
as warm) and waits for ``g``. Anything else (EOF: the supervisor dropped the spare or is gone)
ends the process at once with ``ORPHAN_EXIT``, before it has bound, published or written
anything, which is why a spare can be thrown away at any moment.

Guarantee: ``wait`` returns at most once per process, and only after ``g``; the supervisor sends
``g`` once per spare (it forgets the spare as it sends), so no spare goes live twice.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import MutableMapping

import trio

from kernel import childenv

__all__ = ["ORPHAN_EXIT", "GoSocket"]

# the same code as a forked service released without Go (zygote.ORPHAN_EXIT)
ORPHAN_EXIT = 70


class GoSocket:
    """The spare's end of the SEQPACKET pair the zygote made (fd in ``RON_WARM_GO``)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def take(cls, environ: MutableMapping[str, str]) -> GoSocket | None:
        """The go socket named in ``environ`` (removed from it, so no child of the service
        inherits the name); None for a service started the ordinary way."""
        raw = environ.pop(childenv.WARM_GO, None)
        if raw is None:
            return None
        return cls(socket.socket(fileno=int(raw)))

    async def wait(self) -> None:
        """Say ``w``; return once ``g`` arrives. Exits the process (70) on anything else."""
        self._sock.setblocking(False)
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
        self._sock.close()
