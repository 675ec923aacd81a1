"""libc functions the kernel calls through ctypes, each looked up once per process.

``dlopen(NULL)`` finds them in the running interpreter (no ``find_library``, which would run
``ldconfig`` in a subprocess), and a zygote's children inherit the lookups, so a respawn pays none.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = ["libc", "malloc_trim", "prctl"]


@functools.cache
def prctl() -> Any:
    """``prctl(2)``; errors through ``ctypes.get_errno()``."""
    return ctypes.CDLL(None, use_errno=True).prctl


@functools.cache
def malloc_trim() -> Any:
    """glibc's ``malloc_trim(3)``: give freed heap memory back to the system (every arena)."""
    return ctypes.CDLL(None).malloc_trim


@functools.cache
def libc() -> Any:
    """The C library as loaded in this process (pthread functions; errors are return codes)."""
    return ctypes.CDLL(None)
