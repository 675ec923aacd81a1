"""Write ``specs/proto_vectors.json``: the storage, index, mailbox, admin relay and DHT peer
protocols pinned byte for byte (the relay: ``specs/admin-relay.md``; the DHT: ``specs/dht.md``).

Each valid vector is a request or reply as plain fields and the exact msgpack payload it travels
as (hex); each invalid one is a payload a service must refuse, with the reason. The payloads are
written here by hand with msgpack, not by our codec, so the codec is checked against them:

    python specs/tools/make_proto_vectors.py
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack

ID_A = "b3:" + "ab" * 32
ID_B = "b3:" + "0f" * 32
TMP = "1f2e-" + "0" * 32
NODE_A = "node:" + "cd" * 32
PUB = bytes(range(32))  # a raw Ed25519 public key's shape
KEY32 = bytes.fromhex("ab" * 32)  # an object id's 32 raw bytes
SIG = bytes(64)  # a signature's shape (records are checked by svc-dht, not by the codec)


def pack(fields: dict[str, object]) -> str:
    return msgpack.packb(fields, use_bin_type=True).hex()


def _shown(value: object) -> object:
    """Bytes as hex, also inside a list (the JSON has no bytes)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def request(service: str, op: str, fields: dict[str, object]) -> dict[str, object]:
    wire = {"op": op, **{k: v for k, v in fields.items() if v is not None}}
    shown = {k: _shown(v) for k, v in fields.items()}
    return {"service": service, "op": op, "fields": shown, "payload": pack(wire)}


def reply(service: str, op: str, fields: dict[str, object]) -> dict[str, object]:
    shown = {k: _shown(v) for k, v in fields.items()}
    return {"service": service, "op": op, "fields": shown, "payload": pack(fields)}


def invalid(service: str, why: str, fields: object, reason: str = "schema_invalid") -> dict:
    raw = fields if isinstance(fields, bytes) else msgpack.packb(fields, use_bin_type=True)
    return {"service": service, "why": why, "payload": raw.hex(), "reason": reason}


VECTORS = {
    "about": "specs/storage-protocol.md pinned: requests and replies as msgpack payloads (hex). "
    "Bytes fields are shown as hex in 'fields'. Regenerate: specs/tools/make_proto_vectors.py",
    "app_proto_id": {
        "svc-storage": 0x0101,
        "svc-index": 0x0102,
        "svc-mailbox": 0x0104,
        "admin relay": 0x00A0,
        "svc-dht": 0x0301,
    },
    "requests": [
        request("svc-dht", "ping", {}),
        request("svc-dht", "find_node", {"target": NODE_A}),
        request("svc-dht", "find_providers", {"id": ID_A}),
        request("svc-dht", "get_peer", {"node_id": NODE_A}),
        request(
            "svc-dht",
            "add_providers",
            {
                "public": PUB,
                "addrs": ["127.0.0.1:9410"],
                "expires": 1_800_000_000,
                "keys": [KEY32],
                "sigs": [SIG],
            },
        ),
        request("svc-storage", "commit", {"tmp": TMP, "id": ID_A, "size": 70000}),
        request("svc-storage", "put", {"data": b"hello"}),
        request("svc-storage", "stat", {"id": ID_A}),
        request("svc-storage", "quarantine", {"id": ID_B}),
        request("svc-storage", "usage", {}),
        request("svc-storage", "list", {"after": "", "max": 100}),
        request("svc-storage", "list", {"after": ID_A, "max": 2}),
        request("svc-storage", "list", {"after": "", "max": 10, "chunks": True}),
        request("svc-storage", "touch", {"id": ID_A}),
        request("svc-storage", "pin", {"id": ID_A}),
        request("svc-storage", "unpin", {"id": ID_B}),
        request("svc-storage", "pins", {"after": "", "max": 1000}),
        request("svc-storage", "gc", {"grace": 3600.0, "dry_run": False}),
        request("svc-storage", "gc", {"grace": 60.0, "dry_run": True}),
        request("svc-index", "get", {"name": "site/index.html"}),
        request("svc-index", "put", {"name": "a", "id": ID_A, "expect_version": None}),
        request("svc-index", "put", {"name": "a", "id": ID_B, "expect_version": 0}),
        request("svc-index", "list", {"prefix": "site/", "after": "", "max": 100}),
        request("svc-index", "put", {"name": "site/a.png", "id": ID_A, "type": "image/png"}),
        request("svc-index", "set_type", {"id": ID_A, "type": "text/html; charset=utf-8"}),
        request(
            "svc-mailbox",
            "receive",
            {"mailbox": "jobs", "max": 10, "visibility": None, "wait": 1.5},
        ),
        request("svc-mailbox", "ack", {"mailbox": "jobs", "receipts": ["1.1.00ff00ff00ff00ff"]}),
        request(
            "admin relay",
            "call",
            {
                "route": "/store/pins/{id}",
                "method": "PUT",
                "params": {"id": ID_A},
                "query": {"max": ["10"]},
                "body": b"",
            },
        ),
        request(
            "admin relay",
            "call",
            {"route": "/store/gc", "method": "POST", "params": {}, "query": {}, "body": b"{}"},
        ),
    ],
    "replies": [
        reply("svc-dht", "ping", {"node_id": NODE_A}),
        reply("svc-dht", "find_node", {"contacts": [NODE_A + "@127.0.0.1:9410"]}),
        reply("svc-dht", "add_providers", {"stored": 1, "refused": 0}),
        reply("svc-storage", "commit", {"id": ID_A, "size": 70000, "created": True}),
        reply("svc-storage", "put", {"id": ID_A, "size": 5, "created": False}),
        reply("svc-storage", "stat", {"id": ID_A, "size": 0}),
        reply("svc-storage", "quarantine", {"quarantined": False}),
        reply(
            "svc-storage",
            "usage",
            {"bytes": 1, "objects": 1, "max_bytes": 2, "max_objects": 3, "max_object_size": 4},
        ),
        reply(
            "svc-storage",
            "list",
            {
                "objects": [
                    {"id": ID_A, "size": 5, "mtime": 1764590400.25, "pinned": True, "kind": "raw"},
                    {
                        "id": ID_B,
                        "size": 3 << 20,
                        "mtime": 1764590401.5,
                        "pinned": False,
                        "kind": "manifest",
                    },
                ],
                "more": True,
            },
        ),
        reply("svc-storage", "touch", {"id": ID_A, "present": False}),
        reply("svc-storage", "pin", {"id": ID_A, "pinned": True, "changed": True}),
        reply("svc-storage", "unpin", {"id": ID_B, "pinned": False, "changed": False}),
        reply("svc-storage", "pins", {"ids": [ID_A, ID_B], "more": False}),
        reply(
            "svc-storage",
            "gc",
            {
                "removed": 3,
                "freed_bytes": 70000,
                "kept_pinned": 1,
                "kept_named": 2,
                "kept_young": 4,
                "dry_run": False,
                "seconds": 0.125,
                "kept_reached": 5,
                "removed_chunks": 2,
            },
        ),
        reply("svc-index", "get", {"name": "a", "id": ID_A, "version": 1}),
        reply("svc-index", "put", {"name": "a", "id": ID_B, "version": 7}),
        reply("svc-index", "get", {"name": "a.png", "id": ID_A, "version": 2, "type": "image/png"}),
        reply(
            "admin relay",
            "call",
            {"status": 200, "body": b'{"peers":[]}', "audit": b"", "retry_after": 0},
        ),
    ],
    "invalid_requests": [
        invalid("svc-storage", "not msgpack", b"\xc1"),
        invalid("svc-storage", "not a map", [1, 2]),
        invalid("svc-storage", "no op", {"id": ID_A}),
        invalid("svc-storage", "unknown op", {"op": "zap"}),
        invalid("svc-storage", "unknown field", {"op": "stat", "id": ID_A, "x": 1}),
        invalid("svc-storage", "missing field", {"op": "commit", "tmp": TMP, "id": ID_A}),
        invalid(
            "svc-storage", "bool for int", {"op": "commit", "tmp": TMP, "id": ID_A, "size": True}
        ),
        invalid(
            "svc-storage", "negative size", {"op": "commit", "tmp": TMP, "id": ID_A, "size": -1}
        ),
        invalid("svc-storage", "str for bin", {"op": "put", "data": "hello"}),
        invalid("svc-storage", "bad id", {"op": "stat", "id": "b3:XYZ"}),
        invalid("svc-storage", "int for str", {"op": "stat", "id": 3}),
        invalid("svc-storage", "list max 1001", {"op": "list", "max": 1001}),
        invalid("svc-storage", "list after a non-id", {"op": "list", "after": "site/a"}),
        invalid("svc-storage", "list chunks not bool", {"op": "list", "chunks": 1}),
        invalid("svc-storage", "pin bad id", {"op": "pin", "id": "ab" * 32}),
        invalid("svc-storage", "gc grace under 60 s", {"op": "gc", "grace": 5.0}),
        invalid("svc-storage", "gc without grace", {"op": "gc", "dry_run": True}),
        invalid("svc-storage", "gc dry_run not bool", {"op": "gc", "grace": 60.0, "dry_run": 1}),
        invalid("svc-index", "bad id", {"op": "put", "name": "a", "id": "b3:nope"}),
        invalid(
            "svc-index",
            "negative version",
            {"op": "put", "name": "a", "id": ID_A, "expect_version": -1},
        ),
        invalid(
            "svc-index",
            "float version",
            {"op": "put", "name": "a", "id": ID_A, "expect_version": 1.0},
        ),
        invalid("svc-index", "storage op", {"op": "usage"}),
        invalid("svc-index", "list max 0", {"op": "list", "max": 0}),
        invalid("svc-mailbox", "empty send", {"op": "send", "mailbox": "q", "messages": []}),
        invalid("svc-mailbox", "wait over 20 s", {"op": "receive", "mailbox": "q", "wait": 21.0}),
        invalid(
            "admin relay",
            "a query value that is a string, not a list of them",
            {"op": "call", "route": "/peers", "method": "GET", "query": {"max": "10"}},
        ),
        invalid("admin relay", "no route", {"op": "call", "method": "GET"}),
        invalid("svc-dht", "find_node of no id", {"op": "find_node", "target": "x"}),
        invalid(
            "svc-dht",
            "an add_providers batch over 2048 records",
            {
                "op": "add_providers",
                "public": PUB,
                "addrs": [],
                "expires": 1,
                "keys": [KEY32] * 2049,
                "sigs": [SIG] * 2049,
            },
        ),
        invalid(
            "svc-dht",
            "a peer record without its signature",
            {"op": "put_peer", "record": {"public": PUB, "addrs": [], "seq": 1, "expires": 2}},
        ),
    ],
}


def main() -> None:
    path = Path(__file__).resolve().parents[1] / "proto_vectors.json"
    path.write_text(json.dumps(VECTORS, indent=2) + "\n", "utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
