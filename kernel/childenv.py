"""Every ``RON_*`` environment variable of the project, with its encoding and decoding.

Why one module: the environment is the contract between the supervisor, the launchers, the
zygote and every service process (and, for three names, between ``ronctl`` and its user); a
name defined twice drifts. Standard library only, no I/O at import: the zygote, PDEATHSIG set-up
and ``ronctl --help`` import it before anything else.

What the node puts in a service's environment (``service_env`` + the launcher's own):

| name | set by | value |
|---|---|---|
| ``RON_SERVICE`` | supervisor | the service's name |
| ``RON_RUNTIME_DIR`` | supervisor | the node's private runtime dir (IPC sockets, metrics) |
| ``RON_DATA_DIR`` | supervisor | where the service keeps state (tmpfs under amnesia) |
| ``RON_CONFIG`` | supervisor | the node's effective config as compact JSON |
| ``RON_LISTEN_FDS`` | supervisor/launcher | inherited listening sockets, comma-separated fds |
| ``RON_PARENT_PID`` | launcher | the supervisor's pid, for PDEATHSIG (``launch.pdeathsig``) |
| ``RON_WARM_GO`` | zygote | a warm spare's go socket (fd); the harness takes it out of the env |

The zygote's own: ``RON_ZYGOTE_FD`` (its control socket), ``RON_ZYGOTE_PRELOAD`` (modules,
comma-separated), ``RON_ZYGOTE_FORK`` (``double`` forces the double-fork fallback). ``ronctl``'s:
``RON_ADMIN`` (admin URL), ``RON_GATEWAY`` (gateway URL), ``RON_TOKEN`` (the capability token
write verbs send), ``RON_DEBUG`` (tracebacks on).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from ipc.plain import Json

__all__ = [
    "ADMIN",
    "CONFIG",
    "DATA_DIR",
    "DEBUG",
    "GATEWAY",
    "LISTEN_FDS",
    "PARENT_PID",
    "RUNTIME_DIR",
    "SERVICE",
    "TOKEN",
    "WARM_GO",
    "ZYGOTE_FD",
    "ZYGOTE_FORK",
    "ZYGOTE_PRELOAD",
    "ServiceEnv",
    "decode_fds",
    "decode_list",
    "encode_fds",
    "encode_list",
    "read_service_env",
    "service_env",
]

SERVICE: Final = "RON_SERVICE"
RUNTIME_DIR: Final = "RON_RUNTIME_DIR"
DATA_DIR: Final = "RON_DATA_DIR"
CONFIG: Final = "RON_CONFIG"
LISTEN_FDS: Final = "RON_LISTEN_FDS"
WARM_GO: Final = "RON_WARM_GO"
PARENT_PID: Final = "RON_PARENT_PID"
ZYGOTE_FD: Final = "RON_ZYGOTE_FD"
ZYGOTE_PRELOAD: Final = "RON_ZYGOTE_PRELOAD"
ZYGOTE_FORK: Final = "RON_ZYGOTE_FORK"
ADMIN: Final = "RON_ADMIN"
TOKEN: Final = "RON_TOKEN"
GATEWAY: Final = "RON_GATEWAY"
DEBUG: Final = "RON_DEBUG"


def encode_fds(fds: Iterable[int]) -> str:
    return ",".join(str(fd) for fd in fds)


def decode_fds(env: Mapping[str, str]) -> tuple[int, ...]:
    """The listening sockets named in ``RON_LISTEN_FDS`` (none if unset)."""
    return tuple(int(fd) for fd in env.get(LISTEN_FDS, "").split(",") if fd)


def encode_list(items: Iterable[str]) -> str:
    return ",".join(items)


def decode_list(raw: str) -> list[str]:
    return [item for item in raw.split(",") if item]


def service_env(
    name: str, config: Mapping[str, Json], runtime_dir: Path, data_dir: Path
) -> dict[str, str]:
    """What the supervisor puts in a service's environment; ``config`` is ``Config.to_dict()``.
    ``read_service_env`` is its inverse."""
    return {
        SERVICE: name,
        RUNTIME_DIR: str(runtime_dir),
        DATA_DIR: str(data_dir),
        CONFIG: json.dumps(config, separators=(",", ":")),
    }


class ServiceEnv:
    """A service's identity as read back from its environment (``read_service_env``)."""

    def __init__(self, name: str, runtime_dir: Path, data_dir: Path, config_json: str) -> None:
        self.name = name
        self.runtime_dir = runtime_dir
        self.data_dir = data_dir
        self.config_json = config_json  # kernel.config.config_from_json parses it (cached)


def read_service_env(env: Mapping[str, str]) -> ServiceEnv:
    """Decode what ``service_env`` wrote; ``KeyError`` names a missing variable. The config
    stays JSON text: its parse is shared with the zygote's (``config_from_json``)."""
    return ServiceEnv(
        name=env[SERVICE],
        runtime_dir=Path(env[RUNTIME_DIR]),
        data_dir=Path(env[DATA_DIR]),
        config_json=env[CONFIG],
    )
