"""``ronctl logs`` (the supervisor's RAM ring of log lines) and ``ronctl tail`` (live events).

Both print one line per record: readable text (time, service, level, event, then the fields)
on a terminal, the JSON lines themselves when piped or with ``--json`` (``--text`` forces
text). ``tail`` hides heartbeats (``Health`` events that say ok, several a second) unless
``--heartbeats``; it shows crashes, respawns, quarantines and operator acts as they happen.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from ipc.plain import JsonObject
from kernel.cli.common import AdminArg, CliError, admin_client, control_client
from kernel.cli.services import unknown

__all__ = ["parse_since", "register", "render"]

Verb = Callable[..., argparse.ArgumentParser]
_SINCE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_HEAD = ("ts", "service", "level", "event", "type")
_QUIET = ("corr_id", "amnesia")  # noise in text form (still in --json)


def parse_since(text: str, now: float | None = None) -> float:
    """``10m``, ``90s``, ``2h``, ``1d`` ago, or an ISO-8601 time -> epoch seconds."""
    now = time.time() if now is None else now
    match = _SINCE.fullmatch(text.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    from kernel.log_ring import parse_ts

    at = parse_ts(text.strip())
    if at is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 10m, 90s, 2h, 1d or an ISO time, got {text!r}"
        )
    return at


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return json.dumps(text) if not text or any(c.isspace() for c in text) else text


def render(doc: JsonObject) -> str:
    """One record as text: ``ts service level event key=value ...`` (None fields left out)."""
    head = [str(doc[key]) for key in _HEAD if doc.get(key) is not None]
    rest = [
        f"{key}={_value(value)}"
        for key, value in doc.items()
        if key not in _HEAD and key not in _QUIET and value is not None
    ]
    return " ".join(head + rest)


def _printer(args: argparse.Namespace) -> Callable[[bytes], None]:
    as_json = args.json or (not args.text and not sys.stdout.isatty())

    def show(raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        if not as_json:
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                text = render(doc)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    return show


def _is_heartbeat(raw: bytes) -> bool:
    try:
        doc = json.loads(raw)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("type") == "Health" and doc.get("ok") is True


def _drain(lines: Iterator[bytes], show: Callable[[bytes], None], keep: Any = None) -> int:
    try:
        for raw in lines:
            if keep is None or keep(raw):
                show(raw)
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    query: dict[str, str] = {"max": str(args.lines)}
    if args.service:
        query["service"] = args.service
    if args.since is not None:
        query["since"] = f"{args.since:.3f}"
    if args.follow:
        query["follow"] = "1"
        args.follows = True  # Ctrl-C ends it: exit 0 (kernel.cli.entry)
    path = f"/logs?{urllib.parse.urlencode(query)}"
    client = control_client(args, timeout=5.0)
    if args.follow:
        return _drain(client.stream_lines(path), _printer(args))
    resp = client.get(path)
    if resp.status == 404:
        raise unknown(args.service)
    if resp.status != 200:
        raise CliError(f"the node answered /logs with {resp.error_text()}")
    show = _printer(args)
    for raw in resp.body.splitlines():
        show(raw)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    client = admin_client(args)
    query = urllib.parse.urlencode({"topic": args.topic})
    keep = None if args.heartbeats else (lambda raw: not _is_heartbeat(raw))
    return _drain(client.stream_lines(f"/events?{query}"), _printer(args), keep)


def _format_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print the JSON lines as they are")
    group.add_argument("--text", action="store_true", help="readable text even when piped")


def register(verb: Verb, admin_arg: AdminArg) -> None:
    p = verb(
        "logs",
        "show recent log lines of the node or of one service",
        cmd_logs,
        description="Print recent log lines the supervisor keeps in RAM (log.ring_lines per "
        "service): a crashed service's last words are still there after its restart. Text on "
        "a terminal, JSON lines when piped or with --json.",
    )
    p.add_argument("service", metavar="SERVICE", nargs="?", help="one service (default: all)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument(
        "--since", type=parse_since, metavar="WHEN", help="only newer lines: 10m, 2h, ISO time"
    )
    p.add_argument(
        "-n", "--lines", type=int, default=200, metavar="N", help="at most the last N (200)"
    )
    _format_args(p)
    admin_arg(p)

    p = verb(
        "tail",
        "follow the node's events (crashes, respawns, quarantines, config)",
        cmd_tail,
        description="Print the node's events as they happen, until Ctrl-C: bus events "
        "(ServiceCrashed, ConfigUpdated, Shutdown, Health) and the supervisor's (respawned, "
        "service_quarantined, operator stops and starts), each with its time. Heartbeats are "
        "hidden unless --heartbeats. Text on a terminal, JSON lines when piped or with --json.",
    )
    admin_arg(p)
    p.add_argument("--topic", default="kernel", metavar="PREFIX", help="topic prefix (kernel)")
    p.add_argument("--heartbeats", action="store_true", help="also show Health ok heartbeats")
    p.set_defaults(follows=True)  # Ctrl-C ends it: exit 0 (kernel.cli.entry)
    _format_args(p)
