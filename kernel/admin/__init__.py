"""The node's two HTTP planes: the read-only admin plane on TCP (app) and the control plane on
a Unix socket (ctl), over ``NodeControl`` (control). Handlers: read-only (routes), acts (acts);
the route table and JSON answers (http). Import names from here."""

from __future__ import annotations

from kernel.admin.app import (
    AdminBindError,
    PlaneApp,
    build_admin_app,
    serve_admin,
)
from kernel.admin.control import NodeControl
from kernel.admin.ctl import ControlBindError, build_control_app, serve_control

__all__ = [
    "AdminBindError",
    "ControlBindError",
    "NodeControl",
    "PlaneApp",
    "build_admin_app",
    "build_control_app",
    "serve_admin",
    "serve_control",
]
