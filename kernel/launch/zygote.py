"""The zygote: a preloaded interpreter that forks services on the supervisor's request.

Run as ``python -m kernel.launch.zygote`` by ``ForkServerLauncher`` (never by hand). It imports
the stack and the profile's service modules once, then serves ``Spawn`` requests on the control
socket (see ``_zygote_wire`` for the exchange). A service then starts in a few milliseconds instead
of paying for an interpreter start and its imports (~150 ms here).

What the zygote guarantees before any fork:

* no zmq context, no thread, no socket but the control socket (imports only: trio, pyzmq and the
  services create their runtime state in ``main``, which runs only in the child);
* ``gc.freeze()`` after the imports, so the children's collector never writes to the preloaded
  objects and their pages stay shared with the zygote (copy-on-write never triggers for them);
* PDEATHSIG armed for its own parent, the supervisor: the zygote never outlives it.

How a service is forked, so that the *supervisor* is the service's parent:

* ``sibling_fork`` (``_sibling_fork``: ``clone3`` with ``CLONE_PARENT``): one fork whose child's
  parent is the zygote's parent, the supervisor. ~1 ms.
* fallback where the kernel refuses that (or ``RON_ZYGOTE_FORK=double``): fork an intermediate
  that forks the service and exits; the supervisor is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``, set by the launcher), so it adopts the orphaned service; the zygote
  reaps the intermediate first, which guarantees the adoption is done. ~8 ms (the intermediate's
  address space is torn down before the service may run).
* with ``sibling_fork``, the fork is usually done already: a spare (``_zygote_spare``) forked
  after the previous request is handed this one, which takes the fork off the respawn path.

Either way the zygote replies ``Spawned{pid}``, the supervisor opens a pidfd on its new child and
answers ``Go``, and only then does the zygote release the service (one byte on a private pipe,
or on a spare's socket).
The service is therefore never running unwatched: if the zygote or the supervisor dies before
``Go``, the pipe reads EOF and the service exits (70) before running any service code.

The supervisor is the real parent, so it reaps the service itself and gets its real status
(``exit 3``, ``signal SIGKILL``), and the zygote's death does not touch running services. The
service arms PDEATHSIG only once released (PDEATHSIG fires whenever the parent changes, so arming
it under an intermediate would kill it at once) and ``pdeathsig.arm`` then checks that its parent
is the supervisor named in ``RON_PARENT_PID``, exiting if the supervisor is already gone.

What the service gets reset to look like a fresh ``python -m MODULE`` (``_Job.prepare``): a new
session; stdout/stderr on the supervisor's pipes; every other descriptor closed except the
listening sockets it was passed (``RON_LISTEN_FDS`` names their numbers in this process); the
exact environment the exec path would give it; missing ``PYTHONPATH`` entries on ``sys.path``;
the zygote's start-up signal dispositions and mask (anything an import changed is undone); fresh
``random`` state (also reseeded by ``os.fork``); no ``logging`` handlers. Not reset: the string
hash seed (fixed at interpreter start, so shared by the zygote's children).
"""

from __future__ import annotations

import builtins
import contextlib
import gc
import importlib
import importlib.util
import os
import signal
import socket
import sys
import time
import types
from collections.abc import Iterable

from kernel import childenv, procname
from kernel.launch import _sibling_fork
from kernel.launch import _zygote_wire as wire
from kernel.launch._zygote_spare import Spare

__all__ = ["FORK_MODE_ENV", "ORPHAN_EXIT", "STACK", "main"]

# "double" forces the double fork (tests); anything else: sibling fork where available
FORK_MODE_ENV = childenv.ZYGOTE_FORK
# What every service imports anyway; preloaded even when the profile names no module.
STACK = (
    "trio",
    "zmq",
    "msgpack",
    "attrs",
    "cattrs",
    "prometheus_client",
    "kernel.service",
    "ipc.commands",
)
# a service released without Go (zygote or supervisor gone): same code as pdeathsig's orphan exit
ORPHAN_EXIT = 70

# the interpreter's own start-up state, before any import could change it
_BASELINE_SIGNALS = {
    sig: signal.getsignal(sig)
    for sig in signal.valid_signals()
    if sig not in (signal.SIGKILL, signal.SIGSTOP)
}
_BASELINE_MASK = signal.pthread_sigmask(signal.SIG_BLOCK, [])


class _Job:
    """What a freshly forked service runs (only ever in the service process).

    ``prepare`` does all of the service's set-up while the supervisor is still opening its pidfd
    and answering ``Go`` (the two overlap on two cores); ``wait_for_go`` then gates the service
    code. Only PDEATHSIG waits for ``Go``: under the double fork the parent is still the
    intermediate until then, and PDEATHSIG follows the parent.
    """

    def __init__(self, req: wire.Spawn, out_fd: int, err_fd: int, listen: list[int], go: int):
        self.req = req
        self.out_fd, self.err_fd, self.listen, self.go = out_fd, err_fd, listen, go
        self.env = dict(req.env)

    def prepare(self) -> None:
        """Become the service (as a fresh ``python -m`` would look), short of running it."""
        _close_all_but({0, 1, 2, self.out_fd, self.err_fd, self.go, *self.listen})
        os.setsid()
        for fd, target in ((self.out_fd, 1), (self.err_fd, 2)):
            os.dup2(fd, target)
            os.close(fd)
        for fd in self.listen:
            os.set_inheritable(fd, True)
        if self.listen:
            self.env[childenv.LISTEN_FDS] = childenv.encode_fds(self.listen)
        if self.req.warm:  # the harness waits on it (kernel.launch.warm) instead of Go here
            self.env[childenv.WARM_GO] = str(self.go)
        _replace_environ(self.env)
        _extend_sys_path(self.env.get("PYTHONPATH", ""))
        _reset_signals()
        _reset_logging()
        import random

        random.seed()

    def wait_for_go(self) -> None:
        """Block until the supervisor watches us; exit (70) without running if it never will.

        A warm spare does not wait here: it is the supervisor's child already (sibling fork),
        and its harness waits for ``g`` on the same fd once it has prepared."""
        if self.req.warm:
            return
        if os.read(self.go, 1) != b"g":
            os._exit(ORPHAN_EXIT)
        os.close(self.go)

    def run(self) -> None:
        """Run the service as ``python -m`` would. Raises what it raises."""
        from kernel.launch import pdeathsig

        pdeathsig.arm(int(self.env[childenv.PARENT_PID]))
        _run_as_main(self.req.module)


# ``python -m`` code of each preloaded service module, compiled once in the zygote (a service's
# own module object stays as preloaded; this is the code its ``__main__`` runs)
_MAIN_CODE: dict[str, tuple[importlib.machinery.ModuleSpec, types.CodeType]] = {}


def _main_code(module: str) -> tuple[importlib.machinery.ModuleSpec, types.CodeType] | None:
    """What ``python -m module`` executes: (spec, code); None if there is no such module."""
    cached = _MAIN_CODE.get(module)
    if cached is not None:
        return cached
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(f"{module}.__main__")  # -m package
    if spec is None or spec.loader is None or spec.origin is None:
        return None
    code = spec.loader.get_code(spec.name)  # type: ignore[attr-defined]  # a source loader has it
    if code is None:
        return None
    return spec, code


def _run_as_main(module: str) -> None:
    """What ``python -m module`` does, in a fresh ``__main__`` (the module object the zygote
    preloaded stays as it is, as after ``import module`` in an exec'd service)."""
    found = _main_code(module)
    if found is None:
        print(f"{sys.executable}: No module named {module}", file=sys.stderr)
        raise SystemExit(1)
    spec, code = found
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=spec.origin,
        __cached__=spec.cached,
        __loader__=spec.loader,
        __package__=spec.parent,
        __spec__=spec,
        __builtins__=builtins,
    )
    sys.modules["__main__"] = main
    sys.argv[:] = [spec.origin or spec.name]
    exec(code, main.__dict__)


def _close_all_but(keep: Iterable[int]) -> None:
    low = 0
    for fd in sorted(set(keep)):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _extend_sys_path(pythonpath: str) -> None:
    missing = [p for p in pythonpath.split(os.pathsep) if p and p not in sys.path]
    sys.path[1:1] = missing


def _replace_environ(env: dict[str, str]) -> None:
    """``os.environ = env``, touching only what differs: each libc ``setenv``/``unsetenv`` scans
    the whole environment, so clearing and refilling it costs ~1 ms per spawn; a service's env is
    mostly the zygote's own."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _changed_signals() -> list[tuple[int, object]]:
    """The signals whose handler differs from the interpreter's start-up one (imports may set
    some); computed once in the zygote, after its imports, since every fork inherits the same."""
    return [
        (sig, handler)
        for sig, handler in _BASELINE_SIGNALS.items()
        if handler is not None and signal.getsignal(sig) is not handler
    ]


_CHANGED_SIGNALS: list[tuple[int, object]] | None = None


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    changed = _CHANGED_SIGNALS if _CHANGED_SIGNALS is not None else _changed_signals()
    for sig, handler in changed:
        signal.signal(sig, handler)  # type: ignore[arg-type]  # a handler signal.getsignal gave us
    signal.pthread_sigmask(signal.SIG_SETMASK, _BASELINE_MASK)


def _reset_logging() -> None:
    logging = sys.modules.get("logging")
    if logging is not None:
        for handler in list(logging.root.handlers):
            logging.root.removeHandler(handler)


def preload(modules: Iterable[str], *, mains: bool = False) -> tuple[list[str], list[str]]:
    """Import ``modules``; returns (imported, failed as 'module: error'). Never raises.

    ``mains``: for a package, import its ``__main__`` too (what ``python -m package`` runs, and
    where a service package's real imports usually are). Only for service modules, whose
    ``__main__`` is guarded by ``if __name__ == "__main__"``; a library's may do anything (trio's
    starts a REPL).
    """
    ok: list[str] = []
    failed: list[str] = []
    for name in dict.fromkeys(modules):
        try:
            module = importlib.import_module(name)
            if mains and getattr(module, "__path__", None) is not None:
                main_name = f"{name}.__main__"
                if importlib.util.find_spec(main_name) is not None:
                    importlib.import_module(main_name)
            if mains and (found := _main_code(name)) is not None:
                _MAIN_CODE[name] = found
        except Exception as exc:  # a broken service must not stop the others from preloading
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            ok.append(name)
    return ok, failed


def _intermediate(pid_r: int, pid_w: int) -> None:
    """In the intermediate: fork the service, write its pid, ``_exit``. Returns in the service."""
    try:
        os.close(pid_r)
        pid = os.fork()
    except BaseException:
        os._exit(1)  # the zygote reads EOF: SpawnFailed
    if pid == 0:
        os.close(pid_w)
        return
    try:
        os.write(pid_w, str(pid).encode())
    finally:
        os._exit(0)


def _double_fork() -> int | None:
    """Fork twice; the supervisor (a subreaper) adopts the grandchild. 0 in the service; its pid
    here (once the intermediate is reaped, i.e. the reparenting is done); None if it failed."""
    pid_r, pid_w = os.pipe()
    try:
        middle = os.fork()
    except OSError:
        os.close(pid_r)
        os.close(pid_w)
        raise
    if middle == 0:  # the intermediate: fork the service, say its pid, vanish
        _intermediate(pid_r, pid_w)  # returns only in the service
        return 0
    os.close(pid_w)
    chunks = []
    while chunk := os.read(pid_r, 32):
        chunks.append(chunk)
    os.close(pid_r)
    os.waitpid(middle, 0)
    raw = b"".join(chunks)
    return int(raw) if raw else None


def _fork_service(req: wire.Spawn, fds: list[int]) -> tuple[_Job | None, int | None, int | None]:
    """In the service: (job, None, None). In the zygote: (None, pid or None if failed, go_w)."""
    out_fd, err_fd, listen = fds[0], fds[1], fds[2 : 2 + req.listen_fds]
    go_r, go_w = _go_channel(req.warm)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        try:
            pid = _sibling_fork.sibling_fork() if _use_sibling_fork() else _double_fork()
        except OSError:
            if _sibling_fork.available():
                raise
            pid = _double_fork()  # the kernel refused clone3 (now and from now on)
    except OSError:
        os.close(go_r)
        os.close(go_w)
        raise
    if pid == 0:
        os.close(go_w)
        return _Job(req, out_fd, err_fd, listen, go_r), None, None
    os.close(go_r)
    return None, pid, go_w


def _go_channel(warm: bool) -> tuple[int, int]:
    """(the service's end, ours): a pipe for Go; a SEQPACKET pair for a warm spare, whose end
    is handed to the supervisor and carries ``w`` back as well as ``g`` forward."""
    if not warm:
        return os.pipe()
    theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return theirs.detach(), ours.detach()


_SHARED_CONFIG: str | None = None


def _share_config(env: dict[str, str]) -> None:
    """Parse the node config of the last request here, once per config, so that every later
    fork shares it (``kernel.config.config_from_json``), the settings' structuring code too;
    then freeze it with the preloaded objects. Runs between requests (never on a spawn's path);
    a config that does not parse is left to the service to report."""
    global _SHARED_CONFIG
    raw = env.get(childenv.CONFIG)
    if raw is None or raw == _SHARED_CONFIG:
        return
    _SHARED_CONFIG = raw
    from kernel.config import ConfigError, check_services, config_from_json

    with contextlib.suppress(ConfigError, ValueError, ImportError):
        check_services(config_from_json(raw, origin=childenv.CONFIG))
    gc.collect()
    gc.freeze()


def _use_sibling_fork() -> bool:
    return os.environ.get(FORK_MODE_ENV, "auto") != "double" and _sibling_fork.available()


def serve(sock: socket.socket) -> _Job | None:
    """Serve spawn requests until EOF. Returns a job only in a forked service process.

    With ``sibling_fork``, a spare (``_zygote_spare``) is kept forked ahead of each request.
    """
    spare: Spare | None = None
    last_env: dict[str, str] = {}
    while True:
        _share_config(last_env)
        if spare is None and _use_sibling_fork():
            spare, assigned = Spare.fork(sock, ORPHAN_EXIT)
            if assigned is not None:  # in the spare, handed its request
                req, fds, go = assigned
                return _Job(req, fds[0], fds[1], fds[2:], go)
        msg, fds = wire.recv(sock)
        if msg is None:
            if spare is not None:
                spare.close()
            return None
        if not isinstance(msg, wire.Spawn) or len(fds) != 2 + msg.listen_fds:
            for fd in fds:
                os.close(fd)
            wire.send(sock, wire.SpawnFailed(error=f"unexpected request {type(msg).__name__}"))
            continue
        last_env = msg.env
        pid: int | None = None
        go_w: int | None = None
        if spare is not None:
            go_w = spare.hand_over(msg, fds)
            pid = spare.pid if go_w is not None else None
            spare = None
        if go_w is None:
            try:
                job, pid, go_w = _fork_service(msg, fds)
            except OSError as exc:
                job, pid, go_w = None, None, None
                error = f"fork failed: {exc.strerror or exc}"
            else:
                error = "fork failed in the intermediate process"
            if job is not None:
                sock.close()
                return job
        for fd in fds:
            os.close(fd)
        if pid is None:
            if go_w is not None:
                os.close(go_w)
            wire.send(sock, wire.SpawnFailed(error=error))
            continue
        assert go_w is not None
        if msg.warm:  # the supervisor holds the spare's go socket from now on
            try:
                wire.send(sock, wire.Spawned(pid=pid), [go_w])
            finally:
                os.close(go_w)
            continue
        try:
            wire.send(sock, wire.Spawned(pid=pid))
            reply, extra = wire.recv(sock)
            for fd in extra:
                os.close(fd)
            if isinstance(reply, wire.Go) and reply.pid == pid and reply.go:
                with contextlib.suppress(OSError):  # it died already: the supervisor sees that
                    os.write(go_w, b"g")
            elif reply is None:
                return None  # the supervisor is gone; closing go_w ends the service
        finally:
            os.close(go_w)


def main() -> int:
    from kernel.launch import pdeathsig

    pdeathsig.arm_from_env()
    procname.set_name(procname.ZYGOTE)
    try:
        ctl = int(os.environ.pop(childenv.ZYGOTE_FD))
        modules = childenv.decode_list(os.environ.pop(childenv.ZYGOTE_PRELOAD, ""))
    except (KeyError, ValueError):
        print("the zygote is started by the supervisor (spawn = forkserver)", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=ctl)
    _use_sibling_fork()  # decided now, in the only thread, before any import
    t0 = time.perf_counter()
    ok, failed = preload(STACK)
    ok_services, failed_services = preload(modules, mains=True)
    ok += ok_services
    failed += failed_services
    try:
        from kernel.launch.warmup import warm_up  # after the preload: the same imports

        warm_up()
    except Exception as exc:  # only an optimisation: the services set these up themselves
        failed.append(f"warm-up: {type(exc).__name__}: {exc}")
    global _CHANGED_SIGNALS
    _CHANGED_SIGNALS = _changed_signals()
    gc.collect()
    gc.freeze()  # children never write to the preloaded objects: their pages stay shared
    import_ms = round((time.perf_counter() - t0) * 1000, 3)
    wire.send(
        sock,
        wire.Ready(
            pid=os.getpid(),
            preloaded=tuple(ok),
            failed=tuple(failed),
            import_ms=import_ms,
            fork="sibling" if _use_sibling_fork() else "double",
        ),
    )
    job = serve(sock)
    if job is None:
        return 0
    job.prepare()
    job.wait_for_go()
    job.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
