"""What a service package declares it exposes: metrics, admin routes, roles.

Why: the kernel must run a service it has never heard of. A service package says, in its light
``__init__`` next to its ``Settings``, ``EXPOSES = Exposes(...)``; the kernel reads that through
the ``module`` the profile names (``exposes_of``), never by importing a service by name. So a new
service is one package plus a profile entry, and the kernel names no service.

- ``metrics``: every family the service writes. Its processes create them (``Metrics``); the
  supervisor declares them in the scrape even before any sample exists (the golden list,
  ``specs/metrics.txt``, is the contract).
- ``routes``: admin routes the service answers over its command socket (``ipc.proto.admin``);
  the kernel relays a matching HTTP request there and the answer back (``kernel.admin.relay``).
  ``plane="both"`` routes are read-only views (GET), served on the TCP admin plane and on the
  control socket; ``plane="control"`` ones only on the control socket.
- ``roles``: what other parts look a service up by (``"identity"``: the one that holds the node's
  keys, mints tokens and keeps the audit log), so nothing needs to know its name.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Literal, Protocol

import attrs

__all__ = [
    "EXPOSES",
    "ROLE_IDENTITY",
    "SERVICE_PREFIX",
    "AdminRoute",
    "Exposes",
    "MetricSpec",
    "exposes_of",
    "provider",
]

EXPOSES = "EXPOSES"  # the name a service package binds its declaration to
SERVICE_PREFIX = "svc-"  # every service's name starts so (DESIGN.md §2); the naming rule only
ROLE_IDENTITY = "identity"  # identity key, tokens, verifier keys and the audit log

MetricKind = Literal["counter", "gauge", "histogram"]
GaugeMode = Literal["livesum", "mostrecent", "all", "liveall", "min", "max", "sum"]
Plane = Literal["both", "control"]
_METHODS = frozenset({"GET", "PUT", "POST", "DELETE"})


@attrs.frozen
class MetricSpec:
    """One metric family: its name without ``_total``, kind, help text and labels.

    ``gauge_mode``: how a gauge merges over the node's processes (prometheus-client's
    multiprocess modes: ``livesum`` forgets what a dead process held).
    """

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    gauge_mode: GaugeMode = "livesum"

    def __attrs_post_init__(self) -> None:
        if self.buckets is not None and self.kind != "histogram":
            raise ValueError(f"metric {self.name}: only a histogram has buckets")


@attrs.frozen
class AdminRoute:
    """An admin route (``/store/pins/{id}``) a service answers; see the module docstring."""

    template: str
    methods: tuple[str, ...] = ("GET",)
    plane: Plane = "control"
    timeout: float = 10.0  # how long the kernel waits for the service's answer

    def __attrs_post_init__(self) -> None:
        if not self.template.startswith("/") or not set(self.methods) <= _METHODS:
            raise ValueError(f"admin route {self.template!r}: bad template or methods")
        if self.plane == "both" and self.methods != ("GET",):
            raise ValueError(f"admin route {self.template}: the TCP plane is read-only (GET)")


@attrs.frozen
class Exposes:
    """What one service exposes (see the module docstring); the empty one exposes nothing."""

    metrics: tuple[MetricSpec, ...] = ()
    routes: tuple[AdminRoute, ...] = ()
    roles: tuple[str, ...] = ()


NOTHING = Exposes()


def exposes_of(module: str) -> Exposes:
    """What the service package ``module`` declares (``Exposes()`` if nothing). Raises
    ``ImportError`` if it cannot be imported (``check_services`` found that already)."""
    found = getattr(importlib.import_module(module), EXPOSES, NOTHING)
    if not isinstance(found, Exposes):
        raise TypeError(f"{module}.{EXPOSES} is not a kernel.exposes.Exposes")
    return found


class _Named(Protocol):
    """What ``provider`` needs of a service spec (``kernel.config.ServiceSpec``)."""

    @property
    def name(self) -> str: ...

    @property
    def module(self) -> str: ...


def provider(services: Iterable[_Named], role: str) -> str | None:
    """The name of the first service that declares ``role``; None when none does."""
    for spec in services:
        if role in exposes_of(spec.module).roles:
            return spec.name
    return None
