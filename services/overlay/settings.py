"""svc-overlay's settings (``[services.settings]``): every transport limit is explicit here."""

from __future__ import annotations

import attrs

from ipc.plain import AnyField
from ipc.transport import Limits, Timeouts

__all__ = ["OverlaySettings"]


def _positive(_inst: object, attr: AnyField, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be > 0")


def _non_negative(_inst: object, attr: AnyField, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attr.name} must be >= 0 (0 = off)")


@attrs.frozen
class OverlaySettings:
    """The peers to fetch from are the node's ``overlay.peers`` (not a setting here);
    ``tls``: false only for tests and local development (peers are then not authenticated);
    ``max_conns`` / ``per_peer``: connections served at once, in all and from one peer;
    ``read_timeout`` / ``write_timeout`` / ``idle_timeout`` / ``handshake_timeout``: seconds;
    ``hedge_delay``: seconds before a fetch also asks the next provider; ``fanout``: providers
    asked at once by one fetch (every peer is asked in turn before a 404); ``fetch_timeout``:
    seconds a fetch may take, plus the time its bytes need at ``min_rate`` bytes/s (a progress
    deadline: large objects are never cut for their size); ``ban_window``: seconds in which 3
    integrity failures from one peer ban it, and how long the ban lasts;
    ``max_object_size``: the largest object fetched or served (bytes); ``rate_conn`` /
    ``rate_peer`` / ``rate_global``: bytes/s sent on one connection, to one peer, in all
    (token buckets; 0 = off); ``send_budget`` / ``send_budget_per_source``: bytes held for
    sending at once, in all and per source IP or node id (a reader that does not read holds
    at most its share until ``write_timeout`` cuts it); ``per_ip``: established connections
    from one IP address; ``max_handshakes`` / ``handshakes_per_ip``: connections still in their
    TLS handshake, in all and from one IP (one more is closed at once: idle sockets cannot
    crowd out peers); ``mail_from``: whose outboxes may forward mail without a token:
    ``nodes`` (any node that proves its id over TLS: mail to ``name@node:<hex>`` works between
    nodes that only found each other through the DHT; each message is stamped with the sending
    node as its origin and the mailboxes' quotas apply) or ``peers`` (listed peers only)."""

    tls: bool = True
    max_conns: int = attrs.field(default=1024, validator=_positive)
    per_peer: int = attrs.field(default=8, validator=_positive)
    read_timeout: float = attrs.field(default=5.0, validator=_positive)
    write_timeout: float = attrs.field(default=5.0, validator=_positive)
    idle_timeout: float = attrs.field(default=60.0, validator=_positive)
    handshake_timeout: float = attrs.field(default=5.0, validator=_positive)
    hedge_delay: float = attrs.field(default=0.25, validator=_positive)
    fanout: int = attrs.field(default=2, validator=_positive)
    fetch_timeout: float = attrs.field(default=30.0, validator=_positive)
    min_rate: float = attrs.field(default=1_048_576.0, validator=_positive)
    ban_window: float = attrs.field(default=600.0, validator=_positive)
    max_object_size: int = attrs.field(default=1 << 30, validator=_positive)
    inflight_per_conn: int = attrs.field(default=16, validator=_positive)
    rate_conn: float = attrs.field(default=0.0, validator=_non_negative)
    rate_peer: float = attrs.field(default=0.0, validator=_non_negative)
    rate_global: float = attrs.field(default=0.0, validator=_non_negative)
    send_budget: int = attrs.field(default=64 << 20, validator=_positive)
    send_budget_per_source: int = attrs.field(default=16 << 20, validator=_positive)
    per_ip: int = attrs.field(default=64, validator=_positive)
    max_handshakes: int = attrs.field(default=256, validator=_positive)
    handshakes_per_ip: int = attrs.field(default=16, validator=_positive)
    mail_from: str = attrs.field(
        default="nodes", validator=attrs.validators.in_(("nodes", "peers"))
    )

    def limits(self) -> Limits:
        return Limits(
            max_conns=self.max_conns,
            per_peer=self.per_peer,
            per_ip=self.per_ip,
            max_handshakes=self.max_handshakes,
            handshakes_per_ip=self.handshakes_per_ip,
            handshake_timeout=self.handshake_timeout,
            timeouts=Timeouts(self.read_timeout, self.write_timeout, self.idle_timeout),
            rate_conn=self.rate_conn,
            rate_peer=self.rate_peer,
            rate_global=self.rate_global,
        )
