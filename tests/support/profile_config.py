"""A ``[[services]]`` array for a test config: a profile's services with some settings changed.

A ``--config`` file's ``[[services]]`` replaces the profile's whole (specs/config.md), so a test
that changes one service's settings writes them all; this renders them from the profile itself,
so the test keeps following the shipped profile.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from typing import Any

from tests.support.node_harness import REPO

__all__ = ["services_toml"]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string for these values
    raise TypeError(f"no TOML rendering for {type(value).__name__} here")


def services_toml(profile: str, changes: Mapping[str, Mapping[str, Any]]) -> str:
    """The profile's ``[[services]]`` with ``changes[service]`` merged into its settings."""
    doc = tomllib.loads((REPO / "profiles" / f"{profile}.toml").read_text())
    out = []
    for spec in doc["services"]:
        lines = ["[[services]]"]
        lines += [f"{k} = {_value(v)}" for k, v in spec.items() if k != "settings"]
        settings = {**spec.get("settings", {}), **changes.get(spec["name"], {})}
        if settings:
            lines.append("[services.settings]")
            lines += [f"{k} = {_value(v)}" for k, v in settings.items()]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"
