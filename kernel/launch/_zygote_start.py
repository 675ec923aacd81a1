"""Start a zygote process: stdlib only, so ``ronctl run`` can do it before its own heavy imports.

A zygote spends ~0.2-0.4 s importing the stack; the node spends about as long importing trio,
pyzmq, the admin plane and the supervisor. Started first, the zygote imports on the other core
while the node imports on this one, and the node's first spawns find it ready instead of waiting
for it (``kernel.node_boot``). ``ForkServerLauncher`` starts every later zygote the same way.

The process is started synchronously in the calling thread, on purpose: the zygote arms
PDEATHSIG for this process, and PDEATHSIG fires when the forking *thread* exits (see
``launcher``), so call this from the thread that will run the node (the main thread).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from kernel import childenv

__all__ = ["ZYGOTE_MODULE", "StartedZygote", "start_zygote"]

ZYGOTE_MODULE = "kernel.launch.zygote"
# the root the ``kernel`` package is imported from: the zygote must import it whatever the cwd
_IMPORT_ROOT = str(Path(__file__).resolve().parents[2])


class StartedZygote:
    """A zygote process that has been started and not yet adopted by a launcher.

    ``sock`` is our (non-blocking) end of the control socket, ``stdout``/``stderr`` the read ends
    of its output pipes. Whoever adopts it (``claim``) owns all of that; ``discard`` kills and
    reaps a zygote nobody claimed, and does nothing once it was claimed.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        sock: socket.socket,
        stdout: int,
        stderr: int,
        preload: tuple[str, ...],
    ) -> None:
        self.popen = popen
        self.sock = sock
        self.stdout = stdout
        self.stderr = stderr
        self.preload = preload  # what it was asked to import, to match it with its adopter
        self._claimed = False

    def claim(self) -> StartedZygote:
        if self._claimed:
            raise RuntimeError("this zygote was already adopted")
        self._claimed = True
        return self

    def discard(self) -> None:
        if self._claimed:
            return
        self._claimed = True
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        self.sock.close()
        for fd in (self.stdout, self.stderr):
            os.close(fd)


def start_zygote(preload: Iterable[str] = (), *, python: str = sys.executable) -> StartedZygote:
    """Start ``python -m kernel.launch.zygote`` preloading ``preload``; raises ``OSError``."""
    modules = tuple(dict.fromkeys(preload))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [_IMPORT_ROOT, env.get("PYTHONPATH")])),
            childenv.PARENT_PID: str(os.getpid()),
            childenv.ZYGOTE_FD: str(theirs.fileno()),
            childenv.ZYGOTE_PRELOAD: childenv.encode_list(modules),
        }
    )
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        popen = subprocess.Popen(
            [python, "-m", ZYGOTE_MODULE],
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            close_fds=True,
            pass_fds=(theirs.fileno(),),
            env=env,
            start_new_session=True,
        )
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        ours.close()
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
        theirs.close()
    return StartedZygote(popen, ours, out_r, err_r, modules)
