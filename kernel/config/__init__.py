"""The node's configuration (DESIGN.md §3): values (model), layering and loading (load),
fail-closed rules (rules), env and override layers (layers), and the checks that need the
services' code (services: modules import, settings fit). Import names from here."""

from __future__ import annotations

from kernel.config.load import (
    ConfigStore,
    check_config_file,
    config_diff,
    config_from_dict,
    config_from_json,
    load_config,
    validate_config,
)
from kernel.config.model import (
    AddrConfig,
    AmnesiaConfig,
    AuthConfig,
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
from kernel.config.services import check_services

__all__ = [
    "AddrConfig",
    "AmnesiaConfig",
    "AuthConfig",
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
    "check_services",
    "config_diff",
    "config_digest",
    "config_from_dict",
    "config_from_json",
    "load_config",
    "validate_config",
]
