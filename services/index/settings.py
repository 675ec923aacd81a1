"""svc-index's settings (``[services.settings]``): none yet, so any key is a mistake."""

from __future__ import annotations

import attrs

__all__ = ["IndexSettings"]


@attrs.frozen
class IndexSettings:
    """svc-index takes no settings today; a key under its ``[services.settings]`` is refused."""
