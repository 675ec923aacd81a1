"""Fail-closed validation of a structured Config (every rule is listed in specs/config.md).

Types are already exact when these run (the cattrs hooks are strict); here live ranges, enums,
formats and cross-field rules. A violation raises ``RuleViolation(keys, message)``: ``keys`` are
the dotted keys involved, so ``kernel.config`` can name the file/env var that set them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from typing import TYPE_CHECKING

from ipc.ids import is_node_id
from ipc.transport.pq import available as pq_available
from kernel.exposes import SERVICE_PREFIX

if TYPE_CHECKING:
    from kernel.config.model import Config


SPAWN_MODES = ("exec", "forkserver")
PQ_MODES = ("off", "hybrid", "required")
LOG_LEVELS = ("debug", "info", "warning", "error")
RESTART_POLICIES = ("permanent", "transient", "temporary")
LISTEN_SECTIONS = ("", "gateway", "overlay")
MAX_FRAME_RANGE = (4096, 16 * 1024 * 1024)
BUS_CAPACITY_MAX = 1_048_576
# ipc:// socket paths are limited to ~107 bytes; leave room for "/<name>.sock" under the dir.
RUNTIME_DIR_MAX_BYTES = 80

_SERVICE_NAME = re.compile(SERVICE_PREFIX + "[a-z0-9-]+")  # the prefix holds no regex syntax
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class RuleViolation(Exception):
    def __init__(self, keys: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.keys = keys
        self.message = message


def _fail(key: str | tuple[str, ...], message: str) -> RuleViolation:
    return RuleViolation((key,) if isinstance(key, str) else key, message)


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise _fail(key, f"{key} must be > 0, got {value}")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _fail(key, f"{key} must be one of {'|'.join(allowed)}, got {value!r}")


def _identity_file(path: str) -> None:
    """A key file the node can use: absolute, a regular file of this user, 0600 or tighter,
    32 bytes (the identity service reads it; these checks name the fix before the node runs)."""
    if not path:
        return
    key = "identity.key_file"
    if not os.path.isabs(path):
        raise _fail(key, f"{key} must be an absolute path, got {path!r:.120}")
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _fail(
            key, f"{key} {path}: {exc.strerror} (ronctl identity new {path} makes one)"
        ) from None
    if not stat.S_ISREG(st.st_mode) or st.st_size != 32:
        raise _fail(key, f"{key} {path} is not an identity key file (ronctl identity new)")
    if st.st_uid != os.getuid():
        raise _fail(key, f"{key} {path} is owned by uid {st.st_uid}, not the node's user")
    if st.st_mode & 0o077:
        raise _fail(key, f"{key} {path} may be read by others: chmod 600 {path}")


def _peer_addr(key: str, peer: str) -> None:
    node_id, at, hostport = peer.partition("@")
    if not at or not is_node_id(node_id):
        raise _fail(
            key,
            f"{key}: {peer!r:.120} is not <node id>@<host>:<port> (node: and 64 "
            "lowercase hex, as `ronctl id` prints it)",
        )
    check_addr(key, hostport)


def check_addr(key: str, value: str) -> None:
    """``HOST:PORT`` with port 0..65535 (0 = pick a free port); IPv6 hosts in brackets."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host_ok = len(host) > 2 and ":" in host
    else:
        host_ok = bool(host) and ":" not in host
    host_ok = host_ok and not any(c.isspace() or c in "/@" for c in host)
    if not (sep and host_ok and port.isascii() and port.isdigit() and int(port) <= 65535):
        raise _fail(key, f"{key} must be HOST:PORT with port 0-65535, got {value!r}")


def is_loopback(bind: str) -> bool:
    """Whether "HOST:PORT" listens on loopback only (``localhost``, 127/8, ``::1``); a name
    other than ``localhost`` counts as not loopback (it may resolve anywhere)."""
    host = bind.rpartition(":")[0].removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(cfg: Config) -> None:
    """Raise RuleViolation for the first broken rule (in a fixed order), else return None."""
    if not _NODE_NAME.fullmatch(cfg.node.name):
        raise _fail(
            "node.name",
            f"node.name must be 1-64 letters, digits, '.', '_' or '-', got {cfg.node.name!r}",
        )
    _supervisor(cfg)
    bus = cfg.bus.capacity
    if not 0 < bus <= BUS_CAPACITY_MAX:
        raise _fail(
            "bus.capacity", f"bus.capacity must be > 0 and <= {BUS_CAPACITY_MAX}, got {bus}"
        )
    _one_of("pq.mode", cfg.pq.mode, PQ_MODES)
    if cfg.pq.mode == "required" and not pq_available():
        raise _fail("pq.mode", "pq.mode=required but this build has no PQ support")
    check_addr("observability.admin_addr", cfg.observability.admin_addr)
    if not cfg.observability.admin_public and not is_loopback(cfg.observability.admin_addr):
        raise _fail(
            "observability.admin_addr",
            f"observability.admin_addr {cfg.observability.admin_addr} is not loopback; the "
            "read-only admin plane leaves loopback only with observability.admin_public = true",
        )
    check_addr("gateway.addr", cfg.gateway.addr)
    check_addr("overlay.addr", cfg.overlay.addr)
    for key, peers in (("overlay.peers", cfg.overlay.peers), ("dht.bootstrap", cfg.dht.bootstrap)):
        for peer in peers:
            _peer_addr(key, peer)
    _identity_file(cfg.identity.key_file)
    _one_of("log.level", cfg.log.level, LOG_LEVELS)
    _log(cfg)
    _auth(cfg)
    _limits(cfg)
    _paths(cfg)
    _services(cfg)


AUTH_WRITES = ("token", "open")
MAX_ROTATE_AFTER = 30 * 86_400.0  # the seeds: root keys rotate at least every 30 days


def _auth(cfg: Config) -> None:
    auth = cfg.auth
    _one_of("auth.writes", auth.writes, AUTH_WRITES)
    for name in ("rotate_after", "max_ttl", "cli_ttl"):
        _positive(f"auth.{name}", getattr(auth, name))
    if auth.rotate_after > MAX_ROTATE_AFTER:
        raise _fail(
            "auth.rotate_after",
            f"auth.rotate_after must be <= {MAX_ROTATE_AFTER:g} s (30 days), "
            f"got {auth.rotate_after}",
        )
    if not 0 <= auth.rotate_overlap < auth.rotate_after:
        raise _fail(
            ("auth.rotate_overlap", "auth.rotate_after"),
            f"auth.rotate_overlap ({auth.rotate_overlap}) must be >= 0 and < "
            f"auth.rotate_after ({auth.rotate_after})",
        )


def _supervisor(cfg: Config) -> None:
    sup = cfg.supervisor
    for name in (
        "stable_after",
        "min_backoff",
        "max_backoff",
        "restart_window",
        "heartbeat_interval",
        "heartbeat_timeout",
        "shutdown_deadline",
    ):
        _positive(f"supervisor.{name}", getattr(sup, name))
    if sup.min_backoff > sup.max_backoff:
        raise _fail(
            ("supervisor.min_backoff", "supervisor.max_backoff"),
            f"supervisor.min_backoff ({sup.min_backoff}) must be <= "
            f"supervisor.max_backoff ({sup.max_backoff})",
        )
    if not sup.heartbeat_timeout > sup.heartbeat_interval:
        raise _fail(
            ("supervisor.heartbeat_timeout", "supervisor.heartbeat_interval"),
            f"supervisor.heartbeat_timeout ({sup.heartbeat_timeout}) must be > "
            f"supervisor.heartbeat_interval ({sup.heartbeat_interval})",
        )
    if sup.restart_cap < 1:
        raise _fail(
            "supervisor.restart_cap", f"supervisor.restart_cap must be >= 1, got {sup.restart_cap}"
        )
    _one_of("supervisor.spawn", sup.spawn, SPAWN_MODES)


def _limits(cfg: Config) -> None:
    lim = cfg.limits
    lo, hi = MAX_FRAME_RANGE
    if not lo <= lim.max_frame <= hi:
        raise _fail(
            "limits.max_frame", f"limits.max_frame must be in [{lo}, {hi}], got {lim.max_frame}"
        )
    if lim.cmd_inflight < 1:
        raise _fail(
            "limits.cmd_inflight", f"limits.cmd_inflight must be >= 1, got {lim.cmd_inflight}"
        )
    _positive("limits.cmd_timeout", lim.cmd_timeout)


def _log(cfg: Config) -> None:
    log = cfg.log
    if not 10 <= log.ring_lines <= 100_000:
        raise _fail("log.ring_lines", f"log.ring_lines must be 10 … 100000, got {log.ring_lines}")
    if not 4096 <= log.file_bytes <= 1 << 30:
        raise _fail(
            "log.file_bytes", f"log.file_bytes must be 4096 … 1073741824, got {log.file_bytes}"
        )
    if not 1 <= log.files <= 100:
        raise _fail("log.files", f"log.files must be 1 … 100, got {log.files}")
    if "\x00" in log.dir:
        raise _fail("log.dir", "log.dir must not contain a NUL byte")
    if log.dir and cfg.amnesia.enabled:
        raise _fail(
            ("log.dir", "amnesia.enabled"),
            "log.dir writes log files to disk, which amnesia forbids; under amnesia the "
            "logs live in RAM only (`ronctl logs`)",
        )


def _paths(cfg: Config) -> None:
    for key, value in (
        ("paths.runtime_dir", cfg.paths.runtime_dir),
        ("paths.data_dir", cfg.paths.data_dir),
    ):
        if "\x00" in value:
            raise _fail(key, f"{key} must not contain a NUL byte")
    size = len(cfg.paths.runtime_dir.encode("utf-8", "surrogateescape"))
    if size > RUNTIME_DIR_MAX_BYTES:
        raise _fail(
            "paths.runtime_dir",
            f"paths.runtime_dir is {size} bytes; ipc socket paths must stay short: "
            f"use a directory of at most {RUNTIME_DIR_MAX_BYTES} bytes",
        )


def _services(cfg: Config) -> None:
    seen: set[str] = set()
    listening: set[str] = set()
    interval = cfg.supervisor.heartbeat_interval
    for i, svc in enumerate(cfg.services):
        at = f"services[{i}]"
        if not _SERVICE_NAME.fullmatch(svc.name):
            raise _fail(
                f"{at}.name", f"{at}.name must match {_SERVICE_NAME.pattern}, got {svc.name!r}"
            )
        if svc.name in seen:
            raise _fail(f"{at}.name", f"duplicate service name {svc.name!r} ({at})")
        seen.add(svc.name)
        if not _MODULE.fullmatch(svc.module):
            raise _fail(
                f"{at}.module",
                f"{at}.module must be a dotted module path like 'services.echo', "
                f"got {svc.module!r}",
            )
        _one_of(f"{at}.restart", svc.restart, RESTART_POLICIES)
        _one_of(f"{at}.listen", svc.listen, LISTEN_SECTIONS)
        if svc.listen and svc.listen in listening:
            raise _fail(f"{at}.listen", f"{at}.listen: {svc.listen!r} is already served")
        listening.add(svc.listen)
        _positive(f"{at}.shutdown_deadline", svc.shutdown_deadline)
        hb = svc.heartbeat_timeout
        if not (hb == 0 or hb > interval):
            raise _fail(
                (f"{at}.heartbeat_timeout", "supervisor.heartbeat_interval"),
                f"{at}.heartbeat_timeout ({hb}) must be 0 (use the supervisor's) or > "
                f"supervisor.heartbeat_interval ({interval})",
            )
