"""What a config reload may change in a running node, and what needs a node restart.

A reload applies ``supervisor.*`` (the restart policy and heartbeats, at once) and
``[[services]]`` (the supervisor reconciles its children: starts new specs, stops removed ones,
restarts changed ones). Everything else is read once at start (bound sockets, the runtime and
data dirs, the bus's capacity, the services' environment): a reload that changes any of it is
refused, naming those keys, so it never reports success for what it did not apply.
"""

from __future__ import annotations

from collections.abc import Collection

from ipc.plain import JsonObject
from kernel.config.model import Config, ConfigError

__all__ = ["LIVE_SECTIONS", "check_reloadable"]

LIVE_SECTIONS = ("supervisor", "services")


def _flat(doc: JsonObject, prefix: str = "") -> JsonObject:
    out: JsonObject = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def check_reloadable(old: Config, new: Config, *, listening: Collection[str]) -> None:
    """``ConfigError`` (one line, listing the keys) unless ``new`` differs from ``old`` only in
    what a reload applies; ``listening``: the sections whose sockets the node bound at start
    (a service may only ``listen`` on one of those)."""
    before = {k: v for k, v in old.to_dict().items() if k not in LIVE_SECTIONS}
    after = {k: v for k, v in new.to_dict().items() if k not in LIVE_SECTIONS}
    flat_before, flat_after = _flat(before), _flat(after)
    changed = sorted(
        k for k in flat_before.keys() | flat_after.keys() if flat_before.get(k) != flat_after.get(k)
    )
    unbound = sorted({s.listen for s in new.services if s.listen and s.listen not in listening})
    changed += [f"services.listen={section}" for section in unbound]
    if changed:
        raise ConfigError(
            f"not reloaded: {', '.join(changed)} only take effect at start; restart the node "
            "(a reload applies supervisor.* and [[services]])"
        )
