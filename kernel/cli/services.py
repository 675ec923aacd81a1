"""``ronctl`` verbs on one service: ``start``, ``restart``, ``stop SERVICE`` and
``status SERVICE`` (like ``systemctl start|restart|stop|status UNIT`` or ``supervisorctl``);
``start|restart|stop all`` act on every service in turn (start order, stop in reverse).

Acts go through the control socket; then the verb waits, polling the read plane with a deadline,
until the service is where the act put it (ready again, or stopped), so a script can chain
``ronctl restart svc-index && ronctl put FILE``. An operator's act never counts toward the
quarantine cap.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from ipc.plain import JsonObject
from kernel.cli.common import AdminArg, CliError, add_json_arg, admin_client, control_client, emit

__all__ = ["cmd_service_act", "cmd_service_status", "register"]

Verb = Callable[..., argparse.ArgumentParser]
ALL = "all"  # every service: `ronctl restart all`
POLL_S = 0.02  # an HTTP GET on loopback per poll: cheap; the wait shows in `ronctl restart`
NOT_RUNNING = 3  # `ronctl status SERVICE` of a service that is not ready (systemctl's code)


def _quoted(service: str) -> str:
    return urllib.parse.quote(service, safe="")


def unknown(service: str) -> CliError:
    return CliError(f"unknown service: {service} (see `ronctl status`)")


def service_doc(args: argparse.Namespace, service: str) -> JsonObject:
    """``GET /services/{service}`` of the node ``args`` names; CliError if unknown."""
    resp = admin_client(args).get(f"/services/{_quoted(service)}")
    if resp.status == 404:
        raise unknown(service)
    doc = resp.json() if resp.status == 200 else None
    if not isinstance(doc, dict):
        raise CliError(f"the admin plane answered /services/{service} with {resp.error_text()}")
    return doc


def _arrived(act: str, before: JsonObject, now: JsonObject) -> bool:
    if act == "stop":
        return now.get("state") == "stopped" and now.get("pid") is None
    new_process = act != "restart" or (now.get("pid") not in (None, before.get("pid")))
    return new_process and now.get("state") == "ready"


def cmd_service_act(args: argparse.Namespace) -> int:
    if args.service == ALL:
        return _act_on_all(args)
    doc, text = _act(args, args.act, args.service)
    emit(args, doc, text)
    return 0


def _act(args: argparse.Namespace, act: str, service: str) -> tuple[JsonObject, str]:
    """Do ``act`` on ``service`` and wait (unless ``--no-wait``) until it is where the act put
    it; returns what ``--json`` prints and the line a person reads."""
    before = service_doc(args, service)
    resp = control_client(args).post(f"/{act}/{_quoted(service)}")
    if resp.status == 404:
        raise unknown(service)
    doc = resp.json() if resp.status == 200 else None
    if not isinstance(doc, dict):
        raise CliError(f"{act} {service} failed ({resp.error_text()})")
    if not doc.get("changed", True):
        state = "stopped" if act == "stop" else "running"
        return _result(act, before, False), f"{service} is already {state}"
    if args.no_wait:
        return _result(act, before, True, arrived=False), f"{act} {service}: requested"
    deadline = time.monotonic() + args.timeout
    now = before
    while not _arrived(act, before, now):
        if time.monotonic() >= deadline:
            raise CliError(
                f"{service} is {now.get('state')} {args.timeout:g} s after {act} "
                f"(last crash: {now.get('last_crash') or '-'}); see `ronctl logs {service}`"
            )
        time.sleep(POLL_S)  # polling another process with a deadline: no event reaches us
        now = service_doc(args, service)
    done = {"stop": "stopped", "start": "started", "restart": "restarted"}[act]
    pid = f" (pid {now['pid']})" if now.get("pid") else ""
    return _result(act, now, True), f"{done} {service}{pid}"


def _act_on_all(args: argparse.Namespace) -> int:
    """``start|restart all`` in the order the node starts its services (its config's), ``stop
    all`` in reverse, one at a time, each waited for (the node itself keeps running: ``ronctl
    stop`` without SERVICE stops it)."""
    version = admin_client(args).get("/version")
    listed = version.json().get("services") if version.status == 200 else None
    if not isinstance(listed, list):
        raise CliError(f"the admin plane answered /version with {version.error_text()}")
    names = [str(s["name"]) for s in listed if isinstance(s, dict) and s.get("name")]
    # the order the node starts them in (its config's: a service after those it needs)
    names.sort(key=lambda name: int((service_doc(args, name).get("spec") or {}).get("order", 0)))
    results = []
    for service in reversed(names) if args.act == "stop" else names:
        doc, text = _act(args, args.act, service)
        results.append(doc)
        if not args.json:
            print(text, flush=True)
    if args.json:
        print(json.dumps({"act": args.act, "services": results}, sort_keys=True))
    return 0


def _result(act: str, doc: JsonObject, changed: bool, arrived: bool = True) -> JsonObject:
    """What ``--json`` prints after an act: the service's state as last read."""
    return {
        "service": doc.get("name"),
        "act": act,
        "changed": changed,
        "arrived": arrived,
        "state": doc.get("state"),
        "pid": doc.get("pid"),
    }


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).isoformat(timespec="seconds")


def cmd_service_status(args: argparse.Namespace) -> int:
    """``ronctl status SERVICE``: spec, pid, state, restarts, last crash and uptime."""
    doc = service_doc(args, args.service)
    code = 0 if doc.get("state") == "ready" else NOT_RUNNING
    if args.json:
        print(json.dumps(doc, sort_keys=True))
        return code
    spec = doc.get("spec") or {}
    state = str(doc.get("state", "?")) + (" (stopped by an operator)" if doc.get("held") else "")
    rows = [
        ("service", str(doc.get("name"))),
        ("state", state),
        ("pid", str(doc.get("pid") or "-")),
        ("uptime", f"{doc.get('uptime') or 0:g} s"),
        ("restarts", str(doc.get("restarts", 0))),
        ("last crash", f"{doc.get('last_crash') or '-'} at {_when(doc.get('last_crash_at'))}"),
        ("module", str(spec.get("module", "?"))),
        ("restart mode", str(spec.get("restart", "?"))),
        ("required", "yes" if doc.get("required", True) else "no"),
        ("shutdown deadline", f"{spec.get('shutdown_deadline', '?')} s"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return code


def register(verb: Verb, admin_arg: AdminArg) -> None:
    """Add ``start`` and ``restart`` (``stop`` and ``status`` take SERVICE in kernel.cli.node)."""
    for act, summary in (
        ("start", "start a service an operator stopped (or release a quarantined one)"),
        ("restart", "replace a service's process now (never counts toward the quarantine cap)"),
    ):
        p = verb(
            act,
            summary,
            cmd_service_act,
            description=f"{summary[0].upper()}{summary[1:]}, through the control socket, then "
            "wait until it is ready (--no-wait: do not wait).",
        )
        p.set_defaults(act=act)
        p.add_argument(
            "service", metavar="SERVICE", help="service name, e.g. svc-index, or all (each in turn)"
        )
        add_wait_args(p)
        admin_arg(p)


def add_wait_args(p: argparse.ArgumentParser) -> None:
    """``--no-wait``, ``--timeout`` and ``--json`` of the verbs that act on one service."""
    add_json_arg(p, '{"service", "act", "changed", "arrived", "state", "pid"}')
    p.add_argument("--no-wait", action="store_true", help="return once the act is accepted")
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="how long to wait (30)"
    )
