"""The packaged node profiles (micronode, macronode) and how a profile argument is resolved.

Data only: it imports nothing of the node (``kernel.config`` turns ``ProfileNotFound`` into its
``ConfigError``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["KNOWN_PROFILES", "ProfileNotFound", "profile_path"]

KNOWN_PROFILES: tuple[str, ...] = ("macronode", "micronode")


class ProfileNotFound(LookupError):
    """No such packaged profile or profile file; ``str()`` is one line for the operator."""


def profile_path(name_or_path: str | Path) -> Path:
    """``micronode``/``macronode`` -> the packaged TOML; anything path-like -> that file.

    A string counts as a path when it contains a path separator or ends in ``.toml``. Raises
    ProfileNotFound (one line) for an unknown name or a path that is not a file.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and "/" not in text and not text.endswith(".toml"):
        if text not in KNOWN_PROFILES:
            raise ProfileNotFound(
                f"unknown profile {text!r} (known: {', '.join(KNOWN_PROFILES)}; "
                "or give a path to a .toml file)"
            )
        return Path(str(resources.files(__name__).joinpath(f"{text}.toml")))
    path = Path(name_or_path)
    if not path.is_file():
        raise ProfileNotFound(f"{path}: no such profile file")
    return path
