"""svc-passport's settings (``[services.settings]``): none; its knobs are the node's ``[auth]``."""

from __future__ import annotations

import attrs

__all__ = ["PassportSettings"]


@attrs.frozen
class PassportSettings:
    """svc-passport takes no settings; ``[auth]`` (specs/config.md) configures tokens."""
