"""Give freed heap memory back to the system after a burst (glibc keeps it otherwise).

Why: CPython frees into glibc's arenas, which keep the pages; after hundreds of connections
close (an attack, a load spike) a service's RSS would stay at its peak. ``malloc_trim(0)``
returns what is free in every arena. A no-op where libc has no ``malloc_trim`` (not glibc).
"""

from __future__ import annotations

import contextlib

from kernel._libc import malloc_trim

__all__ = ["give_back_memory"]


def give_back_memory() -> None:
    """Cheap enough after a burst (milliseconds); never raises."""
    with contextlib.suppress(AttributeError, OSError):
        malloc_trim()(0)
