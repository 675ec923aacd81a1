"""Where the node's sockets live: ipc:// paths inside the node's private runtime dir.

One place names every endpoint so the supervisor, the services and ``ronctl`` agree. The runtime dir
is 0700 and every socket file is made 0600 once bound: only the node's user can talk to the node.
"""

from __future__ import annotations

import os
from pathlib import Path

# Linux sun_path is 108 bytes including the NUL terminator.
MAX_IPC_PATH = 107

BUS_IN = "bus.in"  # publishers connect here (the proxy's XSUB)
BUS_OUT = "bus.out"  # subscribers connect here (the proxy's XPUB)


def ipc_endpoint(runtime_dir: Path, name: str) -> str:
    path = Path(runtime_dir) / name
    if len(os.fsencode(path)) > MAX_IPC_PATH:
        raise ValueError(
            f"socket path {path} is longer than {MAX_IPC_PATH} bytes; use a shorter runtime dir"
        )
    return f"ipc://{path}"


def bus_in(runtime_dir: Path) -> str:
    return ipc_endpoint(runtime_dir, BUS_IN)


def bus_out(runtime_dir: Path) -> str:
    return ipc_endpoint(runtime_dir, BUS_OUT)


def command(runtime_dir: Path, service: str) -> str:
    """The request/reply socket of one service (the service binds it, callers connect)."""
    return ipc_endpoint(runtime_dir, f"{service}.cmd")


CONTROL_SUFFIX = ".ctl"  # a service's fault-control socket is the command socket of "<name>.ctl"


def control_name(service: str) -> str:
    """The command-socket name of ``service``'s control socket (chaos fault hooks)."""
    return service + CONTROL_SUFFIX


def control(runtime_dir: Path, service: str) -> str:
    """The control socket of one service (the harness binds it; the node connects to inject)."""
    return command(runtime_dir, control_name(service))


def secure(endpoint: str) -> None:
    """Make a freshly bound ipc:// socket file owner-only (0600)."""
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://") :], 0o600)
