"""Package exports that import their module on first use (PEP 562).

``kernel`` and ``kernel.supervisor`` export names whose modules pull in trio, pyzmq and
prometheus-client; resolving them lazily keeps ``ronctl --help``, a service reaching
``kernel.launch.pdeathsig`` and ``ronctl run``'s early zygote start from paying for all that.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from ipc.plain import JsonObject

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: JsonObject, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:  # Any: whatever the name is
    """``(__getattr__, __dir__)`` for a package whose ``namespace`` (its ``globals()``) exports
    ``__all__``: each name in ``where`` comes from the module named there, imported on first
    access and then cached in the namespace."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace["__all__"])

    return __getattr__, __dir__
