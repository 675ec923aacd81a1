"""Warm spares, the supervisor's side: per service, a process prepared ahead of its next crash.

Why: after a crash, a forked service still spends 20-90 ms of Python before it is back (reading
its settings, a zmq context, prometheus files, the trio loop, joining the bus, then its own
start: keys, stores, TLS contexts). A warm spare has done all of that while the node was idle;
the respawn is one byte on a socket, or, armed, not even that: the spare goes live by itself
the moment the kernel releases the dead instance's live lock (``kernel.launch.live_lock``),
5-15 ms before the supervisor can see the death.

How (``kernel.launch.warm_go`` is the spare's side; ``_zygote_wire`` the exchange):

* after each spawn of a service, ``want(spec, env)`` asks for a spare of it; one task forks
  spares through the zygote (``Spawn{warm: true}``), ``_SPARE_DELAY`` after the spawn (and
  not in the node's first ``_FIRST_DELAY``), so the live process starts first, and one at a
  time: the next is forked once the last has prepared, so at most one process's start competes
  with the live services for the CPU. The spare is the supervisor's child (sibling fork)
  with its own stdout/stderr pipes and the service's listening sockets; it prepares, says ``w``,
  and waits on its go socket.
* ``take(spec, env)`` at the next spawn of that service: if a spare was prepared with exactly this
  module and environment (a config reload changes the environment: the spare is stale), it is
  forgotten here and then sent ``g``: the returned child is the live instance from then on.
  Otherwise (none, stale, or dead) ``take`` returns None and the caller forks as before.
* a spare is never handed out twice: ``take`` removes it from the pool before sending ``g``, and
  the pool only ever holds spares that were never sent ``g``.
* ``arm(name, pid, after)``: the supervisor's loop says from when a crash of the live instance
  ``pid`` would be restarted at once; the pool arms the warm spare then (if ``pid`` holds the
  live lock). ``disarm(name, keep=...)`` before anything else decides (an operator's act, a
  hang, a decision other than "restart at once"): it says whether the spare already went live;
  ``keep``: ``take`` hands it out next, else it is stopped (TERM, then KILL) like a live one.
* spares prepare at idle CPU priority where the process may come back from it
  (``warm_go.prepare_idle``), so a restart storm's spares never slow the services.
* a spare that dies unused (a crash in its preparation, a kill) is reaped here, logged
  (``spare_exited``) and replaced after a backoff that doubles up to ``_MAX_BACKOFF``; a stale or
  unwanted one is closed (its go socket reads EOF: it exits 70 before acting) and reaped.
* when ``run`` ends (the node stops) every spare is closed and reaped, killed after
  ``_CLOSE_DEADLINE``; PDEATHSIG (armed in the spare before it prepares) covers a supervisor
  that dies without that.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import attrs
import trio

from kernel import childenv
from kernel.launch.launcher import (
    ChildProcess,
    ServiceSpecLike,
    describe_returncode,
    reap_within,
)
from kernel.launch.live_lock import UNKNOWN, LiveLock, lock_path
from kernel.launch.warm_go import normal_priority

__all__ = ["Prepare", "WarmSpares"]

# a spare is forked this long after the spawn that asked for it: the live process starts first
_SPARE_DELAY = 0.05
# and none before the pool has run this long: a node's start is its services', not their spares'
_FIRST_DELAY = 1.0
# spares prepare one at a time (CPU for the live services); the next waits at most this long
_WARM_WAIT = 10.0
_MIN_BACKOFF = 1.0
_MAX_BACKOFF = 60.0
_CLOSE_DEADLINE = 2.0
# an armed plan whose live instance does not hold its lock yet is looked at again this often
_ARM_RETRY = 0.02

# fork a warm spare of (spec, env): its child and the supervisor's end of its go socket; None
# when there is no zygote that can (the pool tries again later)
Prepared = tuple[ChildProcess, socket.socket]
Prepare = Callable[[ServiceSpecLike, Mapping[str, str]], Awaitable[Prepared | None]]


@attrs.define(eq=False)
class _Spare:
    name: str
    module: str
    env: dict[str, str]
    child: ChildProcess
    go: socket.socket
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    warm: trio.Event = attrs.field(factory=trio.Event)
    settled: trio.Event = attrs.field(factory=trio.Event)  # warm, taken, dropped or dead
    claimed: bool = False  # went live by itself (live lock): take() must hand it out


@attrs.define(eq=False)
class _Plan:
    """Arm the spare of a service once ``at`` (trio time) has passed, for live instance ``pid``."""

    pid: int
    at: float


class WarmSpares:
    """The pool of warm spares, one per service at most. ``run`` it in a nursery for the
    launcher's lifetime; ``want`` and ``take`` are synchronous (no await between deciding and
    acting, so a spare cannot change hands half-way)."""

    def __init__(self, prepare: Prepare, log: Callable[..., None]) -> None:
        self._prepare = prepare
        self._log = log
        self._spares: dict[str, _Spare] = {}
        self._wanted: dict[str, tuple[ServiceSpecLike, dict[str, str]]] = {}
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._locks: dict[str, LiveLock] = {}
        self._plans: dict[str, _Plan] = {}
        self._arm_wake = trio.Event()

    # ---- used by the launcher ---------------------------------------------------------------

    def want(self, spec: ServiceSpecLike, env: Mapping[str, str]) -> None:
        """Keep a spare of ``spec`` prepared with ``env`` (replacing one prepared otherwise)."""
        if not getattr(spec, "spare", True):
            self.forget(spec.name)
            return
        if spec.name not in self._locks and childenv.RUNTIME_DIR in env:
            # before the first live instance exists: it takes the lock as it goes live
            path = lock_path(Path(env[childenv.RUNTIME_DIR]), spec.name)
            self._locks[spec.name] = LiveLock.create(path)
        wanted = self._wanted.get(spec.name)
        if wanted is not None and wanted[1] != dict(env):
            self.disarm(spec.name, keep=False)  # a spare prepared with the old env is stale
        self._wanted[spec.name] = (spec, dict(env))
        self._wake.set()

    def forget(self, name: str) -> None:
        """No spare of ``name`` any more (closed and reaped in the background)."""
        self.disarm(name, keep=False)
        self._wanted.pop(name, None)
        spare = self._spares.pop(name, None)
        if spare is not None:
            self._discard(spare)

    def take(self, spec: ServiceSpecLike, env: Mapping[str, str]) -> ChildProcess | None:
        """The spare of ``spec`` told to go live, if one was prepared with exactly ``env``."""
        self.disarm(spec.name, keep=True)
        spare = self._spares.pop(spec.name, None)
        if spare is None:
            return None
        if not spare.claimed and (spare.module != spec.module or spare.env != dict(env)):
            self._log("spare_stale", service=spec.name, pid=spare.child.pid)
            self._discard(spare)
            return None
        try:
            spare.go.send(b"g")
        except OSError:  # it died (its end is closed): the caller forks as before
            self._discard(spare)
            return None
        if not spare.warm.is_set():  # still preparing, maybe at idle priority: not any more
            normal_priority(spare.child.pid)
        spare.scope.cancel()  # its watcher lets go of it; the supervisor owns the child now
        self._backoff.pop(spec.name, None)
        return spare.child

    def arm(self, name: str, pid: int, after: float) -> None:
        """From ``after`` s on, let the spare of ``name`` go live by itself when ``pid`` (the
        live instance) dies: the caller's policy restarts a crash at once from then on."""
        if name in self._locks:
            self._plans[name] = _Plan(pid, trio.current_time() + max(0.0, after))
            self._arm_wake.set()

    def disarm(self, name: str, *, keep: bool) -> bool:
        """No spare of ``name`` goes live by itself from now on. True if one already had (the
        live instance died): with ``keep`` the next ``take`` hands it out; without, it is
        stopped like a live instance (TERM, then KILL) and forgotten."""
        self._plans.pop(name, None)
        lock = self._locks.get(name)
        if lock is None:
            return False
        claimed = lock.disarm()
        spare = self._spares.get(name)
        if spare is None or claimed not in (spare.child.pid, UNKNOWN):
            return False
        if keep:
            spare.claimed = True
            return True
        del self._spares[name]
        spare.scope.cancel()
        self._log("spare_retired", level="warning", service=name, pid=spare.child.pid)
        if self._nursery is not None:
            self._nursery.start_soon(self._retire, spare)
        return True

    def is_warm(self, name: str) -> bool:
        """Whether a spare of ``name`` is prepared and waiting (for tests and benches)."""
        spare = self._spares.get(name)
        return spare is not None and spare.warm.is_set()

    def pid_of(self, name: str) -> int | None:
        spare = self._spares.get(name)
        return spare.child.pid if spare is not None else None

    # ---- the pool's task --------------------------------------------------------------------

    async def run(self) -> None:
        """Prepare the wanted spares until cancelled; then close and reap every one."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._arming)
                await self._keep()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                for spare in list(self._spares.values()):
                    spare.scope.cancel()
                    await self._reap(spare)
                self._spares.clear()

    async def _keep(self) -> None:
        await trio.sleep(_FIRST_DELAY)
        while True:
            missing = [n for n in self._wanted if n not in self._spares]
            now = trio.current_time()
            due = [n for n in missing if self._retry_at.get(n, 0.0) <= now]
            if not due:
                self._wake = trio.Event()
                later = [self._retry_at[n] for n in missing if n in self._retry_at]
                with trio.move_on_at(min(later, default=float("inf"))):
                    await self._wake.wait()
                continue
            await trio.sleep(_SPARE_DELAY)
            name = due[0]
            wanted = self._wanted.get(name)
            if wanted is None or name in self._spares:
                continue
            spec, env = wanted
            made = await self._prepare(spec, env)
            if made is None:
                self._retry_later(name)
                continue
            child, go = made
            if self._wanted.get(name) != (spec, env):  # changed or dropped meanwhile
                go.close()
                await reap_within(child, _CLOSE_DEADLINE)
                continue
            spare = _Spare(name, spec.module, env, child, go)
            self._spares[name] = spare
            assert self._nursery is not None
            self._nursery.start_soon(self._watch, spare)
            with trio.move_on_after(_WARM_WAIT):
                await spare.settled.wait()

    async def _arming(self) -> None:
        """Arm each planned spare once its time has come, it is warm, and the live instance
        holds the live lock (it takes it as it starts: until then, look again shortly)."""
        while True:
            now, later = trio.current_time(), []
            for name, plan in list(self._plans.items()):
                spare = self._spares.get(name)
                if spare is None or not spare.warm.is_set():
                    continue  # _watch wakes us when it is
                if plan.at > now:
                    later.append(plan.at)
                elif self._locks[name].arm(spare.child.pid, plan.pid):
                    del self._plans[name]
                else:
                    later.append(now + _ARM_RETRY)
            self._arm_wake = trio.Event()
            with trio.move_on_at(min(later, default=float("inf"))):
                await self._arm_wake.wait()

    def _retry_later(self, name: str) -> None:
        backoff = min(max(2 * self._backoff.get(name, 0.0), _MIN_BACKOFF), _MAX_BACKOFF)
        self._backoff[name] = backoff
        self._retry_at[name] = trio.current_time() + backoff

    async def _watch(self, spare: _Spare) -> None:
        """Read the spare's ``w``; on EOF (it died unused) reap it and schedule another.

        Owns the go socket: closes it when it ends, whether the spare was taken (cancelled by
        ``take``, which sent ``g`` first), discarded or dead."""
        try:
            with spare.scope:
                while True:
                    await trio.lowlevel.wait_readable(spare.go)
                    try:
                        word = spare.go.recv(1)
                    except BlockingIOError:
                        continue
                    except OSError:
                        word = b""
                    if word == b"w":
                        spare.warm.set()
                        spare.settled.set()
                        self._arm_wake.set()
                        continue
                    break  # EOF: it is gone, or going
                if self._spares.get(spare.name) is spare:
                    del self._spares[spare.name]
                    rc = await spare.child.wait()
                    await spare.child.aclose()
                    self._log(
                        "spare_exited",
                        level="warning",
                        service=spare.name,
                        pid=spare.child.pid,
                        reason=describe_returncode(rc),
                    )
                    self._retry_later(spare.name)
                    self._wake.set()
        finally:
            spare.settled.set()
            _close(spare.go)

    def _discard(self, spare: _Spare) -> None:
        spare.scope.cancel()  # the watcher closes the go socket: the spare exits unused
        if self._nursery is not None:
            self._nursery.start_soon(self._reap, spare)

    async def _retire(self, spare: _Spare) -> None:
        """A spare that went live by itself, not to be taken: stopped like a live instance."""
        _close(spare.go)
        spare.child.send_signal(signal.SIGTERM)
        await reap_within(spare.child, _CLOSE_DEADLINE)

    async def _reap(self, spare: _Spare) -> None:
        _close(spare.go)
        await reap_within(spare.child, _CLOSE_DEADLINE)


def _close(sock: socket.socket) -> None:
    """Close ``sock`` once (a task waiting on it is woken first); again is a no-op."""
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)
        sock.close()
