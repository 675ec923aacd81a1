"""svc-dht's settings (``[services.settings]``); the bootstrap peers are the node's
``dht.bootstrap`` and ``overlay.peers`` (not settings here)."""

from __future__ import annotations

import attrs

from ipc.plain import AnyField

__all__ = ["DhtSettings"]


def _positive(_inst: object, attr: AnyField, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be > 0")


@attrs.frozen
class DhtSettings:
    """``k`` contacts per bucket and records' replicas; ``alpha`` queries in flight per lookup;
    ``hedge_delay``: seconds before a slow query stops holding its slot; ``request_timeout``:
    seconds one query may take; ``lookup_timeout``: seconds a whole lookup may take (a
    ``findpeer`` that finds nothing in it: ``node_unknown``); ``max_records`` /
    ``per_source``: records held for others, in all and from one node; ``refresh_after``:
    seconds without traffic before a bucket is refreshed; ``watch_interval``: seconds between
    looks at the object store for objects to provide or withdraw; ``max_conns``: connections to
    other nodes kept open for reuse; ``rate`` / ``burst``: requests per second (and bucket size)
    one peer and one IP address may make (over: 429 ``rate_limited`` with ``retry_after``);
    ``save_interval``: seconds between saves of the routing table; ``tls``: as svc-overlay's
    (false only for tests: peers are then not authenticated)."""

    k: int = attrs.field(default=20, validator=_positive)
    alpha: int = attrs.field(default=3, validator=_positive)
    hedge_delay: float = attrs.field(default=0.25, validator=_positive)
    request_timeout: float = attrs.field(default=2.0, validator=_positive)
    lookup_timeout: float = attrs.field(default=10.0, validator=_positive)
    max_records: int = attrs.field(default=1_000_000, validator=_positive)
    per_source: int = attrs.field(default=200_000, validator=_positive)
    refresh_after: float = attrs.field(default=600.0, validator=_positive)
    watch_interval: float = attrs.field(default=0.2, validator=_positive)
    max_conns: int = attrs.field(default=64, validator=_positive)
    rate: float = attrs.field(default=50.0, validator=_positive)
    burst: int = attrs.field(default=100, validator=_positive)
    save_interval: float = attrs.field(default=60.0, validator=_positive)
    tls: bool = True
