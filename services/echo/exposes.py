"""What svc-echo exposes to the node (``kernel.exposes``): nothing yet, and that is the template.

A service that copies this one lists here what it exposes, and the kernel needs no edit::

    EXPOSES = Exposes(
        # its metric families (the node's scrape names them before any sample exists); add the
        # golden line to specs/metrics.txt too: the list is the contract dashboards rely on
        metrics=(MetricSpec("echo_requests", "counter", "Requests echoed back."),),
        # admin routes it answers over its command socket (kernel.admin_calls); plane="both":
        # a read-only view, on the TCP admin plane too; "control": the control socket only
        routes=(AdminRoute("/echo", plane="both"),),
        # roles others find it by, instead of its name ("identity": keys, tokens, audit)
        roles=(),
    )

and answers its routes in ``__main__``: ``ctx.command_server(handler, admin={"/echo": view})``.
``tests/support/svc_probe`` is a service built that way (a metric and a view), run by a test.
"""

from __future__ import annotations

from kernel.exposes import Exposes

__all__ = ["EXPOSES"]

EXPOSES = Exposes()
