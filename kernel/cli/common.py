"""What every ``ronctl`` verb module shares: the user-facing error, finding the node's admin
plane, and the ``--admin`` argument. Verb modules import this, never ``kernel.cli.entry``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from kernel import childenv, runtime
from kernel.cli.client import AdminClient

__all__ = [
    "ADMIN_ENV",
    "AdminArg",
    "CliError",
    "add_admin_arg",
    "admin_client",
    "first_line",
    "resolve_admin_url",
]

ADMIN_ENV = childenv.ADMIN

AdminArg = Callable[[argparse._ActionsContainer], None]
"""``add_admin_arg``'s shape, as verb modules receive it (a parser or an argument group)."""


class CliError(Exception):
    """A verb failed in a way the user can act on; ``str()`` is the one line to print."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def resolve_admin_url(explicit: str | None) -> str:
    """``--admin URL`` > ``$RON_ADMIN`` > the live node in the default runtime dir."""
    if explicit:
        return explicit
    env = os.environ.get(ADMIN_ENV)
    if env:
        return env
    info = runtime.read_node_info(runtime.default_runtime_dir())
    admin = info.get("admin")
    if not isinstance(admin, str) or not admin:
        raise CliError("the running node did not record its admin URL; pass --admin URL")
    return admin


def admin_client(args: argparse.Namespace, timeout: float = 5.0) -> AdminClient:
    return AdminClient(resolve_admin_url(args.admin), timeout=timeout)


def first_line(e: BaseException, fallback: str) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else fallback


def add_admin_arg(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--admin",
        metavar="URL",
        help=f"admin plane URL (default: ${ADMIN_ENV}, else the node in the default runtime dir)",
    )
