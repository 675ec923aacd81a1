"""svc-gateway's settings (``[services.settings]``), checked when the node's config loads."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ipc.plain import AnyField, Json
from kernel.config.services import structure_settings

__all__ = ["GatewaySettings", "parse_settings"]


def _positive(_inst: object, attr: AnyField, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be > 0, got {value}")


# A stored page may show itself and what it links on this node (images, styles, fonts, media),
# and nothing else: no script runs (a sandbox without allow-scripts gives it an opaque origin, so
# no cookie of the gateway either), no form posts, no plugin, and no other page may frame it.
HTML_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "img-src 'self' data:; style-src 'self' 'unsafe-inline'; font-src 'self'; "
    "media-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _header_safe(_inst: object, attr: AnyField, value: str) -> None:
    if any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in value):
        raise ValueError(f"{attr.name} must be printable ASCII (it is sent as a header)")


def _non_negative(_inst: object, attr: AnyField, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attr.name} must be >= 0, got {value}")


@attrs.frozen
class GatewaySettings:
    """svc-gateway's ``[[services]] settings`` table (specs/config.md); defaults are hardening.

    ``timeout``: seconds for a request's work and each wait on the client (keep-alive, a body
    chunk); ``max_inflight``: requests served at once (more: 429 at once); ``rate``/``burst``: a
    token bucket over all requests, ``rate = 0`` turns it off; ``body_cap``: the largest
    body read whole (the JSON routes: names, mail); ``max_object_size``: the largest object a
    ``PUT /o`` takes, with Content-Length or chunked (both stream); ``html_csp``: the
    ``Content-Security-Policy`` sent with stored content served typed (``/n/...``,
    ``/o/{id}?type=``): by default a sandbox without scripts, so a stored page cannot act on
    the gateway's origin ("" sends none);
    ``server``: the HTTP/1.1 server loop, ``h11`` (ours, ~3x cheaper per request) or
    ``hypercorn``; ``max_connections``: client connections served at once (h11 server; one more
    is answered 429 and closed); ``max_writes``: writes (PUT) served at once, within
    ``max_inflight`` (more: 429 at once, before the body is read: writes are shed before
    reads); ``min_rate``: bytes/s below which a transfer is cut (a request's overall deadline
    is ``timeout`` plus its bytes at this rate); ``max_polls``: mailbox receives waiting at
    once (a long poll holds no loop time, so it is not counted in ``max_inflight``);
    ``hot_cache``: bytes of small objects (up to 64 KiB) kept in memory once verified, served
    again while their file in the store is unchanged (``services.gateway.hot``; 0: none).

    Why 64 in flight, not DESIGN's 512: the gateway is one event loop, so requests beyond what
    it can serve at once only queue in it. At c = 512 mixed load (``bench/gateway.py --only
    overload``), 512 in flight gave an admitted p99 of 5.1 s and requests left unanswered;
    64 served as many requests per second with a p99 of ~1 s. Why 16 writes: durable PUTs are
    the expensive part (hashing, disk); with 16 the loop stays prompt (429 p99 ~35 ms against
    ~50 ms with 32 or 64) and serves ~30 % more requests, the reads (writes are shed first).
    """

    timeout: float = attrs.field(default=5.0, validator=_positive)
    max_inflight: int = attrs.field(default=64, validator=_positive)
    rate: float = attrs.field(default=0.0, validator=_non_negative)
    burst: int = attrs.field(default=0, validator=_non_negative)
    body_cap: int = attrs.field(default=1_048_576, validator=_positive)
    max_object_size: int = attrs.field(default=1 << 30, validator=_positive)
    chunk: int = attrs.field(default=65_536, validator=_positive)  # read/stream piece size
    server: str = attrs.field(default="h11", validator=attrs.validators.in_(("h11", "hypercorn")))
    max_connections: int = attrs.field(default=1024, validator=_positive)
    max_writes: int = attrs.field(default=16, validator=_positive)  # PUTs at once (<= inflight)
    min_rate: float = attrs.field(default=1_048_576.0, validator=_positive)  # bytes/s floor
    max_polls: int = attrs.field(default=256, validator=_positive)  # mailbox long polls at once
    hot_cache: int = attrs.field(default=16 << 20, validator=_non_negative)  # bytes, 0: off
    html_csp: str = attrs.field(default=HTML_CSP, validator=_header_safe)


def parse_settings(raw: Mapping[str, Json]) -> GatewaySettings:
    """Structure the settings table; unknown keys and bad values raise ``ValueError`` (one line)."""
    return structure_settings("svc-gateway", GatewaySettings, raw)
