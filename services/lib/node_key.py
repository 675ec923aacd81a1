"""The node's identity key, as a service that signs or proves it (svc-overlay, svc-dht) gets it.

Guarantees: returns the key from ``<data_dir>/keys/`` only when the identity service answered
(``ident``, from ``kernel.identity.wait_identity``) and the key is the one it announces (the
same node id); otherwise the service logs one line (``<event>``, the reason) and exits with
status 2: a service that would speak for a node with the wrong key must not start.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ipc.ids import node_id_of
from ipc.proto.passport import IdentityReply
from kernel import logs
from services.lib.keys import KEYS_DIR, KeyCustodyError, load_identity

__all__ = ["node_key"]


def node_key(data_dir: Path, ident: IdentityReply | None, event: str) -> Ed25519PrivateKey:
    if ident is None:
        _fail(event, "the identity service did not answer")
    try:
        key = load_identity(data_dir / KEYS_DIR)
    except (FileNotFoundError, KeyCustodyError) as exc:
        _fail(event, str(exc))
    if node_id_of(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)) != ident.node_id:
        _fail(event, "the key file is not the identity service's")
    return key


def _fail(event: str, reason: str) -> NoReturn:
    logs.log(event, level="error", reason=reason)
    raise SystemExit(2)
