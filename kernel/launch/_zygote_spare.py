"""A spare: a service process the zygote forks *before* it is asked for one.

Forking the preloaded zygote (~40 MB of page tables to copy) and getting the new process onto a
CPU is the largest single cost of a respawn: ~2 ms of the ~10 ms from crash to a running
service here. A spare pays it while the node is idle. It is forked with ``sibling_fork``, so it
is already the supervisor's child, and it waits, doing nothing, on a private socket. A ``Spawn``
request is then forwarded to it (same message, same descriptors) instead of forking, the zygote
replies ``Spawned{spare's pid}``, and the ``Go`` byte reaches the spare over the same socket. From
there it is an ordinary forked service (``zygote._Job``). The zygote forks the next spare once the
exchange is over.

Lifetime: the spare holds only its own socket (and stdio). If the zygote goes away, the socket
reads EOF and the spare exits (``ORPHAN_EXIT``) without running anything; the supervisor reaps it
as a stray. A spare that died early makes the hand-over fail (the peer is gone), and the zygote
forks as usual. Spares exist only with ``sibling_fork``: under the double fork the process would
be the intermediate's child, and the hand-over would gain nothing.
"""

from __future__ import annotations

import os
import socket
import sys

from kernel import procname
from kernel.launch import _sibling_fork
from kernel.launch import _zygote_wire as wire

__all__ = ["Spare"]


class Spare:
    """The zygote's handle on one idle spare (only ever used in the zygote)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock

    @staticmethod
    def fork(
        ctl: socket.socket, orphan_exit: int
    ) -> tuple[Spare | None, tuple[wire.Spawn, list[int], int] | None]:
        """Fork a spare. In the zygote: (spare, None), or (None, None) if the fork failed.

        In the spare, once it is handed a request: (None, (request, fds, go_fd)); ``go_fd`` is
        read for the ``Go`` byte. A spare that is never handed one exits here.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = _sibling_fork.sibling_fork()
        except OSError:
            ours.close()
            theirs.close()
            return None, None
        if pid != 0:
            theirs.close()
            return Spare(pid, ours), None
        procname.set_name(procname.SPARE)
        ctl.close()
        ours.close()
        try:
            msg, fds = wire.recv(theirs)
        except (OSError, wire.ProtocolError):
            os._exit(orphan_exit)
        if not isinstance(msg, wire.Spawn) or len(fds) != 2 + msg.listen_fds:
            os._exit(orphan_exit)
        return None, (msg, fds, theirs.detach())

    def hand_over(self, req: wire.Spawn, fds: list[int]) -> int | None:
        """Give ``req`` to the spare; the fd to write ``Go`` to, or None if the spare is gone.

        Either way this handle is used up, and ``fds`` stay the caller's to close.
        """
        try:
            wire.send(self._sock, req, fds)
        except OSError:
            self._sock.close()
            return None
        return self._sock.detach()

    def close(self) -> None:
        """Let the spare go (it reads EOF and exits)."""
        self._sock.close()
