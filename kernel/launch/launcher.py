"""How a child process is started: one small, replaceable piece (a fork-server may replace it).

The supervisor only needs the two Protocols below. ``ExecLauncher`` runs
``python -m <spec.module>`` in a fresh interpreter:

* stdin is /dev/null, stdout and stderr are pipes exposed as trio receive streams (the caller pumps
  them in tasks it owns; the launcher starts no task);
* file descriptors are closed (``close_fds``), no ``preexec_fn``;
* the child gets its own session, so a terminal's Ctrl-C reaches only the supervisor, which then
  shuts children down in order;
* the environment is the caller's ``env`` over (by default) ours, plus ``RON_SERVICE`` and
  ``RON_PARENT_PID`` (for ``pdeathsig.arm_from_env``).

The fork happens synchronously in the trio thread, on purpose: PR_SET_PDEATHSIG fires when the
forking *thread* exits, and ``trio.lowlevel.open_process`` forks from a worker thread that trio
retires after 10 s idle, which kills every child (measured). A vfork+exec costs well under a
millisecond, and avoiding the thread hop also shortens crash-to-respawn.

Exit detection uses a pidfd (Linux): ``wait()`` wakes the moment the child exits, no polling.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Protocol

import trio

from kernel import childenv

__all__ = [
    "ChildProcess",
    "ExecLauncher",
    "Handover",
    "Launcher",
    "PidfdChild",
    "PopenChild",
    "ServiceSpecLike",
    "describe_returncode",
    "reap_within",
]


class ServiceSpecLike(Protocol):
    """What a launcher needs from a service spec."""

    @property
    def name(self) -> str: ...
    @property
    def module(self) -> str: ...


class ChildProcess(Protocol):
    """A running child. ``wait()`` reaps it; ``returncode`` is negative for a signal."""

    pid: int
    stdout: trio.abc.ReceiveStream | None
    stderr: trio.abc.ReceiveStream | None

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...

    async def aclose(self) -> None: ...


class Launcher(Protocol):
    async def spawn(self, spec: ServiceSpecLike, env: Mapping[str, str]) -> ChildProcess: ...


class Handover(Protocol):
    """A launcher's warm spares as the supervisor's loop steers them (``kernel.launch.warm``):
    a spare may be armed to go live by itself the moment the live instance dies."""

    def arm(self, name: str, pid: int, after: float) -> None: ...
    def disarm(self, name: str, *, keep: bool) -> bool: ...


class PidfdChild:
    """What every launched child shares: output pipes as trio streams, a pidfd to watch it.

    Subclasses set ``pid``, ``stdout``, ``stderr``, ``_pidfd``, ``_watching``, ``_exited`` and
    implement ``returncode``, ``_reap`` and ``send_signal``.
    """

    pid: int
    stdout: trio.abc.ReceiveStream | None
    stderr: trio.abc.ReceiveStream | None
    _pidfd: int | None
    _watching: bool
    _exited: trio.Event

    @property
    def returncode(self) -> int | None:
        raise NotImplementedError

    def send_signal(self, sig: int) -> None:
        raise NotImplementedError

    def _reap(self) -> int:
        """Reap the exited child (a zombie by now) and return its exit code."""
        raise NotImplementedError

    async def _wait_exit(self) -> None:
        """Until the child has exited (not reaped): the pidfd turns readable."""
        assert self._pidfd is not None
        await trio.lowlevel.wait_readable(self._pidfd)

    async def wait(self) -> int:
        """Wait for exit and reap. Cancel-safe; several tasks may wait at once; returns at once
        if already reaped."""
        rc = self.returncode
        if rc is not None:
            return rc
        if self._watching:
            await self._exited.wait()
            rc = self.returncode
            assert rc is not None
            return rc
        self._watching = True
        try:
            await self._wait_exit()
        finally:
            self._watching = False
        rc = self._reap()
        self._close_pidfd()
        self._exited.set()
        return rc

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None and not self._watching:
            fd, self._pidfd = self._pidfd, None
            trio.lowlevel.notify_closing(fd)
            os.close(fd)

    async def aclose(self) -> None:
        """Close the pipes and the pidfd. Does not kill or reap the child."""
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                await stream.aclose()
        self._close_pidfd()


class PopenChild(PidfdChild):
    """A ``subprocess.Popen`` made trio-friendly: pidfd-based ``wait``, pipes as trio streams.

    Several tasks may ``await wait()`` at once; signals after exit are ignored (never sent to a
    recycled pid, since ``Popen`` checks for exit first).
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdout: trio.abc.ReceiveStream | None,
        stderr: trio.abc.ReceiveStream | None,
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdout = stdout
        self.stderr = stderr
        self._exited = trio.Event()
        self._watching = False
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(popen.pid)
            except OSError:  # very old kernel: fall back to a waiter thread
                self._pidfd = None

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def _wait_exit(self) -> None:
        if self._pidfd is not None:
            await trio.lowlevel.wait_readable(self._pidfd)
        else:  # very old kernel: a waiter thread
            await trio.to_thread.run_sync(self._popen.wait, abandon_on_cancel=True)

    def _reap(self) -> int:
        return self._popen.wait()  # the child is a zombie by now: this only reaps

    def send_signal(self, sig: int) -> None:
        self._popen.send_signal(sig)


class ExecLauncher:
    """Spawn ``<python> -m <spec.module>`` with pipes for output. See the module docstring."""

    def __init__(
        self,
        *,
        python: str = sys.executable,
        inherit_env: bool = True,
        cwd: str | None = None,
    ) -> None:
        self._python = python
        self._inherit_env = inherit_env
        self._cwd = cwd

    def command(self, spec: ServiceSpecLike) -> list[str]:
        return [self._python, "-m", spec.module]

    def environment(self, spec: ServiceSpecLike, env: Mapping[str, str]) -> dict[str, str]:
        """The child's environment: ours (optional) < PYTHONUNBUFFERED=1 < ``env`` < RON_*."""
        full: dict[str, str] = dict(os.environ) if self._inherit_env else {}
        full["PYTHONUNBUFFERED"] = "1"  # children's log lines must reach us as they are written
        full.update(env)
        full[childenv.SERVICE] = spec.name
        full[childenv.PARENT_PID] = str(os.getpid())
        return full

    async def spawn(self, spec: ServiceSpecLike, env: Mapping[str, str]) -> PopenChild:
        """Start the child; raises ``OSError`` if it cannot be started at all."""
        await trio.lowlevel.checkpoint()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            # synchronous on purpose (PDEATHSIG is per forking thread): see the module docstring
            popen = subprocess.Popen(  # noqa: ASYNC220
                self.command(spec),
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                close_fds=True,
                pass_fds=childenv.decode_fds(env),  # listening sockets (socket activation)
                env=self.environment(spec, env),
                cwd=self._cwd,
                start_new_session=True,
            )
        except BaseException:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            raise
        os.close(out_w)
        os.close(err_w)
        return PopenChild(popen, trio.lowlevel.FdStream(out_r), trio.lowlevel.FdStream(err_r))


async def reap_within(child: ChildProcess, deadline: float) -> None:
    """Give ``child`` ``deadline`` seconds to exit by itself (it was told to, or will be
    told by EOF), kill it if it has not, reap it and close its pipes."""
    with trio.move_on_after(deadline):
        await child.wait()
    if child.returncode is None:
        child.kill()
        await child.wait()
    await child.aclose()


def describe_returncode(rc: int) -> str:
    """``exit N`` or ``signal SIGNAME`` (subprocess convention: negative = killed by signal)."""
    if rc >= 0:
        return f"exit {rc}"
    try:
        return f"signal {signal.Signals(-rc).name}"
    except ValueError:
        return f"signal {-rc}"
