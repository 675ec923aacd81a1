"""``ronctl mail ...``: mailboxes through the node's gateway (DESIGN.md §8).

- ``send MAILBOX FILE [--key K]`` prints the message id once the node holds the message
  durably (a mailbox on another node, ``name@node:<hex>``: once it is in this node's outbox);
- ``recv MAILBOX [--max N] [--visibility S] [--wait S] [--ack]`` prints one JSON line per
  message (``msg_id``, ``receipt``, ``deliveries``, ``body`` in base64, as the gateway gives
  it; ``--raw``: the bodies only); with ``--ack`` each one is acked after it was printed, so
  a reader that dies first sees it again after the visibility timeout;
- ``ack MAILBOX RECEIPT...`` (exit 1 when a receipt is stale), ``dlq MAILBOX``, ``redrive
  MAILBOX``, ``status MAILBOX MSG_ID`` (the delivery receipt of a message sent there);
- ``outbox [--json]`` lists what waits for another node to accept it (the admin plane).

Tokens, the gateway URL and retries work as for ``ronctl put`` (``kernel.cli.data``): a
``mail`` token is minted through the control socket when none is given.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from ipc.plain import JsonObject
from kernel.cli.client import AdminClient
from kernel.cli.common import (
    AdminArg,
    CliError,
    add_json_arg,
    emit,
    resolve_admin_url,
    runtime_dir_of,
)
from kernel.cli.data import Verb, common_args, gateway_call
from kernel.cli.tokens import write_token

__all__ = ["register"]


def register(verb: Verb, admin_arg: AdminArg) -> None:
    p = verb("mail", "send and receive messages (mailboxes)", None)
    sub = p.add_subparsers(dest="mail_verb", metavar="ACTION", required=True)

    def action(name: str, summary: str, func: Any, description: str = "") -> Any:
        q = sub.add_parser(name, help=summary, description=description or summary)
        q.set_defaults(func=func)
        return q

    q = action(
        "send",
        "send FILE ('-' = stdin) as one message, print its id",
        cmd_send,
        "Send FILE as one message to MAILBOX (name, or name@node:<hex> on another node) and "
        "print its id once the node holds it durably. --key K makes the send idempotent: the "
        "same key again within 5 minutes prints the first id and stores nothing.",
    )
    q.add_argument("mailbox", metavar="MAILBOX")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--key", metavar="K", help="Idempotency-Key (1-128 characters)")
    add_json_arg(q, '{"msg_id"}')
    _with_token(q, admin_arg)

    q = action(
        "recv",
        "receive messages, one JSON line each",
        cmd_recv,
        "Receive up to --max visible messages, oldest first. Each is hidden for --visibility "
        "seconds under its receipt; ack it (here with --ack, or `ronctl mail ack`) or it comes "
        "back. Prints one JSON line per message: msg_id, receipt, deliveries, body (base64).",
    )
    q.add_argument("mailbox", metavar="MAILBOX")
    q.add_argument("--max", type=int, default=1, metavar="N", help="messages at most (1-256)")
    q.add_argument("--visibility", type=float, metavar="S", help="seconds hidden (default 30)")
    q.add_argument("--wait", type=float, default=0.0, metavar="S", help="long poll, <= 20 s")
    q.add_argument("--ack", action="store_true", help="ack each message once printed")
    q.add_argument("--raw", action="store_true", help="print the bodies only")
    _with_token(q, admin_arg)

    q = action("ack", "ack deliveries by receipt", cmd_ack)
    add_json_arg(q, '{"acked"}')
    q.add_argument("mailbox", metavar="MAILBOX")
    q.add_argument("receipts", metavar="RECEIPT", nargs="+")
    _with_token(q, admin_arg)

    q = action("dlq", "list a mailbox's dead letters (JSON lines)", cmd_dlq)
    q.add_argument("mailbox", metavar="MAILBOX")
    q.add_argument("--max", type=int, default=100, metavar="N")
    _with_token(q, admin_arg)

    q = action("redrive", "move a mailbox's dead letters back to it", cmd_redrive)
    add_json_arg(q, '{"redriven"}')
    q.add_argument("mailbox", metavar="MAILBOX")
    _with_token(q, admin_arg)

    q = action("status", "where a message sent to MAILBOX is (its delivery receipt)", cmd_status)
    q.add_argument("mailbox", metavar="MAILBOX")
    q.add_argument("msg_id", metavar="MSG_ID")
    _with_token(q, admin_arg)

    q = action("outbox", "messages waiting for another node to accept them", cmd_outbox)
    q.add_argument("--json", action="store_true", help="print the admin plane's JSON")
    admin_arg(q)


def _with_token(p: argparse.ArgumentParser, admin_arg: AdminArg) -> None:
    p.add_argument("--token", metavar="T", help="capability token (default: $RON_TOKEN, ...)")
    common_args(p, admin_arg)


def _path(mailbox: str, suffix: str = "") -> str:
    return "/mb/" + urllib.parse.quote(mailbox, safe="@:") + suffix


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One gateway request with a mail token (``--token``, ``$RON_TOKEN`` or a minted one)."""
    token = write_token(args, "mail")
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return gateway_call(args, method, path, body, {**auth, **(headers or {})})


def cmd_send(args: argparse.Namespace) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    # our own retries (a 503 while the gateway restarts, a reset) must not store it twice: a
    # send without --key gets a key of its own, so a retry is deduplicated by the node
    headers = {
        "Content-Type": "application/octet-stream",
        "Idempotency-Key": args.key if args.key is not None else "ronctl-" + secrets.token_hex(12),
    }
    _status, doc = _call(args, "POST", _path(args.mailbox), data, headers)
    emit(args, doc, doc["msg_id"])
    return 0


def cmd_recv(args: argparse.Namespace) -> int:
    query: JsonObject = {"max": args.max, "wait": args.wait}
    if args.visibility is not None:
        query["visibility"] = args.visibility
    path = _path(args.mailbox, "/receive?" + urllib.parse.urlencode(query))
    args.retry_for = 0.0  # a receive is not idempotent: never sent twice
    _status, doc = _call(args, "POST", path)
    for msg in doc["messages"]:
        if args.raw:
            sys.stdout.buffer.write(base64.b64decode(msg["body"]))
        else:
            print(json.dumps(msg, separators=(",", ":")))
        sys.stdout.flush()
        if args.ack:
            body = json.dumps({"receipts": [msg["receipt"]]}).encode()
            _call(args, "POST", _path(args.mailbox, "/ack"), body, _JSON)
    return 0


_JSON = {"Content-Type": "application/json"}


def cmd_ack(args: argparse.Namespace) -> int:
    body = json.dumps({"receipts": args.receipts}).encode()
    _status, doc = _call(args, "POST", _path(args.mailbox, "/ack"), body, _JSON)
    emit(args, doc, f"acked {doc['acked']}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    _status, doc = _call(args, "GET", _path(args.mailbox, f"/dlq?max={args.max}"))
    for msg in doc["messages"]:
        print(json.dumps(msg, separators=(",", ":")))
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    _status, doc = _call(args, "POST", _path(args.mailbox, "/dlq/redrive"))
    emit(args, doc, f"redriven {doc['redriven']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    msg_id = urllib.parse.quote(args.msg_id, safe="")
    _status, doc = _call(args, "GET", _path(args.mailbox, f"/receipt/{msg_id}"))
    print(json.dumps(doc, separators=(",", ":")))
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    resp = AdminClient(resolve_admin_url(args.admin, runtime_dir_of(args))).get("/outbox")
    doc = resp.json()
    if resp.status != 200:
        raise CliError(f"{resp.status} {doc.get('error')}: {doc.get('detail')}")
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"{doc['depth']} message(s) waiting")
    for entry in doc["entries"]:
        line = f"to {entry['to']}  attempts {entry['attempts']}"
        if entry.get("last_error"):
            line += f"  last error: {entry['last_error']}"
        print(line)
    return 0
