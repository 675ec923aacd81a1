"""The admin HTTP plane: routes over ``NodeControl`` (control), the route table and JSON
answers (http), the handlers (routes), the app and its server (app). Import names from here."""

from __future__ import annotations

from kernel.admin.app import AdminApp, AdminBindError, build_admin_app, serve_admin
from kernel.admin.control import NodeControl

__all__ = ["AdminApp", "AdminBindError", "NodeControl", "build_admin_app", "serve_admin"]
