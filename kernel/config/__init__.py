"""The node's configuration (DESIGN.md §3): values (model), layering and loading (load),
fail-closed rules (rules), env and override layers (layers). Import names from here."""

from __future__ import annotations

from kernel.config.load import (
    ConfigStore,
    check_config_file,
    config_diff,
    config_from_dict,
    load_config,
    validate_config,
)
from kernel.config.model import (
    AddrConfig,
    AmnesiaConfig,
    BusConfig,
    Config,
    ConfigError,
    LimitsConfig,
    LogConfig,
    NodeConfig,
    ObservabilityConfig,
    PathsConfig,
    PqConfig,
    ServiceSpec,
    SupervisorConfig,
    config_digest,
)

__all__ = [
    "AddrConfig",
    "AmnesiaConfig",
    "BusConfig",
    "Config",
    "ConfigError",
    "ConfigStore",
    "LimitsConfig",
    "LogConfig",
    "NodeConfig",
    "ObservabilityConfig",
    "PathsConfig",
    "PqConfig",
    "ServiceSpec",
    "SupervisorConfig",
    "check_config_file",
    "config_diff",
    "config_digest",
    "config_from_dict",
    "load_config",
    "validate_config",
]
