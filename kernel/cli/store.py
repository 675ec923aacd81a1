"""``ronctl ls``, ``ronctl pin add|rm|ls ID`` and ``ronctl gc``: the store's housekeeping, through
the control socket (routes svc-storage declares: ``services.storage.admin``).

- ``ls [--after ID] [-n N] [--all] [--json]``: objects in id order with size, age and pin;
  one page of N (100) unless ``--all``, and a hint on stderr to get the next one;
- ``pin add ID`` / ``pin rm ID``: a pinned object survives every GC (only a stored object can
  be pinned); ``pin ls``: every pinned id;
- ``gc [--grace 1h] [--dry-run]``: remove the objects that are not pinned, that no name points
  at and that were not written (or named) within the grace window; prints what it removed and
  what it kept, and why.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from ipc.plain import JsonObject
from kernel.cli.common import (
    AdminArg,
    CliError,
    control_client,
    human_size,
    object_id_arg,
)
from kernel.cli.tokens import parse_duration

__all__ = ["register"]

Verb = Callable[..., argparse.ArgumentParser]
PAGE = 100
FULL_PAGE = 1000
DEFAULT_GRACE = 3600.0  # services.storage.admin.DEFAULT_GRACE (not imported: fast --help)
GC_WAIT = 660.0  # the control plane gives a GC 600 s


def _page_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= FULL_PAGE:
        raise argparse.ArgumentTypeError(f"expected a page size of 1-{FULL_PAGE}, got {text!r}")
    return int(text)


def _json_answer(resp: Any, what: str) -> JsonObject:
    doc = resp.json() if resp.status == 200 else None
    if not isinstance(doc, dict):
        raise CliError(f"{what} failed ({resp.error_text()})")
    return doc


def _pages(
    args: argparse.Namespace, path: str, key: str, size: int, extra: dict[str, int] | None = None
) -> Iterator[Any]:
    """Every row of a paged listing (``after`` = the last row's id), page by page."""
    client = control_client(args)
    after = getattr(args, "after", None) or ""
    while True:
        query = urllib.parse.urlencode({"after": after, "max": size, **(extra or {})})
        doc = _json_answer(client.get(f"{path}?{query}"), f"listing {path}")
        rows = doc.get(key) or []
        yield from rows
        if not doc.get("more") or not rows:
            return
        last = rows[-1]
        after = last["id"] if isinstance(last, dict) else last


def age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago, at a glance."""
    seconds = max(0.0, seconds)
    for unit, width in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= width:
            return f"{seconds // width:.0f}{unit}"
    return f"{seconds:.0f}s"


def cmd_ls(args: argparse.Namespace) -> int:
    extra = {"chunks": 1} if args.chunks else {}
    if args.all:
        rows = list(_pages(args, "/store/objects", "objects", FULL_PAGE, extra))
        more = False
    else:
        query = urllib.parse.urlencode({"after": args.after or "", "max": args.max, **extra})
        doc = _json_answer(control_client(args).get(f"/store/objects?{query}"), "ls")
        rows, more = doc.get("objects") or [], bool(doc.get("more"))
    if args.json:  # one object, as every --json (the next page: "after")
        after = rows[-1]["id"] if more and rows else None
        print(json.dumps({"objects": rows, "more": more, "after": after}, sort_keys=True))
        return 0
    now = time.time()
    for row in rows:
        pinned = "  pinned" if row.get("pinned") else ""
        kind = {"manifest": "  chunked", "chunk": "  (chunk)"}.get(row.get("kind", ""), "")
        size_text = human_size(row["size"]).rjust(10)
        print(f"{row['id']}  {size_text}  {age(now - row['mtime']).rjust(4)}{pinned}{kind}")
    if more and rows:
        print(f"more: ronctl ls --after {rows[-1]['id']}", file=sys.stderr)
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    if args.pin_verb == "ls":
        ids = list(_pages(args, "/store/pins", "ids", FULL_PAGE))
        if args.json:
            print(json.dumps({"ids": ids}))
        for obj_id in [] if args.json else ids:
            print(obj_id)
        return 0
    method = "PUT" if args.pin_verb == "add" else "DELETE"
    resp = control_client(args).request(method, f"/store/pins/{args.id}")
    if resp.status == 404:
        raise CliError(f"{args.id} is not stored on this node (put it first: ronctl put FILE)")
    doc = _json_answer(resp, f"pin {args.pin_verb}")
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    elif args.pin_verb == "add":
        print(f"pinned {args.id}" if doc.get("changed") else f"{args.id} was already pinned")
    else:
        print(f"unpinned {args.id}" if doc.get("changed") else f"{args.id} was not pinned")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    body = {"grace": args.grace, "dry_run": args.dry_run}
    resp = control_client(args, timeout=GC_WAIT).post("/store/gc", body)
    report = _json_answer(resp, "gc")
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    verb = "would remove" if report.get("dry_run") else "removed"
    chunks = report.get("removed_chunks", 0)
    print(
        f"{verb} {report['removed']} objects ({human_size(report['freed_bytes'])}"
        f"{f', {chunks} of them chunks' if chunks else ''}) in "
        f"{report['seconds']:g} s; kept {report['kept_pinned']} pinned, {report['kept_named']} "
        f"named, {report['kept_young']} written or named within {age(args.grace)}, "
        f"{report.get('kept_reached', 0)} chunks of kept objects"
    )
    return 0


def register(verb: Verb, admin_arg: AdminArg) -> None:
    p = verb(
        "ls",
        "list the stored objects: id, size, age, pinned",
        cmd_ls,
        description="List the node's stored objects in id order: id, size, age (since it was "
        "last written or named) and whether it is pinned. An object over 1 MiB is listed once, "
        "with its whole size, marked chunked (its chunks only with --chunks). One page unless "
        "--all.",
    )
    p.add_argument("--after", type=object_id_arg, metavar="ID", help="start after this id")
    p.add_argument(
        "-n",
        "--max",
        type=_page_size,
        default=PAGE,
        metavar="N",
        help=f"objects per page, 1-{FULL_PAGE} ({PAGE})",
    )
    p.add_argument("--all", action="store_true", help="every object, all pages")
    p.add_argument(
        "--chunks",
        action="store_true",
        help="also the chunks of objects over 1 MiB (hidden otherwise: a chunked object is "
        "listed once, with its whole size)",
    )
    p.add_argument("--json", action="store_true", help="one JSON line per object")
    admin_arg(p)

    p = verb("pin", "keep objects through every GC: pin add|rm ID, pin ls", None)
    sub = p.add_subparsers(dest="pin_verb", metavar="ACTION", required=True)
    for action, summary in (("add", "pin a stored object"), ("rm", "unpin an object")):
        q = sub.add_parser(action, help=summary, description=f"{summary[0].upper()}{summary[1:]}.")
        q.add_argument("id", type=object_id_arg, metavar="ID", help="object id, b3:<hex>")
        q.add_argument("--json", action="store_true", help='print {"id","pinned","changed"}')
        q.set_defaults(func=cmd_pin)
        admin_arg(q)
    q = sub.add_parser("ls", help="every pinned id", description="Every pinned id, in order.")
    q.add_argument("--json", action="store_true", help="one JSON line per pin")
    q.set_defaults(func=cmd_pin)
    admin_arg(q)

    p = verb(
        "gc",
        "remove objects that are unpinned, unnamed and older than the grace window",
        cmd_gc,
        description="Remove every object that is not pinned, that no name points at, and that "
        "was not written or named within the grace window. Safe while the node serves: an "
        "object written or named during the GC survives it.",
    )
    p.add_argument(
        "--grace",
        type=parse_duration,
        default=DEFAULT_GRACE,
        metavar="DUR",
        help="keep what was written or named this recently: 10m, 1h, 7d (1h; at least 60s)",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would go; remove nothing")
    p.add_argument("--json", action="store_true", help="print the GC's report as JSON")
    admin_arg(p)
