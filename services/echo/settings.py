"""svc-echo's settings (``[services.settings]``): none, so any key is a mistake."""

from __future__ import annotations

import attrs

__all__ = ["EchoSettings"]


@attrs.frozen
class EchoSettings:
    """svc-echo takes no settings; a key under its ``[services.settings]`` is refused."""
