"""Kademlia as a pure library (DESIGN §5 svc-dht): no trio, no sockets, no clock of its own.

The same code runs in svc-dht and in ``bench/dht.py``'s 10,000-node simulation, so what the
simulation measures (hops, success, messages) is what the service does.

- ``keyspace``: node and object ids as 256-bit keys, XOR distance, buckets, address blocks;
- ``table``: the routing table (k-buckets, least-recently-seen, ping-before-evict, /24 rule);
- ``lookup``: the iterative, alpha-parallel, hedged lookup as a state machine;
- ``records``: signed provider and peer records and their checks;
- ``store``: the bounded record store;
- ``sweep``: batching provider records by keyspace region.
"""

from .keyspace import bucket_of, key_of, random_key_in, subnet_of, text_of
from .lookup import Lookup
from .records import PeerRecord, ProviderRecord, Rejected, Signer, check
from .store import RecordStore
from .sweep import assign, estimate_size, region_bits, region_middle, regions
from .table import Contact, RoutingTable, Seen

__all__ = [
    "Contact",
    "Lookup",
    "PeerRecord",
    "ProviderRecord",
    "RecordStore",
    "Rejected",
    "RoutingTable",
    "Seen",
    "Signer",
    "assign",
    "bucket_of",
    "check",
    "estimate_size",
    "key_of",
    "random_key_in",
    "region_bits",
    "region_middle",
    "regions",
    "subnet_of",
    "text_of",
]
