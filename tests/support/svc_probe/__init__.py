"""svc-probe: a throwaway service that exists only in tests, to prove a new service needs no
kernel edit: one package (this one, outside ``services/``) plus a ``[[services]]`` entry.

It declares a metric (``probe_hits_total``) and a read-only admin view (``GET /probe``, on the
TCP admin plane too); each read of the view counts one hit and answers how many there were.
"""

from __future__ import annotations

import attrs

from kernel.exposes import AdminRoute, Exposes, MetricSpec

__all__ = ["EXPOSES", "Settings"]


@attrs.frozen
class Settings:
    """``greeting``: what the view says (so a test can see its settings reached it)."""

    greeting: str = "hello"


EXPOSES = Exposes(
    metrics=(MetricSpec("probe_hits", "counter", "Reads of svc-probe's /probe view."),),
    routes=(AdminRoute("/probe", plane="both", timeout=2.0),),
)
