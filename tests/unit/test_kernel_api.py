"""The kernel's public API is frozen (DESIGN.md §3): exactly six names, each importable."""

from __future__ import annotations

import kernel

FROZEN = ["Bus", "Config", "HealthState", "KernelEvent", "Metrics", "wait_for_ctrl_c"]


def test_all_is_exactly_the_frozen_list() -> None:
    assert sorted(kernel.__all__) == sorted(FROZEN)


def test_every_name_resolves_to_the_real_object() -> None:
    from ipc.bus import Bus
    from ipc.events import KernelEvent
    from kernel.config import Config
    from kernel.health import HealthState
    from kernel.metrics import Metrics
    from kernel.signals import wait_for_ctrl_c

    real = [Bus, Config, HealthState, KernelEvent, Metrics, wait_for_ctrl_c]
    assert [getattr(kernel, name) for name in FROZEN] == real


def test_star_import_gives_exactly_the_frozen_names() -> None:
    namespace: dict[str, object] = {}
    exec("from kernel import *", namespace)
    assert sorted(k for k in namespace if not k.startswith("__")) == sorted(FROZEN)


def test_the_shared_shelf_contract_names_every_service() -> None:
    """import-linter's "services.lib imports no service" lists the services by name: a new
    service package that is not listed would slip through it."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    contracts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    (shelf,) = [c for c in contracts if c.get("source_modules") == ["services.lib"]]
    services = {
        f"services.{p.name}"
        for p in (root / "services").iterdir()
        if (p / "__init__.py").exists() and p.name != "lib"
    }
    assert services <= set(shelf["forbidden_modules"]), services - set(shelf["forbidden_modules"])
