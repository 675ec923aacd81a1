"""The node's configuration as values: every section, the child spec and the whole ``Config``.

Plain frozen attrs classes with their defaults (``specs/config.md`` lists every key); loading,
layering and validation live in ``kernel.config.load`` and ``kernel.config.rules``.
"""

from __future__ import annotations

import hashlib
import json

import attrs

from ipc.plain import JsonObject

__all__ = [
    "AddrConfig",
    "AmnesiaConfig",
    "AuthConfig",
    "BusConfig",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "LogConfig",
    "NodeConfig",
    "ObservabilityConfig",
    "PathsConfig",
    "PqConfig",
    "ServiceSpec",
    "SupervisorConfig",
    "config_digest",
]


class ConfigError(Exception):
    """A configuration the node refuses to run with; ``str()`` is one line for the operator."""


@attrs.frozen
class NodeConfig:
    name: str = "micronode"


@attrs.frozen
class SupervisorConfig:
    stable_after: float = 10.0
    min_backoff: float = 0.1
    max_backoff: float = 30.0
    restart_cap: int = 5
    restart_window: float = 60.0
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 3.0
    shutdown_deadline: float = 5.0
    spawn: str = "forkserver"
    spares: bool = True  # warm spares (kernel.launch.warm); a service's spec may opt out


@attrs.frozen
class BusConfig:
    capacity: int = 4096


@attrs.frozen
class AmnesiaConfig:
    enabled: bool = False


@attrs.frozen
class PqConfig:
    mode: str = "off"


@attrs.frozen
class ObservabilityConfig:
    admin_addr: str = "127.0.0.1:9909"
    admin_public: bool = False  # an explicit yes to a non-loopback admin_addr (read-only plane)


@attrs.frozen
class AuthConfig:
    """Capability tokens (DESIGN.md §5): who may write, and how root keys rotate."""

    writes: str = "token"  # "token": writes need a capability token; "open": a dev setting
    rotate_after: float = 2_592_000.0  # s (30 d): the active root key's lifetime
    rotate_overlap: float = 86_400.0  # s (1 d): the previous key still verifies this long
    max_ttl: float = 2_592_000.0  # s: no token is minted to live longer (revocations last this)
    cli_ttl: float = 300.0  # s: the tokens ronctl mints for itself


@attrs.frozen
class LogConfig:
    level: str = "info"
    ring_lines: int = 2000  # per service, in the supervisor's RAM (`ronctl logs`)
    dir: str = ""  # "" = no log files; relative = under the data dir (never under amnesia)
    file_bytes: int = 16_777_216  # a log file is rotated at this size ...
    files: int = 5  # ... and this many rotated files are kept


@attrs.frozen
class LimitsConfig:
    max_frame: int = 1_048_576
    cmd_inflight: int = 128
    cmd_timeout: float = 5.0


@attrs.frozen
class PathsConfig:
    runtime_dir: str = ""  # "" = the default per-node runtime dir
    data_dir: str = ""  # "" = the default data dir


@attrs.frozen
class AddrConfig:
    addr: str


@attrs.frozen
class OverlayConfig:
    """``addr``: where the peer-facing service listens; ``peers``: ``<node id>@host:port`` of the
    nodes this one fetches objects it lacks from (static providers, DESIGN §5)."""

    addr: str = "127.0.0.1:9410"
    peers: tuple[str, ...] = ()


@attrs.frozen
class DhtConfig:
    """``bootstrap``: ``<node id>@host:port`` of nodes to join the DHT through (besides
    ``overlay.peers``); any node of the network will do (DESIGN §5)."""

    bootstrap: tuple[str, ...] = ()


@attrs.frozen
class IdentityConfig:
    """``key_file``: an Ed25519 identity key file (``ronctl identity new``) the node reads and
    never writes, so it keeps its node id across restarts; "" = the node's own (a macronode's
    in ``data_dir/keys/``, a fresh one per start under amnesia)."""

    key_file: str = ""


@attrs.frozen
class ServiceSpec:
    """A child spec (OTP style): the supervisor is a generic loop over these."""

    name: str
    module: str
    required: bool = True
    restart: str = "permanent"
    shutdown_deadline: float = 5.0
    heartbeat_timeout: float = 0.0  # 0 = use supervisor.heartbeat_timeout
    settings: JsonObject = attrs.field(factory=dict)  # passed to the service as-is
    # "gateway" / "overlay": the node binds that section's addr and hands the listening socket to
    # the service (socket activation): the port survives restarts and nothing is refused meanwhile
    listen: str = ""
    spare: bool = True  # keep a warm spare of it (with supervisor.spares and spawn=forkserver)


@attrs.frozen
class Config:
    node: NodeConfig = NodeConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    bus: BusConfig = BusConfig()
    amnesia: AmnesiaConfig = AmnesiaConfig()
    pq: PqConfig = PqConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    log: LogConfig = LogConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    paths: PathsConfig = PathsConfig()
    gateway: AddrConfig = AddrConfig("127.0.0.1:8080")
    overlay: OverlayConfig = OverlayConfig()
    dht: DhtConfig = DhtConfig()
    identity: IdentityConfig = IdentityConfig()
    services: tuple[ServiceSpec, ...] = ()

    def to_dict(self) -> JsonObject:
        """Plain dicts/lists (the TOML shape), for display, digests and the child environment."""
        return attrs.asdict(self, recurse=True)

    @property
    def sha256(self) -> str:
        return config_digest(self)


def config_digest(cfg: Config) -> str:
    """sha256 hex of the canonical JSON of the effective config: equal configs, equal digests."""
    blob = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
