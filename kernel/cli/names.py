"""``ronctl name set|get|ls``: names through the node's gateway (DESIGN.md §8).

- ``set NAME ID [--expect-version N]`` points a name at an object id (a write: it needs a
  token with the ``name`` op, minted through the control socket when none is given) and prints
  ``NAME ID version N``; ``--expect-version`` updates only from that version (0: the name must
  not exist yet), else exit 1 with ``409 version_conflict``;
- ``get NAME`` prints ``ID version N`` (exit 1 with ``404 not_found`` for an unknown name);
- ``ls [PREFIX]`` prints the names starting with PREFIX, one ``NAME ID version`` line each,
  all pages (``--json``: one JSON line per name).

Retries, the gateway URL and tokens work as for ``ronctl put`` (``kernel.cli.data``).
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import Any

from ipc import ids
from ipc.plain import JsonObject
from kernel.cli.common import AdminArg, CliError, add_json_arg, emit
from kernel.cli.data import Verb, common_args, gateway_call
from kernel.cli.tokens import write_token

__all__ = ["register"]

PAGE = 1000


def register(verb: Verb, admin_arg: AdminArg) -> None:
    p = verb("name", "point names at object ids, read and list them", None)
    sub = p.add_subparsers(dest="name_verb", metavar="ACTION", required=True)

    q = sub.add_parser(
        "set",
        help="point NAME at ID",
        description="Point NAME at the object ID (a write: needs a token with the name op). "
        "--expect-version N updates only from version N (0: NAME must not exist yet).",
    )
    q.set_defaults(func=cmd_set)
    q.add_argument("name", metavar="NAME")
    q.add_argument("id", metavar="ID", help="object id, b3:<hex>")
    q.add_argument("--expect-version", type=int, metavar="N", help="only from version N")
    q.add_argument("--token", metavar="T", help="capability token (default: $RON_TOKEN, ...)")
    add_json_arg(q, '{"name", "id", "version"}')
    common_args(q, admin_arg)

    q = sub.add_parser("get", help="the id NAME points at, and its version")
    q.set_defaults(func=cmd_get)
    q.add_argument("name", metavar="NAME")
    add_json_arg(q, '{"name", "id", "version"}')
    common_args(q, admin_arg)

    q = sub.add_parser("ls", help="the names starting with PREFIX, in order")
    q.set_defaults(func=cmd_ls)
    q.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    q.add_argument("--json", action="store_true", help="one JSON line per name")
    common_args(q, admin_arg)


def _call(
    args: argparse.Namespace, method: str, path: str, body: bytes | None = None, token: str = ""
) -> Any:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return gateway_call(args, method, path, body, headers, ok=(200,))[1]


def _path(name: str) -> str:
    return "/names/" + urllib.parse.quote(name, safe="/")


def cmd_set(args: argparse.Namespace) -> int:
    if not ids.is_id(args.id):
        raise CliError(f"{args.id!r} is not an object id (b3: followed by 64 lowercase hex digits)")
    doc: JsonObject = {"id": args.id}
    if args.expect_version is not None:
        doc["expect_version"] = args.expect_version
    token = write_token(args, "name") or ""
    record = _call(args, "PUT", _path(args.name), json.dumps(doc).encode(), token)
    emit(args, record, f"{record['name']} {record['id']} version {record['version']}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    record = _call(args, "GET", _path(args.name))
    emit(args, record, f"{record['id']} version {record['version']}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    after = ""
    while True:
        query = urllib.parse.urlencode({"prefix": args.prefix, "after": after, "max": PAGE})
        page = _call(args, "GET", f"/names?{query}")
        for record in page["names"]:
            if args.json:
                print(json.dumps(record, separators=(",", ":")))
            else:
                print(f"{record['name']} {record['id']} version {record['version']}")
        if not page["more"] or not page["names"]:
            return 0
        after = page["names"][-1]["name"]
