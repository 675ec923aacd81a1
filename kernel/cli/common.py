"""What every ``ronctl`` verb module shares: the user-facing error, finding the node (its control
socket for acts, its admin plane for reading) and the arguments that say where it is. Verb modules
import this, never ``kernel.cli.entry``."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipc import ids
from kernel import childenv, runtime
from kernel.cli.client import AdminClient, ControlClient

__all__ = [
    "ADMIN_ENV",
    "RUNTIME_ENV",
    "AdminArg",
    "CliError",
    "add_admin_arg",
    "add_json_arg",
    "admin_client",
    "control_client",
    "emit",
    "first_line",
    "human_size",
    "node_id_arg",
    "object_id_arg",
    "resolve_admin_url",
    "runtime_dir_of",
]

ADMIN_ENV = childenv.ADMIN
RUNTIME_ENV = childenv.RUNTIME_DIR
CTL_SOCKET = "ctl.sock"  # kernel.admin.ctl.CTL_SOCKET (not imported: keeps --help fast)

AdminArg = Callable[[argparse._ActionsContainer], None]
"""``add_admin_arg``'s shape, as verb modules receive it (a parser or an argument group)."""


class Terminated(BaseException):
    """SIGTERM arrived inside ``terminate.sigterm_raises``: like ``KeyboardInterrupt``, not an
    error of the verb's, and every ``finally`` and ``except BaseException`` on its way runs
    (here, not in ``terminate``: ``main`` catches it without importing more)."""


TERMINATED_EXIT = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


class CliError(Exception):
    """A verb failed in a way the user can act on; ``str()`` is the one line to print."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def runtime_dir_of(args: argparse.Namespace) -> Path:
    """``--runtime-dir DIR`` > ``$RON_RUNTIME_DIR`` > the default runtime dir."""
    explicit = getattr(args, "runtime_dir", None) or os.environ.get(RUNTIME_ENV)
    return Path(explicit) if explicit else runtime.default_runtime_dir()


def resolve_admin_url(explicit: str | None, runtime_dir: Path | None = None) -> str:
    """``--admin URL`` > ``$RON_ADMIN`` > the live node in ``runtime_dir`` (default: the default
    runtime dir)."""
    if explicit:
        return explicit
    env = os.environ.get(ADMIN_ENV)
    if env:
        return env
    info = runtime.read_node_info(runtime_dir or runtime.default_runtime_dir())
    admin = info.get("admin")
    if not isinstance(admin, str) or not admin:
        raise CliError("the running node did not record its admin URL; pass --admin URL")
    return admin


def admin_client(args: argparse.Namespace, timeout: float = 5.0) -> AdminClient:
    """The read-only admin plane of the node ``args`` names."""
    return AdminClient(resolve_admin_url(args.admin, runtime_dir_of(args)), timeout=timeout)


def control_client(args: argparse.Namespace, timeout: float = 5.0) -> ControlClient:
    """The control socket of the node in ``args``' runtime dir: the only way to act on a node."""
    return ControlClient(runtime_dir_of(args) / CTL_SOCKET, timeout=timeout)


def object_id_arg(text: str) -> str:
    """argparse type: an object id (``b3:`` + 64 lowercase hex), or a usage error naming it."""
    if not ids.is_id(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an object id (b3: followed by 64 lowercase hex digits)"
        )
    return text


def node_id_arg(text: str) -> str:
    """argparse type: a node id (``node:`` + 64 lowercase hex), or a usage error naming it."""
    if not ids.is_node_id(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a node id (node: followed by 64 lowercase hex digits)"
        )
    return text


def first_line(e: BaseException, fallback: str) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else fallback


def add_json_arg(p: argparse._ActionsContainer, what: str = "the answer") -> None:
    """``--json``: print ``what`` as one JSON object instead of the line for people."""
    p.add_argument("--json", action="store_true", help=f"print {what} as one JSON object")


def emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    """The verb's result: ``doc`` as one JSON line with ``--json``, else ``text``."""
    print(json.dumps(doc, sort_keys=True) if getattr(args, "json", False) else text)


def human_size(n: float) -> str:
    """``512 B``, ``1.5 KiB`` ... ``3.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def add_admin_arg(p: argparse._ActionsContainer) -> None:
    """``--runtime-dir`` (where the node's control socket and node.json are) and ``--admin``."""
    p.add_argument(
        "--runtime-dir",
        metavar="DIR",
        help=f"the node's runtime dir (default: ${RUNTIME_ENV}, else the default runtime dir); "
        "acts go through its ctl.sock",
    )
    p.add_argument(
        "--admin",
        metavar="URL",
        help=f"read-only admin plane URL (default: ${ADMIN_ENV}, else the node in the runtime dir)",
    )
