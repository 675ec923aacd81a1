"""``ronctl`` verbs for identity, tokens and the audit log (DESIGN.md §8): ``id``,
``token mint|attenuate|inspect|revoke|rotate``, ``audit verify``. How the write verbs get
their token (``write_token``) is ``kernel.cli.tokens``: light, so they do not import ``ipc.caps``.

Minting, revoking and rotating go through the control socket (the node's user only);
``attenuate`` and ``inspect`` are offline: anyone holding a token may narrow or read it, no key
needed. A token is printed on stdout only by ``mint`` and ``attenuate`` (that is their job) and
never appears on stderr.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from ipc import caps
from kernel.cli.common import (
    AdminArg,
    CliError,
    add_json_arg,
    admin_client,
    control_client,
    emit,
)
from kernel.cli.tokens import TOKEN_ENV, parse_duration, write_token

__all__ = ["TOKEN_ENV", "parse_duration", "register", "write_token"]

Verb = Callable[..., argparse.ArgumentParser]


def _ops(text: str) -> tuple[str, ...]:
    ops = tuple(op for op in text.split(",") if op)
    unknown = [op for op in ops if op not in caps.OPS]
    if unknown or not ops:
        raise argparse.ArgumentTypeError(f"--ops takes a comma list of {','.join(caps.OPS)}")
    return ops


def _size(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {text!r}")
    return int(text)


def _decode(text: str) -> caps.Token:
    try:
        return caps.Token.decode(text.strip())
    except caps.CapError as exc:
        raise CliError(f"not a valid token: {exc}") from None


def _answer(resp: object, what: str) -> dict:
    from kernel.cli.client import Response

    assert isinstance(resp, Response)
    if resp.status != 200:
        raise CliError(f"{what} failed ({resp.error_text()})")
    body = resp.json()
    if not isinstance(body, dict):
        raise CliError(f"{what}: unexpected answer from the node")
    return body


def cmd_id(args: argparse.Namespace) -> int:
    resp = admin_client(args).get("/version")
    info = _answer(resp, "reading /version")
    node_id = info.get("node_id")
    if not isinstance(node_id, str):
        raise CliError("the node has no identity (it runs no svc-passport)")
    overlay = (info.get("urls") or {}).get("overlay")
    addr = f"{node_id}@{overlay.split('://', 1)[-1]}" if isinstance(overlay, str) else None
    if args.json:
        print(json.dumps({"node_id": node_id, "addr": addr}))
    else:
        print(node_id)
        if addr:
            print(addr)
    return 0


def cmd_mint(args: argparse.Namespace) -> int:
    doc: dict[str, object] = {"ops": list(args.ops or caps.OPS), "ttl": args.ttl}
    if args.prefix is not None:
        doc["prefix"] = args.prefix
    if args.max_size is not None:
        doc["max_size"] = args.max_size
    minted = _answer(control_client(args).post("/token/mint", doc), "token mint")
    emit(args, minted, minted["token"])
    return 0


def cmd_attenuate(args: argparse.Namespace) -> int:
    token = _decode(args.token)
    narrower: list[caps.Caveat] = []
    if args.ttl is not None:
        narrower.append(caps.Expires(int(time.time() + args.ttl)))
    if args.ops is not None:
        narrower.append(caps.Ops(args.ops))
    if args.prefix is not None:
        narrower.append(caps.Prefix(args.prefix))
    if args.max_size is not None:
        narrower.append(caps.MaxSize(args.max_size))
    if not narrower:
        raise CliError("say how to narrow it: --ttl, --ops, --prefix or --max-size", code=2)
    try:
        narrowed = caps.attenuate(token, *narrower).encode()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    emit(args, {"token": narrowed}, narrowed)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    print(json.dumps(_decode(args.token).inspect(), sort_keys=True))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    token_id = args.id
    if token_id.startswith(caps.PREFIX):
        token_id = _decode(token_id).id.hex()  # a whole token: revoke its id
    body = _answer(control_client(args).post("/token/revoke", {"id": token_id}), "revoke")
    emit(
        args, body, f"revoked {body['id']}" + (" (already revoked)" if body.get("already") else "")
    )
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    body = _answer(control_client(args).post("/token/rotate"), "rotate")
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(body["previous_until"]))
    emit(args, body, f"active key {body['kid']}; {body['previous']} still verifies until {until}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    body = _answer(control_client(args).get("/audit/verify"), "audit verify")
    if body.get("ok"):
        emit(args, body, f"audit log intact: {body.get('records')} records")
        return 0
    if args.json:
        emit(args, body, "")
        return 1
    raise CliError(f"audit log broken at record {body.get('first_bad')}: {body.get('reason')}")


def register(verb: Verb, admin_arg: AdminArg) -> None:
    """Add ``id``, ``token ...`` and ``audit ...`` to ``ronctl``'s parser."""
    p = verb(
        "id",
        "print the node's id (and its peer address)",
        cmd_id,
        description="Print the node id (node:<hex>), then its peer ADDR (<node id>@host:port) "
        "when it runs an overlay.",
    )
    p.add_argument("--json", action="store_true", help='print {"node_id", "addr"}')
    admin_arg(p)

    p = verb("token", "mint, narrow, inspect or revoke capability tokens", None)
    sub = p.add_subparsers(dest="token_verb", metavar="ACTION", required=True)

    def action(
        name: str,
        summary: str,
        description: str,
        func: Callable[[argparse.Namespace], int],
        *positional: str,
    ) -> argparse.ArgumentParser:
        a = sub.add_parser(name, help=summary, description=description)
        for arg in positional:
            a.add_argument(arg.lower(), metavar=arg)
        admin_arg(a)  # every verb takes them; the offline ones need no node
        if func is not cmd_inspect:  # inspect prints JSON already
            add_json_arg(a)
        a.set_defaults(func=func)
        return a

    def caveats(a: argparse.ArgumentParser, ttl_help: str, **ttl: Any) -> None:
        a.add_argument("--ops", type=_ops, help=f"only these ops ({','.join(caps.OPS)})")
        a.add_argument("--prefix", help="only names under this prefix")
        a.add_argument("--ttl", type=parse_duration, help=ttl_help, **ttl)
        a.add_argument("--max-size", type=_size, metavar="N", help="only bodies of at most N bytes")

    m = action(
        "mint",
        "mint a token (node's user only)",
        "Mint a capability token through the control socket and print it. "
        "Default --ops: every write op.",
        cmd_mint,
    )
    caveats(m, "lifetime, e.g. 10m, 1h (1h)", default=3600.0)
    a = action(
        "attenuate",
        "narrow a token offline",
        "Append caveats to TOKEN (no key needed) and print the narrower token.",
        cmd_attenuate,
        "TOKEN",
    )
    caveats(a, "expire this soon (or sooner)")
    action(
        "inspect",
        "show a token's id, kid and caveats",
        'Print {"id","kid","caveats"} as JSON (never the signature).',
        cmd_inspect,
        "TOKEN",
    )
    r = action(
        "revoke",
        "revoke a token by id (node's user only)",
        "Revoke the token whose id `token inspect` shows (or pass the token).",
        cmd_revoke,
    )
    r.add_argument("id", metavar="TOKEN_ID")
    action(
        "rotate",
        "rotate the root key now (node's user only)",
        "Make a new root key active now; tokens of the previous one keep verifying "
        "for auth.rotate_overlap.",
        cmd_rotate,
    )

    p = verb("audit", "check the node's audit log", None)
    sub = p.add_subparsers(dest="audit_verb", metavar="ACTION", required=True)
    v = sub.add_parser(
        "verify",
        help="exit 0 iff the audit chain is intact",
        description="Check every record of the signed hash chain; exit 1 naming the first bad one.",
    )
    admin_arg(v)
    add_json_arg(v, '{"ok", "records", "first_bad", "reason"}')
    v.set_defaults(func=cmd_audit_verify)
