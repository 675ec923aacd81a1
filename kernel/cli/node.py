"""``ronctl`` verbs that run a node or act on a running one: run, status, peers, stop, release,
config check|reload."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from ipc import ids
from ipc.plain import JsonObject
from kernel import runtime
from kernel.cli import services as service_verbs
from kernel.cli.client import AdminUnreachable
from kernel.cli.common import (
    RUNTIME_ENV,
    AdminArg,
    CliError,
    add_json_arg,
    admin_client,
    control_client,
    emit,
    first_line,
    human_size,
    runtime_dir_of,
)

__all__ = ["register"]

Verb = Callable[..., argparse.ArgumentParser]
NOT_READY = 3  # `ronctl status` of a degraded node, like `systemctl is-active` of an inactive unit


def host_port(text: str) -> str:
    """Validate ``HOST:PORT`` (``[v6]:PORT`` too; port 0 = pick a free one); return it unchanged."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0-65535), got {text!r}")
    return text


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """CLI flags as dotted config overrides (the highest-precedence layer); only flags given."""
    mapping = {
        "admin_addr": "observability.admin_addr",
        "gateway_addr": "gateway.addr",
        "overlay_addr": "overlay.addr",
        "data_dir": "paths.data_dir",
        "runtime_dir": "paths.runtime_dir",
        "bootstrap": "dht.bootstrap",
        "identity": "identity.key_file",
    }
    return {key: getattr(args, attr) for attr, key in mapping.items() if getattr(args, attr)}


def cmd_run(args: argparse.Namespace) -> int:
    # where the other verbs look for the node (kernel.cli.common.runtime_dir_of): the flag,
    # else $RON_RUNTIME_DIR; neither: the node's config decides (default: the default dir)
    args.runtime_dir = args.runtime_dir or os.environ.get(RUNTIME_ENV) or None
    if args.runtime_dir:
        # Fail before importing the node: the message names the flag to fix.
        runtime.check_path_budget(os.path.abspath(args.runtime_dir))
    node = importlib.import_module("kernel.node_boot")  # starts the zygote, then imports the node
    config = importlib.import_module("kernel.config")
    try:
        return int(node.run_node(args.profile, args.config, _overrides(args)))
    except config.ConfigError as e:
        raise CliError(first_line(e, "invalid config")) from e


def _fmt_uptime(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds <= 0:
        return "-"
    s = int(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            return f"{s // size}{unit}{(s % size) // subsize:02d}{sub}"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _onoff(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "-" if value is None else str(value)


def _readiness_text(ready: JsonObject) -> str:
    if ready.get("ready") is True:
        return "ready"
    missing = ", ".join(str(m) for m in ready.get("missing") or []) or "?"
    return f"degraded (missing: {missing}; retry after {ready.get('retry_after', '?')}s)"


def _peer_change(args: argparse.Namespace) -> int:
    """``peers add ADDR`` / ``peers rm NODE_ID`` through the control socket."""
    if not args.target:
        raise CliError(
            f"ronctl peers {args.action} needs {'ADDR' if args.action == 'add' else 'NODE_ID'}"
        )
    client = control_client(args, timeout=20.0)
    if args.action == "add":
        node_id, at, _ = args.target.partition("@")
        if not at or not ids.is_node_id(node_id):
            raise CliError(
                f"{args.target!r:.120} is not <node id>@<host>:<port> (ronctl id prints one)"
            )
        body = json.dumps({"addr": args.target}).encode()
        resp = client.request("PUT", f"/peers/{node_id}", body)
    else:
        resp = client.request("DELETE", f"/peers/{args.target}")
    if resp.status != 200:
        raise CliError(f"peers {args.action}: {resp.error_text()}")
    doc = resp.json()
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        print(f"{'listed' if args.action == 'add' else 'removed'} {doc.get('node_id')}")
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    if args.action:
        return _peer_change(args)
    resp = admin_client(args).get("/peers")
    if resp.status != 200:
        raise CliError(f"the admin plane answered /peers with {resp.error_text()}")
    doc = resp.json()
    peers = doc.get("peers") if isinstance(doc, dict) else None
    if not isinstance(peers, list):
        raise CliError("unexpected answer from the admin plane: /peers is not a peer list")
    if args.json:
        print(json.dumps(doc, sort_keys=True))
        return 0
    if not peers:
        print("no peers configured (overlay.peers in the config, or RONK_OVERLAY_PEERS)")
        return 0
    rows = [("NODE ID", "ADDRESS", "DIR", "STATE", "BYTES IN", "LAST ERROR")]
    for peer in peers:
        if isinstance(peer, dict):
            node_id = str(peer.get("node_id", "?"))
            rows.append(
                (
                    node_id[:21] + "...",
                    str(peer.get("addr", "?")).rpartition("@")[2],
                    str(peer.get("direction", "out")) + ("" if peer.get("listed", True) else "*"),
                    str(peer.get("state", "?")),
                    str(peer.get("bytes_in", 0)),
                    " ".join(str(peer.get("last_error") or "-").split())[:60],
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.service:
        return service_verbs.cmd_service_status(args)
    client = admin_client(args)
    version_resp = client.get("/version")
    if version_resp.status != 200:
        raise CliError(f"the admin plane answered /version with {version_resp.error_text()}")
    version = version_resp.json()
    ready_resp = client.get("/readyz")
    ready = ready_resp.json() if ready_resp.status in (200, 503) else {}
    if not isinstance(version, dict) or not isinstance(ready, dict):
        raise CliError("unexpected answer from the admin plane: /version or /readyz is not a map")
    code = 0 if ready_resp.status == 200 else NOT_READY
    if args.json:
        doc = {"version": version, "readyz": ready, "ready": ready_resp.status == 200}
        print(json.dumps(doc, sort_keys=True))
        return code
    ready.setdefault("ready", ready_resp.status == 200)
    services = version.get("services") or []
    rows = [("SERVICE", "STATE", "PID", "RESTARTS", "UPTIME", "REQUIRED", "LAST CRASH")]
    for svc in services:
        if not isinstance(svc, dict):
            continue
        pid = svc.get("pid")
        rows.append(
            (
                str(svc.get("name", "?")),
                str(svc.get("state", "?")),
                "-" if pid is None else str(pid),
                str(svc.get("restarts", 0)),
                _fmt_uptime(svc.get("uptime")),
                "yes" if svc.get("required", True) else "no",
                " ".join(str(svc.get("last_crash") or "-").split())[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    print(
        f"profile {version.get('profile', '?')}  amnesia {_onoff(version.get('amnesia'))}  "
        f"pq {_onoff(version.get('pq'))}  config v{version.get('config_version', '?')}  "
        f"{_readiness_text(ready)}"
    )
    store = _store_usage(client)
    if store is not None:
        used, quota, objects = store
        share = f" ({100 * used / quota:.1f}% of {human_size(quota)})" if quota else ""
        print(f"store {human_size(used)}{share}, {objects} objects")
    return code


def _store_usage(client: Any) -> tuple[int, int, int] | None:
    """(bytes, quota, objects) from the scrape's storage_* gauges; None without a store."""
    try:
        resp = client.get("/metrics")
    except AdminUnreachable:
        return None
    if resp.status != 200:
        return None
    found: dict[str, float] = {}
    for line in resp.body.decode(errors="replace").splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("storage_bytes", "storage_quota_bytes", "storage_objects"):
            found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    if "storage_bytes" not in found:
        return None
    return (
        int(found["storage_bytes"]),
        int(found.get("storage_quota_bytes", 0)),
        int(found.get("storage_objects", 0)),
    )


def cmd_stop(args: argparse.Namespace) -> int:
    if args.service:
        return service_verbs.cmd_service_act(args)
    client = control_client(args, timeout=min(5.0, max(0.5, args.timeout)))
    from kernel.cli.chaos import procs

    try:  # the supervisor: "stopped" is said once it is gone, not when it stops answering
        supervisor = procs.identify(int(runtime.read_node_info(runtime_dir_of(args))["pid"]))
    except (runtime.NoRunningNode, KeyError, TypeError, ValueError):
        supervisor = None
    resp = client.post("/stop")
    if resp.status not in (200, 202):
        raise CliError(f"the node refused to stop ({resp.error_text()})")
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            client.get("/healthz")
        except AdminUnreachable:
            if supervisor is None or not procs.is_alive(supervisor):
                break
        if time.monotonic() >= deadline:
            raise CliError(
                f"the node at {client.socket_path} is still answering after {args.timeout:g} s; "
                "check `ronctl status` (a longer --timeout may help)"
            )
        time.sleep(0.1)  # polling a remote process with a deadline: there is no event to wait on
    emit(args, {"stopped": True}, "stopped")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    client = control_client(args)
    resp = client.post(f"/release/{urllib.parse.quote(args.service, safe='')}")
    if resp.status == 200:
        emit(args, {"released": args.service}, f"released {args.service}")
        return 0
    if resp.status == 404:
        raise CliError(f"unknown service: {args.service} (see `ronctl status`)")
    if resp.status == 409:
        raise CliError(f"{args.service} is not quarantined; nothing to release")
    raise CliError(f"release failed ({resp.error_text()})")


def cmd_config_check(args: argparse.Namespace) -> int:
    config = importlib.import_module("kernel.config")
    try:
        config.check_config_file(args.file)
    except config.ConfigError as e:
        raise CliError(first_line(e, f"invalid config: {args.file}")) from e
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e.strerror or e}") from e
    emit(args, {"ok": True, "file": args.file}, f"OK: {args.file}")
    return 0


def cmd_config_reload(args: argparse.Namespace) -> int:
    client = control_client(args)
    resp = client.post("/reload")
    if resp.status == 200:
        body = resp.json()
        body = body if isinstance(body, dict) else {}
        done = [
            f"{what} {', '.join(names)}"
            for what, names in (body.get("changes") or {}).items()
            if isinstance(names, list) and names
        ]
        text = f"config reloaded: version {body.get('config_version')}"
        emit(args, body, text + "".join(f"; {d}" for d in done))
        return 0
    if resp.status == 422:
        body = resp.json()
        detail = body.get("detail") if isinstance(body, dict) else None
        raise CliError(f"config rejected, the running config stays: {detail or 'invalid'}")
    raise CliError(f"reload failed ({resp.error_text()})")


def register(verb: Verb, admin_arg: AdminArg) -> None:
    """Add the node verbs to ``ronctl``'s parser."""
    p = verb(
        "run",
        "run a node in the foreground",
        cmd_run,
        description="Run a node in the foreground until SIGINT/SIGTERM. When it is ready, prints "
        "one JSON line (event node_ready) on stdout; logs are JSON lines on stderr. "
        "Port 0 picks a free port.",
    )
    p.add_argument("profile", metavar="PROFILE", help="micronode, macronode or a profile TOML")
    p.add_argument("--config", metavar="FILE", help="config TOML (overridden by RONK_* and flags)")
    p.add_argument("--admin-addr", metavar="HOST:PORT", type=host_port, help="admin plane address")
    p.add_argument("--gateway-addr", metavar="HOST:PORT", type=host_port, help="gateway address")
    p.add_argument("--overlay-addr", metavar="HOST:PORT", type=host_port, help="overlay address")
    p.add_argument("--data-dir", metavar="DIR", help="persistent data dir (macronode)")
    p.add_argument("--runtime-dir", metavar="DIR", help="runtime dir for IPC sockets (tmpfs)")
    p.add_argument(
        "--bootstrap",
        metavar="ADDR[,ADDR...]",
        help="nodes to join the DHT through (<node id>@host:port, as `ronctl id` prints); "
        "sets dht.bootstrap",
    )
    p.add_argument(
        "--identity",
        metavar="FILE",
        type=os.path.abspath,
        help="identity key file (`ronctl identity new FILE`): the node keeps its id across "
        "restarts; read, never written; sets identity.key_file",
    )

    p = verb(
        "status",
        "show the node's services and readiness",
        cmd_status,
        description="Show each service (state, pid, restarts, uptime, required, last crash "
        "reason) and the node's profile, amnesia, pq mode, config version and readiness; with "
        "SERVICE, that one service and its spec. Exit 0 when the node (or SERVICE) is ready, "
        f"{NOT_READY} when it is not, 1 when it cannot be read.",
    )
    p.add_argument("service", metavar="SERVICE", nargs="?", help="one service, e.g. svc-index")
    admin_arg(p)
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"version": /version, "readyz": /readyz, "ready": bool} as one JSON line',
    )

    p = verb(
        "peers",
        "list the node's peers; peers add ADDR | rm NODE_ID at runtime",
        cmd_peers,
        description="Show each peer: node id, address, direction (out: dialed by this node, "
        "in: connected to it; * = not listed, e.g. a provider the DHT named), state "
        "(connected, idle, down, banned), bytes received from it and its last error. "
        "`peers add ADDR` lists a peer now (fetches ask it, the DHT joins through it); "
        "`peers rm NODE_ID` stops listing it. Neither needs a restart.",
    )
    p.add_argument("action", nargs="?", choices=("add", "rm"), help="change the listed peers")
    p.add_argument("target", nargs="?", metavar="ADDR|NODE_ID", help="what to add or remove")
    admin_arg(p)
    p.add_argument("--json", action="store_true", help='print {"peers": [...]} as one JSON line')

    p = verb(
        "stop",
        "stop the node (or one SERVICE) gracefully and wait until it is gone",
        cmd_stop,
        description="Ask the node (through its control socket) to shut down, then wait until it "
        "stops answering. With SERVICE: stop that service alone and keep it stopped until "
        "`ronctl start SERVICE` (/readyz names it while it is required and stopped).",
    )
    p.set_defaults(act="stop")
    p.add_argument(
        "service",
        metavar="SERVICE",
        nargs="?",
        help="one service, e.g. svc-index, or all (every service, the node keeps running)",
    )
    admin_arg(p)
    service_verbs.add_wait_args(p)

    p = verb(
        "release",
        "restart a quarantined service",
        cmd_release,
        description="Release a service from quarantine so the supervisor starts it again.",
    )
    p.add_argument("service", metavar="SERVICE", help="service name, e.g. svc-index")
    admin_arg(p)
    add_json_arg(p, '{"released"}')

    p = verb("config", "check a config file or reload the node's config", None)
    config_sub = p.add_subparsers(dest="config_verb", metavar="ACTION", required=True)
    c = config_sub.add_parser(
        "check",
        help="validate a config file offline",
        description="Validate a config TOML without a running node: prints OK: FILE or one error.",
    )
    c.add_argument("file", metavar="FILE")
    add_json_arg(c, '{"ok", "file"}')
    admin_arg(c)  # accepted like on every verb; the check itself needs no node
    c.set_defaults(func=cmd_config_check)
    c = config_sub.add_parser(
        "reload",
        help="make the running node reload its config",
        description="Ask the node to re-read its config; an invalid config is rejected and the "
        "running one stays.",
    )
    admin_arg(c)
    add_json_arg(c, '{"config_version", "changes"}')
    c.set_defaults(func=cmd_config_reload)
