"""Peer addresses: ``<node id>@<host>:<port>`` (DESIGN §8), the id the peer must prove."""

from __future__ import annotations

import attrs

from ipc.ids import is_node_id

__all__ = ["BadPeerAddr", "PeerAddr"]


class BadPeerAddr(ValueError):
    """Not ``node:<64 hex>@host:port``; ``str()`` says what is wrong in one line."""


@attrs.frozen
class PeerAddr:
    node_id: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PeerAddr:
        node_id, at, hostport = text.partition("@")
        if not at:
            raise BadPeerAddr(f"{text!r:.120}: a peer address is <node id>@<host>:<port>")
        if not is_node_id(node_id):
            raise BadPeerAddr(f"{node_id!r:.80} is not a node id (node: and 64 lowercase hex)")
        host, colon, port_text = hostport.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # [::1]:9410
        if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BadPeerAddr(f"{hostport!r:.80}: expected <host>:<port> with a port in 1..65535")
        return cls(node_id, host, int(port_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.node_id}@{host}:{self.port}"
