"""``ronctl run``: one node = bus proxy + supervisor + admin plane in one trio run.

Wiring only; each part lives in its own module (``NodeAdmin`` answers the planes,
``EventFanout`` feeds /events, ``Supervisor`` supervises). Lifetime, outermost first:

    runtime dir (0700; tmpfs for amnesia)  -> removed on stop when amnesia is on
      bus proxy                             -> the node's broadcast
        the supervisor's own bus handle     -> Health feeds the supervisor, events feed /events
          admin plane, supervisor, signals  -> until SIGINT/SIGTERM/`ronctl stop`

Stopping: ``Shutdown`` on the bus, every child drained then TERM then KILL and reaped, then the
admin plane and the bus close, then (micronode) the runtime dir is deleted. Exit code 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from ipc import events
from ipc.bus import Bus
from ipc.bus_proxy import BusProxy
from kernel import childenv, logs
from kernel.admin import (
    AdminBindError,
    ControlBindError,
    build_admin_app,
    build_control_app,
    serve_admin,
    serve_control,
)
from kernel.config import (
    Config,
    ConfigError,
    ConfigStore,
    ServiceSpec,
    check_services,
    load_config,
)
from kernel.datadir import DataDir, DataDirError
from kernel.event_fanout import EventFanout, supervisor_logger
from kernel.exposes import ROLE_IDENTITY, MetricSpec, exposes_of, provider
from kernel.health import HealthState
from kernel.launch import launcher_for, serve_launcher
from kernel.launch._zygote_start import StartedZygote
from kernel.listeners import ListenError, bind_listeners, listen_url
from kernel.log_files import LogFiles
from kernel.log_ring import LogRing
from kernel.metrics import Metrics
from kernel.node_admin import NodeAdmin
from kernel.passport_link import PassportLink
from kernel.reaper import Reaper
from kernel.runtime import (
    RuntimeDir,
    RuntimeDirError,
    default_data_dir,
    default_runtime_dir,
    is_tmpfs,
)
from kernel.sd_notify import Notifier
from kernel.service_clients import ServiceClients
from kernel.supervisor import Supervisor

METRICS_FOLD_INTERVAL = 30.0
AUDIT_DRAIN_S = 2.0  # at stop: how long queued audit records may take to reach the identity service


def _fail(message: str) -> int:
    print(f"ronctl: {message}", file=sys.stderr)
    return 1


def run_node(
    profile: str,
    config_file: Path | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    zygote: StartedZygote | None = None,
    notifier: Notifier | None = None,
) -> int:
    """Run a node in the foreground until stopped. Returns the process exit code.

    ``zygote``: one already started for this profile (``kernel.node_boot``); the fork server
    adopts it. The caller still owns it if the node never got that far (``discard``).
    ``notifier``: systemd's notify socket, taken from the environment (default: taken here).
    """
    notifier = notifier if notifier is not None else Notifier.take()

    def load() -> Config:
        # structure and rules, then what needs the services' code (modules, settings)
        return check_services(load_config(profile, config_file=config_file, overrides=overrides))

    try:
        cfg = load()
    except ConfigError as exc:
        return _fail(str(exc))
    amnesia = cfg.amnesia.enabled
    logs.configure(service="supervisor", amnesia=amnesia, level=cfg.log.level)
    path = Path(cfg.paths.runtime_dir) if cfg.paths.runtime_dir else default_runtime_dir()
    if amnesia and not is_tmpfs(path.parent if not path.exists() else path):
        return _fail(
            f"amnesia is on but the runtime dir {path} is not on tmpfs (RAM); "
            "pass --runtime-dir on a tmpfs such as /dev/shm"
        )
    try:
        runtime = RuntimeDir.create(path)
    except RuntimeDirError as exc:
        return _fail(str(exc))
    reaper = Reaper(path) if amnesia else None  # keys must not outlive a kill -9 of us
    error: str | None = None
    data: DataDir | None = None
    try:
        data = _claim_data_dir(cfg, runtime)
        trio.run(_run, cfg, load, runtime, data.path, zygote, notifier)
    except* (AdminBindError, ControlBindError, RuntimeDirError, DataDirError, ListenError) as group:
        error = str(_first_leaf(group))
    except* OSError as group:  # the disk or the system refused something the node needs
        leaf = _first_leaf(group)
        error = f"cannot run the node: {getattr(leaf, 'strerror', None) or leaf}"
    finally:
        if data is not None:
            data.close()
        if amnesia:
            runtime.remove()
        else:
            runtime.close()
        if reaper is not None:
            reaper.finish()
    return _fail(error) if error else 0


def _claim_data_dir(cfg: Config, runtime: RuntimeDir) -> DataDir:
    """Amnesia: data lives in the runtime dir (tmpfs, locked with it, removed on stop).
    Otherwise on disk: ours, not writable by others, and locked for this node alone."""
    if cfg.amnesia.enabled:
        path = runtime.path / "data"
    else:
        path = Path(cfg.paths.data_dir) if cfg.paths.data_dir else default_data_dir()
    return DataDir.claim(path)


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


@attrs.frozen
class _Boot:
    """What ``_run`` hands the node's trio part: the config, how to reload it, where it lives."""

    cfg: Config
    load: Callable[[], Config]
    runtime: RuntimeDir
    data_dir: Path
    zygote: StartedZygote | None
    notifier: Notifier


async def _run(
    cfg: Config,
    load: Callable[[], Config],
    runtime: RuntimeDir,
    data_dir: Path,
    zygote: StartedZygote | None,
    notifier: Notifier,
) -> None:
    boot = _Boot(cfg, load, runtime, data_dir, zygote, notifier)
    ring = LogRing(max_lines=cfg.log.ring_lines)
    files = None
    if cfg.log.dir:  # never under amnesia (kernel.config.rules)
        log_dir = Path(cfg.log.dir) if os.path.isabs(cfg.log.dir) else data_dir / cfg.log.dir
        files = LogFiles(log_dir, file_bytes=cfg.log.file_bytes, files=cfg.log.files)

    def tap(record: dict[str, object], text: str) -> None:
        ring.add(record, text)
        if files is not None:
            files.add(record, text)

    logs.set_tap(tap)
    try:
        with contextlib.ExitStack() as closing:
            listeners = bind_listeners(cfg)
            for sock in listeners.values():
                closing.enter_context(sock)
            async with trio.open_nursery() as writing:
                if files is not None:
                    writing.start_soon(files.run)
                await _serve_node(boot, listeners, ring)
                logs.log("node_stopped")
                writing.cancel_scope.cancel()
    finally:
        logs.set_tap(None)


def _declared_metrics(cfg: Config) -> list[MetricSpec]:
    """Every metric family the config's services declare (the scrape names them all)."""
    return [spec for svc in cfg.services for spec in exposes_of(svc.module).metrics]


async def _serve_node(boot: _Boot, listeners: dict[str, socket.socket], ring: LogRing) -> None:
    cfg, rt = boot.cfg, boot.runtime.path
    metrics = Metrics(
        boot.runtime.metrics_dir,
        amnesia=cfg.amnesia.enabled,
        reset=True,
        declared=_declared_metrics(cfg),
    )
    health = HealthState()
    health.config_loaded = True
    store = ConfigStore(cfg)

    def env_for(spec: ServiceSpec) -> dict[str, str]:
        env = childenv.service_env(spec.name, store.current.to_dict(), rt, boot.data_dir)
        if spec.listen:
            env[childenv.LISTEN_FDS] = childenv.encode_fds([listeners[spec.listen].fileno()])
        return env

    async with trio.open_nursery() as outer:
        await outer.start(BusProxy(rt, capacity=cfg.bus.capacity, metrics=metrics).run)
        launcher = launcher_for(
            cfg.supervisor.spawn,
            preload=[s.module for s in cfg.services],
            prestarted=boot.zygote,
            spares=cfg.supervisor.spares,
        )
        await outer.start(serve_launcher, launcher)  # a zygote lives until the node stops
        async with (
            Bus.connect(rt, capacity=cfg.bus.capacity, metrics=metrics) as bus,
            _passport_link(cfg, rt, metrics) as link,
            trio.open_nursery() as nursery,
        ):
            health.bus_up = True
            fanout = EventFanout(metrics.queue_dropped.labels(queue="admin_events"))
            audit = link.record if link is not None else _no_audit
            supervisor = Supervisor(
                cfg,
                health=health,
                bus=bus,
                launcher=launcher,
                metrics=metrics,
                env_for=env_for,
                log=supervisor_logger(fanout, audit),
            )
            node = NodeAdmin(
                store=store,
                reload_config=boot.load,
                health=health,
                metrics=metrics,
                bus=bus,
                supervisor=supervisor,
                runtime_dir=rt,
                fanout=fanout,
                clients=ServiceClients(rt, nursery),
                passport_link=link,
                log_ring=ring,
                listening=frozenset(listeners),
            )
            await _run_until_stopped(boot, node, listeners, nursery)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


def _no_audit(act: str, **detail: object) -> None:
    """Where audit records go on a node without an identity service: nowhere (nothing to sign)."""


async def _run_until_stopped(
    boot: _Boot, node: NodeAdmin, listeners: dict[str, socket.socket], nursery: trio.Nursery
) -> None:
    """Start the planes and the supervisor, announce the node, wait for a stop, then stop."""
    cfg, link, ready = boot.cfg, node.passport_link, trio.Event()
    if link is not None:
        nursery.start_soon(link.run_outbox)
        nursery.start_soon(link.learn_identity)
    nursery.start_soon(_handle_signals, node)
    nursery.start_soon(_pump_bus, node, ready)
    nursery.start_soon(_fold_metrics, node.metrics)
    ctl = await nursery.start(serve_control, build_control_app(node), node.runtime_dir)
    admin = await nursery.start(serve_admin, build_admin_app(node), cfg.observability.admin_addr)
    admin_url = f"http://{admin}"
    if cfg.observability.admin_public:
        logs.log("admin_public", level="warning", admin=admin_url, read_only=True)
    await nursery.start(node.supervisor.run)
    urls = {"admin": admin_url}
    urls.update({name: listen_url(name, sock) for name, sock in sorted(listeners.items())})
    node.urls = urls
    boot.runtime.write_node_info({**urls, "profile": cfg.node.name})
    logs.log("node_started", runtime_dir=str(node.runtime_dir), control=str(ctl), **urls)
    nursery.start_soon(_announce_when_ready, node, ready, cfg, boot.notifier)
    nursery.start_soon(boot.notifier.watchdog)
    await node.stop_requested.wait()
    boot.notifier.notify(STOPPING=1, STATUS="stopping")
    logs.log("node_stopping")
    if link is not None and not await link.drained(AUDIT_DRAIN_S):
        logs.log("audit_undelivered", level="warning", reason="the identity service is down")
    await node.supervisor.shutdown()


async def _pump_bus(node: NodeAdmin, ready: trio.Event) -> None:
    """Every bus event: Health feeds the supervisor; all go to /events subscribers. ``ready``
    is set the first time every required service is ready."""
    while True:
        event, sender = await node.bus.recv_with_sender()
        if isinstance(event, events.Health):
            node.supervisor.on_health(event.service, event.ok, sender=sender)
            if not ready.is_set() and node.health.readiness().ready:
                ready.set()
        node.fanout.publish(events.topic_of(event), events.to_wire(event))


async def _handle_signals(node: NodeAdmin) -> None:
    """SIGHUP reloads the config (an invalid one is logged and the running one stays);
    SIGINT/SIGTERM stop the node."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                with contextlib.suppress(ConfigError):  # logged; the running config stays
                    version = await node.reload()
                    node.audit("reload", config_version=version, caller="SIGHUP")
            else:
                logs.log("signal_received", signal=signal.Signals(signum).name)
                node.stop_requested.set()


@asynccontextmanager
async def _passport_link(
    cfg: Config, runtime_dir: Path, metrics: Metrics
) -> AsyncIterator[PassportLink | None]:
    """The link to the service that holds the identity role, when the node runs one."""
    service = provider(cfg.services, ROLE_IDENTITY)
    if service is None:
        yield None
        return
    async with PassportLink.open(runtime_dir, service, metrics) as link:
        yield link


async def _fold_metrics(metrics: Metrics) -> None:
    """Every ``METRICS_FOLD_INTERVAL`` s, fold dead processes' sample files into the archives,
    so the metrics directory stays bounded even when nothing scrapes (a scrape folds too)."""
    while True:
        await trio.sleep(METRICS_FOLD_INTERVAL)
        await trio.to_thread.run_sync(metrics.fold_dead)


async def _announce_when_ready(
    node: NodeAdmin, ready: trio.Event, cfg: Config, notifier: Notifier
) -> None:
    """Print the single ``node_ready`` line on stdout once /readyz would say 200 (and tell
    systemd ``READY=1`` when it supervises the node)."""
    await ready.wait()
    if node.passport_link is not None:
        await node.passport_link.identity_known.wait()  # so /version shows node_id at once
    urls = node.urls
    line = {"event": "node_ready", "profile": cfg.node.name, "pid": os.getpid(), **urls}
    print(json.dumps(line, separators=(",", ":")), flush=True)
    logs.log("node_ready", **urls)
    notifier.notify(READY=1, MAINPID=os.getpid(), STATUS=f"ready: admin {urls['admin']}")
