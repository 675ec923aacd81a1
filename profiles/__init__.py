"""The packaged node profiles (micronode, macronode) and how a profile argument is resolved."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from kernel.config import ConfigError

__all__ = ["KNOWN_PROFILES", "profile_path"]

KNOWN_PROFILES: tuple[str, ...] = ("macronode", "micronode")


def profile_path(name_or_path: str | Path) -> Path:
    """``micronode``/``macronode`` -> the packaged TOML; anything path-like -> that file.

    A string counts as a path when it contains a path separator or ends in ``.toml``. Raises
    ConfigError (one line) for an unknown name or a path that is not a file.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and "/" not in text and not text.endswith(".toml"):
        if text not in KNOWN_PROFILES:
            raise ConfigError(
                f"unknown profile {text!r} (known: {', '.join(KNOWN_PROFILES)}; "
                "or give a path to a .toml file)"
            )
        return Path(str(resources.files(__name__).joinpath(f"{text}.toml")))
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such profile file")
    return path
