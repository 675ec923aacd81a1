"""``ForkServerLauncher``: services forked from a preloaded zygote, exec as the fallback.

A ``Launcher`` (see ``launcher``) whose ``spawn`` asks the zygote (``zygote``: an interpreter that
already imported the stack and the profile's service modules) to fork the service. A respawn then
costs a couple of forks and the service's own start-up, not an interpreter start plus imports.

Lifetime: ``run()`` owns the zygote. Start it with ``await nursery.start(launcher.run)``; it
reports started once the first zygote is ready (or failed to be), and runs until cancelled, which
kills the zygote. ``spawn()`` works at any time: whenever no zygote is ready (not started yet,
crashed, restarting), services are spawned by plain exec (``ExecLauncher``), so a zygote failure
never stops the node; the zygote itself is restarted with a capped backoff.

Guarantees (the zygote module docstring explains the double fork):

* The supervisor is the real parent of every service it starts, in both modes. ``run()`` makes
  this process a child subreaper, so a service forked by the zygote's intermediate process is
  reparented here; the child is watched through a pidfd opened before the service is allowed to
  run, exit is seen at once, ``wait()`` reaps it and returns the real status (negative = signal).
* Each service gets its own stdout/stderr pipes, created here and passed over SCM_RIGHTS with the
  request, and the listening sockets named in ``RON_LISTEN_FDS`` likewise.
* The environment is exactly the exec path's (``ExecLauncher.environment``).
* No zombies: besides the children it hands out, a subreaper inherits strays (a service's orphaned
  descendants, or a service released by a zygote that died mid-request, which exits at once).
  While ``run()`` is active, every SIGCHLD makes it reap exited children it did not hand out. This
  assumes the launcher is the only thing starting processes in this process (true in the node).
* No orphans: the zygote has PDEATHSIG for the supervisor; services arm theirs for the supervisor
  once reparented (so the zygote's death does not touch them, and a ``kill -9`` of the supervisor
  takes everything down).
* Spawns are serialised on one control socket, each exchange bounded by ``request_timeout``; a
  zygote that breaks the protocol or misses the deadline is killed and replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from functools import partial
from typing import Any

import attrs
import trio

from kernel import childenv
from kernel._libc import prctl
from kernel.launch import _zygote_wire as wire
from kernel.launch._zygote_start import StartedZygote, start_zygote
from kernel.launch.launcher import (
    ChildProcess,
    ExecLauncher,
    PidfdChild,
    PopenChild,
    ServiceSpecLike,
    describe_returncode,
    reap_within,
)
from kernel.launch.output import pump_lines
from kernel.launch.warm import WarmSpares

__all__ = ["ForkServerLauncher", "ForkedChild", "ZygoteInfo"]

ZYGOTE_NAME = "zygote"
_PR_SET_CHILD_SUBREAPER = 36
# a zygote that lived this long restarts at once after a crash; otherwise backoff doubles
_ZYGOTE_STABLE_AFTER = 10.0
_ZYGOTE_MIN_BACKOFF = 0.1
_ZYGOTE_MAX_BACKOFF = 5.0
# how long a service released without Go may take to exit before we kill it
_ABANDON_DEADLINE = 2.0
_OUTPUT_DRAIN = 1.0


class _ZygoteBroken(Exception):
    """The zygote cannot serve this request; the caller falls back to exec."""


@attrs.frozen
class ZygoteInfo:
    """The running zygote as the zygote reported itself in ``Ready``."""

    pid: int
    preloaded: tuple[str, ...]
    failed: tuple[str, ...]
    import_ms: float
    fork: str  # "sibling" or "double": see the zygote's docstring


class ForkedChild(PidfdChild):
    """A service forked by the zygote and reparented to us: pidfd-watched, reaped by ``wait``.

    Same contract as ``PopenChild``: several tasks may ``await wait()``; signals are sent through
    the pidfd (never to a recycled pid) and ignored once the child is reaped.
    """

    launch = "fork"

    def __init__(
        self,
        pid: int,
        pidfd: int,
        stdout: trio.abc.ReceiveStream | None,
        stderr: trio.abc.ReceiveStream | None,
    ) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self._pidfd: int | None = pidfd
        self._returncode: int | None = None
        self._watching = False
        self._exited = trio.Event()

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _reap(self) -> int:
        _, status = os.waitpid(self.pid, 0)  # a zombie by now: this only reaps
        self._returncode = os.waitstatus_to_exitcode(status)
        return self._returncode

    def send_signal(self, sig: int) -> None:
        if self._returncode is not None or self._pidfd is None:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, sig)


@attrs.define
class _Zygote:
    proc: PopenChild
    sock: socket.socket
    info: ZygoteInfo


class ForkServerLauncher:
    """Fork services from a preloaded zygote; exec while there is none. See the module docstring.

    ``preload``: the service modules the zygote imports up front (the stack is always preloaded).
    ``prestarted``: a zygote already started with the same ``preload`` (``start_zygote``, called
    before the node's own imports so that both import at once); adopted as the first zygote.
    ``spares``: keep a warm spare of each service spawned (``kernel.launch.warm``; a spec with
    ``spare = false`` gets none).
    """

    def __init__(
        self,
        *,
        preload: Iterable[str] = (),
        python: str = sys.executable,
        log: Callable[..., None] | None = None,
        output: Callable[[str, bytes], None] | None = None,
        ready_timeout: float = 30.0,
        request_timeout: float = 5.0,
        prestarted: StartedZygote | None = None,
        spares: bool = False,
    ) -> None:
        if log is None or output is None:
            from kernel import logs  # late: keeps kernel.supervisor importable on its own

            log = log if log is not None else logs.log
            output = output if output is not None else logs.reemit
        self._preload = tuple(dict.fromkeys(preload))
        self._prestarted = prestarted
        self._python = python
        self._log = log
        self._output = output
        self._ready_timeout = ready_timeout
        self._request_timeout = request_timeout
        self._exec = ExecLauncher(python=python)
        self._zygote: _Zygote | None = None
        self._zygote_changed = trio.Event()
        self._lock = trio.Lock()
        self._tracked: dict[int, ChildProcess] = {}  # pid -> child we handed out (or zygote)
        self._inflight = 0
        self._scan_pending = False
        self._spares = WarmSpares(self._prepare_spare, self._log) if spares else None

    # ---- public -----------------------------------------------------------------------------

    @property
    def spares(self) -> WarmSpares | None:
        """The warm spares (None when they are off)."""
        return self._spares

    @property
    def zygote(self) -> ZygoteInfo | None:
        """The ready zygote, or None while services are spawned by exec."""
        return self._zygote.info if self._zygote is not None else None

    async def wait_zygote(self, *, not_pid: int | None = None) -> ZygoteInfo:
        """Wait until a zygote (other than ``not_pid``) is ready. For tests and benches."""
        while True:
            info = self.zygote
            if info is not None and info.pid != not_pid:
                return info
            await self._zygote_changed.wait()

    async def spawn(self, spec: ServiceSpecLike, env: Mapping[str, str]) -> Any:
        """Start the service: its warm spare if one is ready, else forked by the zygote if one
        is ready, else exec'd. With spares on, another spare is prepared behind it.

        Raises ``OSError`` only if the exec fallback cannot start it either.
        """
        if self._spares is not None:
            spare = self._spares.take(spec, env)
            self._spares.want(spec, env)
            if spare is not None:
                spare.launch = "spare"  # type: ignore[attr-defined]  # tagged for the log line
                return spare
        zygote = self._zygote
        if zygote is not None:
            try:
                return await self._fork(zygote, spec, env)
            except _ZygoteBroken as exc:
                self._log("zygote_unusable", level="warning", service=spec.name, reason=str(exc))
                self._kill_zygote(zygote)
        child = await self._exec.spawn(spec, env)
        child.launch = "exec"  # type: ignore[attr-defined]  # PopenChild: tagged for the log line
        self._tracked[child.pid] = child
        return child

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a zygote running until cancelled. ``started()`` once the first one is ready (or
        has failed: spawns use exec meanwhile)."""
        _set_subreaper(True)
        try:
            with trio.open_signal_receiver(signal.SIGCHLD) as sigchld:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reap_on_sigchld, sigchld)
                    if self._spares is not None:
                        nursery.start_soon(self._spares.run)
                    await self._keep_zygote(task_status)
        finally:
            _set_subreaper(False)

    # ---- the zygote's lifetime --------------------------------------------------------------

    async def _keep_zygote(self, task_status: trio.TaskStatus[None]) -> None:
        backoff = 0.0
        while True:
            started_at = trio.current_time()
            await self._zygote_lifetime(task_status)
            task_status = trio.TASK_STATUS_IGNORED
            if trio.current_time() - started_at >= _ZYGOTE_STABLE_AFTER:
                backoff = 0.0
            else:
                backoff = min(max(2 * backoff, _ZYGOTE_MIN_BACKOFF), _ZYGOTE_MAX_BACKOFF)
            await trio.sleep(backoff)

    async def _zygote_lifetime(self, task_status: trio.TaskStatus[None]) -> None:
        """Start one zygote, serve with it until it exits, clean up. Never raises OSError."""
        try:
            proc, sock = self._start_zygote()
        except OSError as exc:
            self._log("zygote_failed", level="error", service=ZYGOTE_NAME, reason=str(exc))
            task_status.started()
            return
        t0 = time.monotonic()
        zygote: _Zygote | None = None
        try:
            async with trio.open_nursery() as nursery:
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        nursery.start_soon(self._pump, stream)
                zygote = await self._await_ready(proc, sock)
                if zygote is not None:
                    self._set_zygote(zygote)
                    self._log(
                        "zygote_ready",
                        service=ZYGOTE_NAME,
                        pid=proc.pid,
                        import_ms=zygote.info.import_ms,
                        start_ms=round((time.monotonic() - t0) * 1000, 3),
                        preload_failed=list(zygote.info.failed),
                    )
                else:
                    proc.kill()
                task_status.started()
                rc = await proc.wait()
                self._set_zygote(None)
                self._log(
                    "zygote_exited",
                    level="warning" if zygote is not None else "error",
                    service=ZYGOTE_NAME,
                    pid=proc.pid,
                    reason=describe_returncode(rc),
                )
                nursery.cancel_scope.deadline = trio.current_time() + _OUTPUT_DRAIN
        finally:
            self._set_zygote(None)
            with trio.CancelScope(shield=True):
                sock.close()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                await proc.aclose()

    def _start_zygote(self) -> tuple[PopenChild, socket.socket]:
        started, self._prestarted = self._prestarted, None
        if started is None or started.preload != self._preload:
            if started is not None:
                started.discard()
            started = start_zygote(self._preload, python=self._python)
        started.claim()
        proc = PopenChild(
            started.popen,
            trio.lowlevel.FdStream(started.stdout),
            trio.lowlevel.FdStream(started.stderr),
        )
        self._tracked[proc.pid] = proc
        return proc, started.sock

    async def _await_ready(self, proc: PopenChild, sock: socket.socket) -> _Zygote | None:
        msg: wire.Message | None = None
        with trio.move_on_after(self._ready_timeout):
            try:
                msg, fds = await _arecv(sock)
                _close_all(fds)
            except (OSError, wire.ProtocolError) as exc:
                self._log("zygote_failed", level="error", service=ZYGOTE_NAME, reason=str(exc))
                return None
        if not isinstance(msg, wire.Ready):
            reason = "no Ready in time" if msg is None and proc.returncode is None else "no Ready"
            self._log("zygote_failed", level="error", service=ZYGOTE_NAME, reason=reason)
            return None
        info = ZygoteInfo(msg.pid, msg.preloaded, msg.failed, msg.import_ms, msg.fork)
        return _Zygote(proc, sock, info)

    def _set_zygote(self, zygote: _Zygote | None) -> None:
        if zygote is not self._zygote:
            self._zygote = zygote
            self._zygote_changed.set()
            self._zygote_changed = trio.Event()

    def _kill_zygote(self, zygote: _Zygote) -> None:
        if self._zygote is zygote:
            self._set_zygote(None)
        zygote.proc.kill()

    async def _pump(self, stream: trio.abc.ReceiveStream) -> None:
        await pump_lines(stream, partial(self._output, ZYGOTE_NAME))

    # ---- one fork ---------------------------------------------------------------------------

    async def _fork(
        self, zygote: _Zygote, spec: ServiceSpecLike, env: Mapping[str, str]
    ) -> ForkedChild:
        async with self._lock:
            if zygote is not self._zygote:
                raise _ZygoteBroken("the zygote changed while waiting for the control socket")
            self._inflight += 1
            try:
                return await self._fork_locked(zygote, spec, env)
            finally:
                self._inflight -= 1
                if self._inflight == 0 and self._scan_pending:
                    self._reap_strays()

    async def _fork_locked(
        self, zygote: _Zygote, spec: ServiceSpecLike, env: Mapping[str, str]
    ) -> ForkedChild:
        child, _ = await self._request(zygote, spec, env, warm=False)
        try:
            with trio.fail_after(self._request_timeout):
                await _asend(zygote.sock, wire.Go(pid=child.pid, go=True))
        except (OSError, trio.TooSlowError) as exc:
            # the service never got Go: it exits by itself (EOF on its pipe); reap it, fall back
            await reap_within(child, _ABANDON_DEADLINE)
            raise _ZygoteBroken(f"Go not delivered: {exc!r}") from None
        return child

    async def _prepare_spare(
        self, spec: ServiceSpecLike, env: Mapping[str, str]
    ) -> tuple[ForkedChild, socket.socket] | None:
        """A warm spare of ``spec`` (``kernel.launch.warm``); None without a sibling-forking
        zygote (a spare forked by the intermediate would not be our child until it ran)."""
        zygote = self._zygote
        if zygote is None or zygote.info.fork != "sibling":
            return None
        async with self._lock:
            if zygote is not self._zygote:
                return None
            self._inflight += 1
            try:
                child, fds = await self._request(zygote, spec, env, warm=True)
            except _ZygoteBroken as exc:
                self._log("spare_failed", level="warning", service=spec.name, reason=str(exc))
                return None
            finally:
                self._inflight -= 1
                if self._inflight == 0 and self._scan_pending:
                    self._reap_strays()
        if len(fds) != 1:  # not what the protocol says: the spare can never be told to go
            _close_all(fds)
            await reap_within(child, 0)
            return None
        go = socket.socket(fileno=fds[0])
        go.setblocking(False)
        return child, go

    async def _request(
        self, zygote: _Zygote, spec: ServiceSpecLike, env: Mapping[str, str], *, warm: bool
    ) -> tuple[ForkedChild, list[int]]:
        """Ask for a fork; the child (pidfd-watched, tracked) and the fds ``Spawned`` carried."""
        listen = childenv.decode_fds(env)
        request = wire.Spawn(
            name=spec.name,
            module=spec.module,
            env=self._exec.environment(spec, env),
            listen_fds=len(listen),
            warm=warm,
        )
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            with trio.fail_after(self._request_timeout):
                await _asend(zygote.sock, request, [out_w, err_w, *listen])
                _close_all([out_w, err_w])
                out_w = err_w = -1
                reply, fds = await _arecv(zygote.sock)
        except (OSError, wire.ProtocolError, trio.TooSlowError) as exc:
            _close_all([out_r, err_r, out_w, err_w])
            raise _ZygoteBroken(f"spawn request failed: {exc!r}") from None
        if not isinstance(reply, wire.Spawned):
            _close_all([out_r, err_r, *fds])
            what = reply.error if isinstance(reply, wire.SpawnFailed) else repr(reply)
            raise _ZygoteBroken(what)
        try:
            pidfd = os.pidfd_open(reply.pid)
        except OSError as exc:  # cannot happen for our own unreaped child; be safe anyway
            _close_all([out_r, err_r, *fds])
            raise _ZygoteBroken(f"pidfd_open({reply.pid}): {exc.strerror}") from None
        child = ForkedChild(
            reply.pid, pidfd, trio.lowlevel.FdStream(out_r), trio.lowlevel.FdStream(err_r)
        )
        self._tracked[child.pid] = child
        if not warm:
            _close_all(fds)
            fds = []
        return child, fds

    # ---- strays -----------------------------------------------------------------------------

    async def _reap_on_sigchld(self, sigchld: AsyncIterator[int]) -> None:
        async for _ in sigchld:
            self._reap_strays()

    def _reap_strays(self) -> None:
        """Reap exited children we did not hand out (never while a fork is in flight: the new
        service is our child before we know its pid)."""
        if self._inflight:
            self._scan_pending = True
            return
        self._scan_pending = False
        for pid, child in list(self._tracked.items()):
            if child.returncode is not None:
                del self._tracked[pid]
        for pid in _children():
            if pid in self._tracked or not _is_zombie(pid):
                continue
            try:
                _, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            self._log(
                "stray_reaped",
                service=ZYGOTE_NAME,
                pid=pid,
                reason=describe_returncode(os.waitstatus_to_exitcode(status)),
            )


# ---- helpers ----------------------------------------------------------------------------------


async def _asend(sock: socket.socket, msg: wire.Message, fds: list[int] | None = None) -> None:
    while True:
        try:
            wire.send(sock, msg, fds or ())
            return
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


async def _arecv(sock: socket.socket) -> tuple[wire.Message, list[int]]:
    """One message; ``OSError`` (EPIPE-like) when the zygote has gone away."""
    while True:
        try:
            msg, fds = wire.recv(sock)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            continue
        if msg is None:
            raise BrokenPipeError("the zygote closed its control socket")
        return msg, fds


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _children() -> list[int]:
    """Our direct children, from /proc (every thread's list: children belong to a thread)."""
    pids: list[int] = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return pids


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _set_subreaper(on: bool) -> None:
    """Orphaned descendants (the zygote's forks) are reparented to us, not to init."""
    if not sys.platform.startswith("linux"):
        return
    if prctl()(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(err)}")
