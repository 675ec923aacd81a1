"""ron-transport: OAP/1 between nodes (and SDK clients) over TLS 1.3, peers known by node id.

``certs`` makes a node's certificate from its identity key; ``tls`` the contexts and the pin
check; ``channel`` frames over a stream with one writer and timeouts; ``endpoints`` dialing and
a listener with explicit limits; ``addr`` peer addresses (``<node id>@host:port``).
"""

from .addr import BadPeerAddr, PeerAddr
from .certs import NodeCertificate, PeerIdentityError, peer_node_id
from .channel import Channel, ChannelClosed, ChannelTimeout, Timeouts
from .endpoints import Connection, DialError, Limits, Listener, dial
from .meter import Meter
from .tls import PinMismatch, client_context, server_context

__all__ = [
    "BadPeerAddr",
    "Channel",
    "ChannelClosed",
    "ChannelTimeout",
    "Connection",
    "DialError",
    "Limits",
    "Listener",
    "Meter",
    "NodeCertificate",
    "PeerAddr",
    "PeerIdentityError",
    "PinMismatch",
    "Timeouts",
    "client_context",
    "dial",
    "peer_node_id",
    "server_context",
]
