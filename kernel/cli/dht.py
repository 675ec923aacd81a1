"""``ronctl dht findprovs|findpeer|provide|table`` and ``ronctl identity new`` (DESIGN §8).

The lookups and announcing go through the control socket to svc-dht's routes
(``services.dht.admin``); ``table`` reads ``GET /dht``. Exit 1 with one line when a lookup
finds nothing (``findprovs``: no provider; ``findpeer``: ``node_unknown``).

``identity new FILE`` writes a fresh Ed25519 identity key (32 raw bytes, 0600, created
exclusively: an existing file is never overwritten) and prints its node id; ``ronctl run
--identity FILE`` then keeps that id across restarts.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from ipc import ids
from kernel.cli.common import AdminArg, CliError, control_client, emit, node_id_arg, object_id_arg

__all__ = ["register"]

Verb = Callable[..., argparse.ArgumentParser]
LOOKUP_WAIT = 35.0  # the control plane gives a lookup route 30 s


def _answer(resp: Any, what: str) -> dict[str, Any]:
    doc = resp.json() if resp.status == 200 else None
    if not isinstance(doc, dict):
        raise CliError(f"{what}: {resp.error_text()}")
    return doc


def cmd_findprovs(args: argparse.Namespace) -> int:
    resp = control_client(args, timeout=LOOKUP_WAIT).get(f"/dht/providers/{args.id}")
    doc = _answer(resp, f"dht findprovs {args.id}")
    providers = doc.get("providers") or []
    emit(args, doc, "\n".join(str(p.get("addr")) for p in providers))
    if not providers:
        if not args.json:
            hint = "" if doc.get("complete", True) else " (some nodes did not answer: retry)"
            raise CliError(f"no provider of {args.id} found{hint}")
        return 1
    return 0


def cmd_findpeer(args: argparse.Namespace) -> int:
    resp = control_client(args, timeout=LOOKUP_WAIT).get(f"/dht/peers/{args.node_id}")
    doc = _answer(resp, f"dht findpeer {args.node_id}")
    emit(args, doc, str(doc.get("addr")))
    return 0


def cmd_provide(args: argparse.Namespace) -> int:
    resp = control_client(args, timeout=LOOKUP_WAIT).post(f"/dht/provide/{args.id}")
    doc = _answer(resp, f"dht provide {args.id}")
    emit(args, doc, f"{args.id}: its record is on {doc.get('nodes', 0)} node(s)")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    doc = _answer(control_client(args).get("/dht"), "dht table")
    if args.json:
        emit(args, doc, "")
        return 0
    last = float(doc.get("last_refresh") or 0)
    ago = f"{time.time() - last:.0f}s ago" if last else "not yet"
    print(f"node {doc.get('node_id')}")
    print(
        f"contacts {doc.get('contacts')}  records {doc.get('records')} "
        f"(providers {doc.get('provider_records')}, peers {doc.get('peer_records')})  "
        f"providing {doc.get('providing')}  last refresh {ago}"
    )
    print(f"lookups/min {doc.get('lookups_per_minute')}  hops p95 {doc.get('hops_p95')}")
    for bucket, count in doc.get("buckets") or []:
        print(f"  bucket {bucket:>3}  {count} contact(s)")
    return 0


def cmd_identity_new(args: argparse.Namespace) -> int:
    # imported here: ``ronctl --help`` does not pay for cryptography
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise CliError(f"{args.file} exists; an identity key file is never overwritten") from None
    except OSError as exc:
        raise CliError(f"cannot create {args.file}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes_raw())
        out.flush()
        os.fsync(out.fileno())
    node_id = ids.node_id_of(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    emit(args, {"node_id": node_id, "file": os.path.abspath(args.file)}, node_id)
    return 0


def register(verb: Verb, admin_arg: AdminArg) -> None:
    p = verb("dht", "the DHT: find providers and nodes, announce, the routing table", None)
    sub = p.add_subparsers(dest="dht_verb", metavar="ACTION", required=True)
    q = sub.add_parser(
        "findprovs",
        help="the nodes that provide an object",
        description="The addresses of the nodes the DHT says hold an object, one a line "
        '(--json: {"providers":[{"node_id","addr"}],"hops":N}). Exit 1 if none.',
    )
    q.add_argument("id", type=object_id_arg, metavar="ID", help="object id, b3:<hex>")
    q.set_defaults(func=cmd_findprovs)
    q = sub.add_parser(
        "findpeer",
        help="a node's address",
        description='The address of a node (--json: {"node_id","addr","hops"}). Exit 1 if '
        "the DHT does not find it within dht.lookup_timeout.",
    )
    q.add_argument("node_id", type=node_id_arg, metavar="NODE_ID", help="node id, node:<hex>")
    q.set_defaults(func=cmd_findpeer)
    q = sub.add_parser(
        "provide",
        help="announce a stored object now",
        description="Put this node's provider record of a stored object on the nodes nearest "
        "its id now (the node also does it by itself for everything it stores).",
    )
    q.add_argument("id", type=object_id_arg, metavar="ID", help="object id, b3:<hex>")
    q.set_defaults(func=cmd_provide)
    q = sub.add_parser(
        "table",
        help="contacts per bucket, records held, last refresh",
        description="The routing table summary (the JSON of GET /dht with --json).",
    )
    q.set_defaults(func=cmd_table)
    for parser in sub.choices.values():
        parser.add_argument("--json", action="store_true", help="print JSON")
        admin_arg(parser)

    p = verb("identity", "identity key files: identity new FILE", None)
    sub = p.add_subparsers(dest="identity_verb", metavar="ACTION", required=True)
    q = sub.add_parser(
        "new",
        help="write a fresh identity key file",
        description="Write a fresh Ed25519 identity key (0600; never overwrites) and print its "
        "node id. `ronctl run PROFILE --identity FILE` keeps that id across restarts.",
    )
    q.add_argument("file", metavar="FILE", help="where to write the key")
    q.add_argument("--json", action="store_true", help='print {"node_id","file"}')
    q.set_defaults(func=cmd_identity_new)
