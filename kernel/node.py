"""``ronctl run``: one node = bus proxy + supervisor + admin plane in one trio run.

Wiring only; each part lives in its own module. Lifetime, outermost first:

    runtime dir (0700; tmpfs for amnesia)  -> removed on stop when amnesia is on
      bus proxy                             -> the node's broadcast
        the supervisor's own bus handle     -> Health feeds the supervisor, events feed /events
          admin plane, supervisor, signals  -> until SIGINT/SIGTERM/`ronctl stop`

Stopping: ``Shutdown`` on the bus, every child drained then TERM then KILL and reaped, then the
admin plane and the bus close, then (micronode) the runtime dir is deleted. Exit code 0.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from ipc import endpoints, events, oap
from ipc.bus import Bus
from ipc.bus_proxy import BusProxy
from ipc.commands import CommandClient
from ipc.proto import mailbox, overlay
from ipc.proto import storage as storage_proto
from ipc.proto.codec import call
from kernel import childenv, faults, logs
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
from kernel.config.reload import check_reloadable
from kernel.datadir import DataDir, DataDirError
from kernel.health import HealthState
from kernel.launch import launcher_for, serve_launcher
from kernel.launch._zygote_start import StartedZygote
from kernel.log_files import LogFiles
from kernel.log_ring import LogRing
from kernel.metrics import Metrics
from kernel.passport_link import PASSPORT, PassportLink, PassportUnavailable
from kernel.reaper import Reaper
from kernel.runtime import (
    RuntimeDir,
    RuntimeDirError,
    default_data_dir,
    default_runtime_dir,
    is_tmpfs,
)
from kernel.sd_notify import Notifier
from kernel.supervisor import Supervisor
from kernel.version import VERSION

EVENTS_BUFFER = 256
HISTORY = 128  # recent events (crashes, respawns, operator acts) replayed on /events?history=1
METRICS_FOLD_INTERVAL = 30.0


OVERLAY = "svc-overlay"
MAILBOX = "svc-mailbox"
STORAGE = "svc-storage"
AUDIT_DRAIN_S = 2.0  # at stop: how long queued audit records may take to reach svc-passport
FAULT_TIMEOUT = 2.0  # how long an in-service fault request may take to be acknowledged


SUPERVISOR_TOPIC = "kernel.supervisor"  # admin-plane events (not KernelEvents) of the supervisor
SUPERVISOR_EVENTS = frozenset(
    {
        "respawned",
        "restart_scheduled",
        "service_quarantined",
        "service_released",
        "service_held",
        "service_restarting",
        "service_started_by_operator",
        "service_stopped",
        "heartbeat_missed",
    }
)


class FaultRefused(Exception):
    """A fault could not be injected (the target is down or does not answer); one line."""


class Node:
    """The running node as the admin plane sees it (implements ``kernel.admin.NodeControl``)."""

    def __init__(
        self,
        *,
        store: ConfigStore,
        reload_config: Any,
        health: HealthState,
        metrics: Metrics,
        bus: Bus,
        supervisor: Supervisor,
        runtime_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.runtime_dir = runtime_dir
        self.urls: dict[str, str] = {}  # admin/gateway/overlay, once bound
        self._reload_config = reload_config
        self.health = health
        self.metrics = metrics
        self.bus = bus
        self.supervisor = supervisor
        self.stop_requested = trio.Event()
        self.ready = trio.Event()
        self.passport_link: PassportLink | None = None
        self.overlay_client: CommandClient | None = None  # svc-overlay's command socket
        self.mailbox_client: CommandClient | None = None  # svc-mailbox's
        self.storage_client: CommandClient | None = None  # svc-storage's (housekeeping)
        self.listening: frozenset[str] = frozenset()  # sections whose sockets were bound at start
        self.last_reload: dict[str, list[str]] = {}
        self.log_ring: LogRing | None = None  # recent log lines per service (`ronctl logs`)
        self._reload_lock = trio.Lock()
        self._subscribers: list[tuple[str, trio.MemorySendChannel[dict[str, Any]]]] = []
        self.history: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(
            maxlen=HISTORY
        )

    def node_info(self) -> dict[str, Any]:
        version, cfg = self.store.snapshot()
        return {
            "version": VERSION,
            "profile": cfg.node.name,
            "amnesia": cfg.amnesia.enabled,
            "pq": cfg.pq.mode,
            "config_version": version,
            "config_sha": cfg.sha256,
            "node_id": self.passport_link.node_id if self.passport_link else None,
            "pid": os.getpid(),
            "urls": dict(self.urls),
            "supervisor": {  # what a chaos drill needs to predict restarts and quarantines
                "restart_cap": cfg.supervisor.restart_cap,
                "restart_window": cfg.supervisor.restart_window,
                "heartbeat_timeout": cfg.supervisor.heartbeat_timeout,
            },
        }

    async def fault(self, service: str, fault: str, *, delay_ms: int, duration_s: float) -> int:
        """Inject one chaos fault into ``service``'s current process; returns its pid.

        ``kill`` = SIGKILL, ``hang`` = SIGSTOP (the supervisor sees the missed heartbeats and
        replaces it), ``panic``/``slow`` go to the service's own fault hooks over its control
        socket. KeyError: unknown service; ``FaultRefused``: not running or hook unreachable;
        ValueError: bad arguments.
        """
        status = self.health.get(service)
        if status is None:
            raise KeyError(service)
        if fault not in faults.FAULTS:
            raise ValueError(f"fault must be one of {', '.join(faults.FAULTS)}")
        pid = status.pid
        if pid is None:
            raise FaultRefused(f"{service} is not running (state {status.state.value})")
        if fault in ("kill", "hang"):
            try:
                os.kill(pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
            except ProcessLookupError:
                raise FaultRefused(f"{service} (pid {pid}) is already gone") from None
            logs.log("fault_injected", level="warning", service=service, fault=fault, pid=pid)
            return pid
        request = faults.fault_request(
            faults.FaultRequest(fault=fault, delay_ms=delay_ms, duration_s=duration_s)
        )
        assert self.runtime_dir is not None
        try:
            async with CommandClient.connect(
                self.runtime_dir, endpoints.control_name(service), max_inflight=1
            ) as client:
                await client.request(request, timeout=FAULT_TIMEOUT)
        except oap.OapError as exc:
            raise FaultRefused(f"{service} did not take the fault: {exc.reason}") from None
        logs.log("fault_injected", level="warning", service=service, fault=fault, pid=pid)
        return pid

    async def stop(self) -> None:
        self.stop_requested.set()

    def audit(self, act: str, **detail: object) -> None:
        if self.passport_link is not None:
            self.passport_link.record(act, **detail)

    async def passport(self, request: Any) -> Any:
        if self.passport_link is None:
            raise PassportUnavailable("this node runs no svc-passport")
        return await self.passport_link.call(request)

    async def peers(self) -> list[dict[str, Any]] | None:
        if self.overlay_client is None:
            return None
        reply = await call(self.overlay_client, overlay.LOCAL, overlay.Peers(), timeout=2.0)
        return [attrs.asdict(peer) for peer in reply.peers]

    async def storage(self, request: Any, timeout: float) -> Any:
        if self.storage_client is None:
            return None
        return await call(self.storage_client, storage_proto.PROTOCOL, request, timeout=timeout)

    async def outbox(self) -> dict[str, Any] | None:
        if self.mailbox_client is None:
            return None
        reply = await call(self.mailbox_client, mailbox.PROTOCOL, mailbox.Outbox(), timeout=2.0)
        # no message ids on the open admin plane: a stranger must not learn ids to reuse
        entries = [attrs.asdict(e, filter=lambda a, _v: a.name != "msg_id") for e in reply.entries]
        return {"depth": reply.depth, "entries": entries}

    def supervisor_log(self, event: str, **fields: Any) -> None:
        """The supervisor's log, which also audits quarantines (a privileged act of its own)."""
        logs.log(event, **fields)
        if event in SUPERVISOR_EVENTS:  # respawns, quarantines, operator acts: on /events too
            self._fan_out(SUPERVISOR_TOPIC, {"type": "Supervisor", "event": event, **fields})
        if event == "service_quarantined":
            self.audit("quarantine", service=fields.get("service"), reason=fields.get("reason"))

    async def release(self, service: str) -> None:
        self.supervisor.release(service)

    def service_spec(self, service: str) -> dict[str, Any] | None:
        for spec in self.store.current.services:
            if spec.name == service:
                shown = attrs.asdict(spec)
                shown.pop("settings", None)
                return shown
        return None

    async def service_act(self, service: str, act: str) -> bool:
        if act == "stop":
            return self.supervisor.stop_service(service)
        if act == "start":
            return await self.supervisor.start_service(service)
        if act == "restart":
            await self.supervisor.restart_service(service)
            return True
        raise ValueError(f"unknown act {act!r}")

    async def reload(self) -> int:
        """Validate the new config, refuse it if it changes what only a restart applies
        (``kernel.config.reload``), else swap it and reconcile the services to it. On any error
        the running config stays (rollback). Serialized: one reload at a time."""
        async with self._reload_lock:
            old = self.store.current

            def load() -> Config:
                new = self._reload_config()
                check_reloadable(old, new, listening=self.listening)
                return new

            try:
                version = self.store.reload(load)
            except ConfigError as exc:
                logs.log("config_reload_rejected", level="warning", reason=str(exc))
                raise
            changes = await self.supervisor.reconcile(self.store.current)
            self.bus.publish(events.ConfigUpdated(version=version))
            self.last_reload = changes
            logs.log(
                "config_reloaded",
                config_version=version,
                **{k: ",".join(v) for k, v in changes.items()},
            )
            return version

    @asynccontextmanager
    async def open_events(
        self, topic_prefix: str, history: bool = False
    ) -> AsyncIterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](EVENTS_BUFFER)
        if history:  # what happened before the subscriber came (a dashboard opened late)
            for topic, doc in self.history:
                if topic.startswith(topic_prefix):
                    send.send_nowait(doc)  # fits: the history is shorter than the buffer
        entry = (topic_prefix, send)
        self._subscribers.append(entry)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.remove(entry)
            send.close()

    def _fan_out(self, topic: str, doc: dict[str, Any]) -> None:
        """One event to every /events subscriber of its topic, stamped with the time it was
        seen; a full subscriber loses it (counted), never holds up the node."""
        stamped = {"ts": logs.now_iso(), **doc}
        if not (doc.get("type") == "Health" and doc.get("ok")):  # heartbeats are no history
            self.history.append((topic, stamped))
        for prefix, channel in self._subscribers:
            if topic.startswith(prefix):
                try:
                    channel.send_nowait(stamped)
                except (trio.WouldBlock, trio.BrokenResourceError):
                    self.metrics.queue_dropped.labels(queue="admin_events").inc()

    async def pump_bus(self) -> None:
        """Every bus event: Health feeds the supervisor; all go to /events subscribers."""
        while True:
            event, sender = await self.bus.recv_with_sender()
            if isinstance(event, events.Health):
                self.supervisor.on_health(event.service, event.ok, sender=sender)
                if not self.ready.is_set() and self.health.readiness().ready:
                    self.ready.set()
            self._fan_out(events.topic_of(event), events.to_wire(event))

    async def handle_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    with contextlib.suppress(ConfigError):  # logged; the running config stays
                        version = await self.reload()
                        self.audit("reload", config_version=version, caller="SIGHUP")
                else:
                    logs.log("signal_received", signal=signal.Signals(signum).name)
                    self.stop_requested.set()


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


class ListenError(Exception):
    """A listening address the profile needs could not be bound; ``str()`` is one line."""


def _bind_listeners(cfg: Config) -> dict[str, socket.socket]:
    """Bind every ``listen`` section the profile's services ask for (socket activation)."""
    bound: dict[str, socket.socket] = {}
    try:
        for spec in cfg.services:
            if not spec.listen:
                continue
            addr = getattr(cfg, spec.listen).addr
            host, _, port = addr.rpartition(":")
            host = host.strip("[]")
            try:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                bound[spec.listen] = sock
                sock.bind((host, int(port)))
                sock.listen(1024)
            except OSError as exc:
                raise ListenError(
                    f"cannot listen on {spec.listen}.addr {addr}: {exc.strerror or exc}"
                ) from None
    except BaseException:
        for sock in bound.values():
            sock.close()
        raise
    return bound


def _url(section: str, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'http' if section == 'gateway' else 'tcp'}://{host}:{port}"


async def _run(
    cfg: Config,
    load: Any,
    runtime: RuntimeDir,
    data_dir: Path,
    zygote: StartedZygote | None,
    notifier: Notifier,
) -> None:
    store = ConfigStore(cfg)
    metrics = Metrics(runtime.metrics_dir, amnesia=cfg.amnesia.enabled, reset=True)
    health = HealthState()
    health.config_loaded = True
    rt = runtime.path
    listeners = _bind_listeners(cfg)

    def env_for(spec: ServiceSpec) -> dict[str, str]:
        env = childenv.service_env(spec.name, store.current.to_dict(), rt, data_dir)
        if spec.listen:
            env[childenv.LISTEN_FDS] = childenv.encode_fds([listeners[spec.listen].fileno()])
        return env

    ring = LogRing(max_lines=cfg.log.ring_lines)
    files = None
    if cfg.log.dir:  # never under amnesia (kernel.config.rules)
        log_dir = Path(cfg.log.dir) if os.path.isabs(cfg.log.dir) else data_dir / cfg.log.dir
        files = LogFiles(log_dir, file_bytes=cfg.log.file_bytes, files=cfg.log.files)

    def tap(record: dict[str, Any], text: str) -> None:
        ring.add(record, text)
        if files is not None:
            files.add(record, text)

    logs.set_tap(tap)
    try:
        with contextlib.ExitStack() as closing:
            for sock in listeners.values():
                closing.enter_context(sock)
            async with trio.open_nursery() as writing:
                if files is not None:
                    writing.start_soon(files.run)
                await _serve_node(
                    cfg,
                    load,
                    runtime,
                    store,
                    metrics,
                    health,
                    env_for,
                    listeners,
                    zygote,
                    ring,
                    notifier,
                )
                logs.log("node_stopped")
                writing.cancel_scope.cancel()
    finally:
        logs.set_tap(None)


async def _serve_node(
    cfg: Config,
    load: Any,
    runtime: RuntimeDir,
    store: ConfigStore,
    metrics: Metrics,
    health: HealthState,
    env_for: Any,
    listeners: dict[str, socket.socket],
    zygote: StartedZygote | None,
    ring: LogRing,
    notifier: Notifier,
) -> None:
    rt = runtime.path
    async with trio.open_nursery() as outer:
        await outer.start(BusProxy(rt, capacity=cfg.bus.capacity, metrics=metrics).run)
        launcher = launcher_for(
            cfg.supervisor.spawn, preload=[s.module for s in cfg.services], prestarted=zygote
        )
        await outer.start(serve_launcher, launcher)  # a zygote lives until the node stops
        async with Bus.connect(rt, capacity=cfg.bus.capacity, metrics=metrics) as bus:
            health.bus_up = True
            node: Node  # made below; the supervisor's log reaches it only once running
            supervisor = Supervisor(
                cfg,
                health=health,
                bus=bus,
                launcher=launcher,
                metrics=metrics,
                env_for=env_for,
                log=lambda event, **fields: node.supervisor_log(event, **fields),
            )
            node = Node(
                store=store,
                reload_config=load,
                health=health,
                metrics=metrics,
                bus=bus,
                supervisor=supervisor,
                runtime_dir=rt,
            )
            node.listening = frozenset(listeners)
            node.log_ring = ring
            async with (
                _passport_link(cfg, rt, metrics) as link,
                _service_client(cfg, rt, OVERLAY) as overlay_client,
                _service_client(cfg, rt, MAILBOX) as mailbox_client,
                _service_client(cfg, rt, STORAGE) as storage_client,
                trio.open_nursery() as nursery,
            ):
                node.passport_link = link
                node.overlay_client = overlay_client
                node.mailbox_client = mailbox_client
                node.storage_client = storage_client
                if link is not None:
                    nursery.start_soon(link.run_outbox)
                    nursery.start_soon(link.learn_identity)
                nursery.start_soon(node.handle_signals)
                nursery.start_soon(node.pump_bus)
                nursery.start_soon(_fold_metrics, metrics)
                ctl = await nursery.start(serve_control, build_control_app(node), rt)
                admin = await nursery.start(
                    serve_admin, build_admin_app(node), cfg.observability.admin_addr
                )
                admin_url = f"http://{admin}"
                if cfg.observability.admin_public:
                    logs.log("admin_public", level="warning", admin=admin_url, read_only=True)
                await nursery.start(supervisor.run)
                urls = {"admin": admin_url}
                urls.update({name: _url(name, sock) for name, sock in sorted(listeners.items())})
                node.urls = urls
                runtime.write_node_info({**urls, "profile": cfg.node.name})
                logs.log("node_started", runtime_dir=str(rt), control=str(ctl), **urls)
                nursery.start_soon(_announce_when_ready, node, cfg, urls, notifier)
                nursery.start_soon(notifier.watchdog)
                await node.stop_requested.wait()
                notifier.notify(STOPPING=1, STATUS="stopping")
                logs.log("node_stopping")
                if link is not None and not await link.drained(AUDIT_DRAIN_S):
                    logs.log("audit_undelivered", level="warning", reason="svc-passport down")
                await supervisor.shutdown()
                nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


@asynccontextmanager
async def _passport_link(
    cfg: Config, runtime_dir: Path, metrics: Metrics
) -> AsyncIterator[PassportLink | None]:
    """The link to svc-passport when the node runs one (identity, tokens, audit)."""
    if not any(spec.name == PASSPORT for spec in cfg.services):
        yield None
        return
    async with PassportLink.open(runtime_dir, metrics) as link:
        yield link


@asynccontextmanager
async def _service_client(
    cfg: Config, runtime_dir: Path, service: str
) -> AsyncIterator[CommandClient | None]:
    """A command client to ``service`` when the node runs it (``ronctl peers``, ``ronctl mail
    outbox``: what the admin plane reads from svc-overlay and svc-mailbox)."""
    if not any(spec.name == service for spec in cfg.services):
        yield None
        return
    async with CommandClient.connect(runtime_dir, service, max_inflight=4, timeout=2.0) as c:
        yield c


async def _fold_metrics(metrics: Metrics) -> None:
    """Every ``METRICS_FOLD_INTERVAL`` s, fold dead processes' sample files into the archives,
    so the metrics directory stays bounded even when nothing scrapes (a scrape folds too)."""
    while True:
        await trio.sleep(METRICS_FOLD_INTERVAL)
        await trio.to_thread.run_sync(metrics.fold_dead)


async def _announce_when_ready(
    node: Node, cfg: Config, urls: dict[str, str], notifier: Notifier
) -> None:
    """Print the single ``node_ready`` line on stdout once /readyz would say 200 (and tell
    systemd ``READY=1`` when it supervises the node)."""
    await node.ready.wait()
    if node.passport_link is not None:
        await node.passport_link.identity_known.wait()  # so /version shows node_id at once
    line = {"event": "node_ready", "profile": cfg.node.name, "pid": os.getpid(), **urls}
    print(json.dumps(line, separators=(",", ":")), flush=True)
    logs.log("node_ready", **urls)
    notifier.notify(READY=1, MAINPID=os.getpid(), STATUS=f"ready: admin {urls['admin']}")
