"""The node's version, read from the installed distribution (``pyproject.toml`` is the one
source): ``/version`` shows it, ``ronctl --version`` prints it."""

from __future__ import annotations

from importlib import metadata
from typing import Final

__all__ = ["DISTRIBUTION", "VERSION"]

DISTRIBUTION: Final = "rustyonions"


def _installed() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION: Final = _installed()
