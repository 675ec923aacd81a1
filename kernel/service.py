"""The one entry point of every service process: ``run_service(main)``.

A service module ends with ``if __name__ == "__main__": run_service(main)``. The harness does what
every service must do the same way, so no service can forget it:

- arm PDEATHSIG first (the service dies with its supervisor, even on ``kill -9`` of the supervisor);
- read its identity and the node's effective config from the environment the supervisor set;
- JSON logs tagged with the service name; node-wide metrics in the runtime dir;
- join the bus, send ``Health`` at once when ``main`` says it is ready and then as a heartbeat
  (a hung process stops heartbeating, and the supervisor replaces it);
- stop cleanly on the bus's ``Shutdown`` or SIGTERM/SIGINT (cancellation of ``main``);
- serve the chaos fault hooks (``kernel.faults``: ``panic`` and ``slow`` on ``<name>.ctl``);
  services build their command servers with ``ctx.command_server`` so ``slow`` reaches them.

Warm spares (``kernel.launch.warm``): the fork server may start a service process before it is
needed. Its harness does everything above that does not make it the live instance (settings,
logs, metrics, the zmq context, the trio loop, joining the bus without publishing) and then waits
on its go socket; only then does it serve its control socket, heartbeat and run ``main``. A
service may take more of its start into the wait: ``run_service(main, warm=True)`` runs ``main``
at once, and ``main`` calls ``await ctx.live()`` before it binds, publishes, locks or writes
anything (everything before that line must be safe to throw away, and to run while the live
instance still runs). Started the ordinary way, ``ctx.live()`` returns at once.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from ipc import events, oap
from ipc.bus import Bus
from ipc.commands import CommandServer, Handler
from ipc.plain import JsonObject
from kernel import childenv, logs, procname
from kernel.admin_calls import Answer, with_admin_routes
from kernel.config import Config, ConfigError, ServiceSpec, config_from_json
from kernel.config.services import SettingsError, structure_settings
from kernel.exposes import exposes_of, provider
from kernel.faults import FaultHooks
from kernel.launch import pdeathsig
from kernel.launch.live_lock import LiveLock, lock_path
from kernel.launch.warm_go import GoSocket, hold_live_lock, prepare_idle
from kernel.metrics import Metrics

T = TypeVar("T")


@attrs.define
class ServiceContext:
    """What a service's ``main`` gets: who it is, the node's config, the bus, metrics."""

    name: str
    runtime_dir: Path
    data_dir: Path  # where the service keeps state: tmpfs under amnesia, disk otherwise
    config: Config
    spec: ServiceSpec
    bus: Bus
    metrics: Metrics
    faults: FaultHooks | None = None
    _ready: trio.Event = attrs.field(factory=trio.Event)
    _ok: bool = True
    _said: bool = False  # set_health published since the heartbeat's last turn
    _go_live: Callable[[], Awaitable[None]] | None = None  # set by the harness
    _live: trio.Event | None = None  # set once live (None: nobody asked yet)

    async def live(self) -> None:
        """Become the live instance (a warm spare waits here for its turn); idempotent.

        Before this returns, a service must not bind, publish, lock or write: it may be a
        spare that is thrown away, and the live instance may still be running."""
        if self._live is None:
            self._live = trio.Event()
            if self._go_live is not None:
                await self._go_live()
            self._live.set()
        await self._live.wait()

    @property
    def settings(self) -> JsonObject:
        """This service's ``[services.settings]`` table as plain data."""
        return dict(self.spec.settings)

    def settings_as(self, cls: type[T]) -> T:
        """This service's settings structured by its settings class (the one its package
        declares). The node checked them with the same rules before it started us, so a
        failure here means a node that skipped the check: logged as ``bad_settings``, exit 2."""
        try:
            return structure_settings(self.name, cls, self.spec.settings)
        except SettingsError as exc:
            logs.log("bad_settings", level="error", reason=str(exc))
            raise SystemExit(2) from None

    def listen_socket(self) -> socket.socket:
        """The listening socket the node bound for this service (spec ``listen``)."""
        fds = childenv.decode_fds(os.environ)
        if not fds:
            raise RuntimeError(f"{self.name} has no listening socket: set listen in its spec")
        return socket.socket(fileno=fds[0])

    def hello(self, features: tuple[str, ...]) -> oap.HelloResponse:
        """What this service answers to an OAP/1 HELLO: the node's frame and in-flight limits,
        its ``features``, over ``ipc``."""
        return oap.HelloResponse(
            max_frame=self.config.limits.max_frame,
            max_inflight=self.config.limits.cmd_inflight,
            features=features,
            transports=("ipc",),
        )

    def provider(self, role: str) -> str | None:
        """The name of the service that holds ``role`` in this node (``kernel.exposes``)."""
        return provider(self.config.services, role)

    def command_server(
        self,
        handler: Handler,
        *,
        admin: Mapping[str, Answer] | None = None,
        **kwargs: Any,  # Any: CommandServer's own keyword arguments, passed on
    ) -> CommandServer:
        """This service's command server, with the node's limits and the chaos ``slow`` hook.

        ``admin``: the answers to the admin routes the service declared (``kernel.admin_calls``),
        by template. Defaults: ``max_inflight`` = ``limits.cmd_inflight``, node metrics, handler
        errors logged; ``kwargs`` override them (and may pass ``service=`` for a second socket).
        """
        if admin:
            handler = with_admin_routes(handler, admin)
        if self.faults is not None:
            handler = self.faults.wrap(handler)
        kwargs.setdefault("max_inflight", self.config.limits.cmd_inflight)
        kwargs.setdefault("metrics", self.metrics)
        kwargs.setdefault(
            "on_error", lambda exc: logs.log("handler_error", level="error", reason=repr(exc))
        )
        service = kwargs.pop("service", self.name)
        return CommandServer(self.runtime_dir, service, handler, **kwargs)

    async def fault_delay(self) -> None:
        """Await in a request path that is not a command handler (e.g. HTTP): ``slow`` lands."""
        if self.faults is not None:
            await self.faults.delay()
        else:
            await trio.lowlevel.checkpoint()

    def fault_slowing(self) -> bool:
        """Whether a ``slow`` fault is active now: a request path that does not await
        ``fault_delay`` (it waits on nothing) must then take the one that does."""
        return self.faults is not None and self.faults.slowing()

    def ready(self) -> None:
        """Say the service is ready: Health{ok:true} goes out now (not at the heartbeat's next
        turn: a respawn is back as soon as it says so) and then with every heartbeat."""
        self.set_health(True)

    def set_health(self, ok: bool) -> None:
        """Report degraded (False) or healthy (True) from now on; published at once."""
        self._ok = ok
        self._ready.set()
        if self._live is not None and self._live.is_set():  # a spare publishes nothing
            self.bus.publish(events.Health(service=self.name, ok=ok))
            self._said = True


Main = Callable[[ServiceContext], Awaitable[None]]


def _spec_for(config: Config, name: str) -> ServiceSpec:
    for spec in config.services:
        if spec.name == name:
            return spec
    raise ConfigError(f"service {name!r} is not in the node's config")


def run_service(main: Main, *, warm: bool = False) -> None:
    """Run ``main`` as a supervised service process. Exits 0 on a clean stop, 2 on bad setup.

    ``warm``: ``main`` calls ``await ctx.live()`` itself, after the part of its start that a
    warm spare may do ahead of time (see the module docstring); otherwise the harness makes
    the process live before it calls ``main``."""
    pdeathsig.arm_from_env()
    go = GoSocket.take(os.environ)
    if go is not None:
        go.idle = prepare_idle()
    try:
        env = childenv.read_service_env(os.environ)
        name, runtime_dir, data_dir = env.name, env.runtime_dir, env.data_dir
        config = config_from_json(env.config_json, origin=childenv.CONFIG)
        spec = _spec_for(config, name)
    except (KeyError, ValueError, ConfigError) as exc:
        print(
            f"this is a RustyOnions service; start it through `ronctl run` ({exc})",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    # how ps/top tell services apart (forked ones above all); a spare is renamed when it goes live
    if go is None:
        procname.set_service_name(name)
    else:
        procname.set_spare_name(name)
    logs.configure(service=name, amnesia=config.amnesia.enabled, level=config.log.level)
    trio.run(_serve, main, warm, go, name, runtime_dir, data_dir, config, spec)


async def _serve(
    main: Main,
    warm: bool,
    go: GoSocket | None,
    name: str,
    runtime_dir: Path,
    data_dir: Path,
    config: Config,
    spec: ServiceSpec,
) -> None:
    declared = exposes_of(spec.module).metrics
    metrics = Metrics(runtime_dir / "metrics", amnesia=config.amnesia.enabled, declared=declared)
    async with Bus.connect(
        runtime_dir,
        topics=("kernel.shutdown",),
        capacity=config.bus.capacity,
        metrics=metrics,
    ) as bus:
        hooks = FaultHooks(name)
        ctx = ServiceContext(name, runtime_dir, data_dir, config, spec, bus, metrics, hooks)
        async with trio.open_nursery() as nursery:
            # with warm spares on, the live instance holds the service's live lock for its life
            lock = LiveLock.open(lock_path(runtime_dir, name))

            async def go_live() -> None:
                if go is not None:
                    await go.wait(lock)
                    procname.set_service_name(name)
                elif lock is not None:
                    await hold_live_lock(lock)
                nursery.start_soon(hooks.serve, runtime_dir)  # main need not wait for it
                nursery.start_soon(_heartbeat, ctx, config.supervisor.heartbeat_interval)
                nursery.start_soon(_stop_on_shutdown, ctx, nursery.cancel_scope)
                nursery.start_soon(_stop_on_signal, ctx, nursery.cancel_scope)
                logs.log("service_started", pid=os.getpid(), spare=go is not None)

            ctx._go_live = go_live
            if not warm:
                await ctx.live()
            await main(ctx)
            nursery.cancel_scope.cancel()  # main returned: the service is done
        logs.log("service_stopped")


async def _heartbeat(ctx: ServiceContext, interval: float) -> None:
    """Health at least every ``interval`` once ready (a turn that ``set_health`` just covered
    is skipped)."""
    await ctx._ready.wait()
    while True:
        if not ctx._said:
            ctx.bus.publish(events.Health(service=ctx.name, ok=ctx._ok))
        ctx._said = False
        await trio.sleep(interval)


async def _stop_on_shutdown(ctx: ServiceContext, scope: trio.CancelScope) -> None:
    async for event in ctx.bus:
        if isinstance(event, events.Shutdown):
            logs.log("shutdown_received")
            scope.cancel()
            return


async def _stop_on_signal(ctx: ServiceContext, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logs.log("signal_received", signal=signal.Signals(signum).name)
            scope.cancel()
            return
