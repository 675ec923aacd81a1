"""The baseline durable write that bench/gateway.py and bench/storage.py measure us against.

One object at a time, the textbook way: write a temp file, fsync it, rename it into place, fsync
the directory. A store that batches its barriers (group commit) must beat this.
"""

from __future__ import annotations

import os
from pathlib import Path

from services.lib.objstore import fsync_dir


def write_durably(tmp: Path, final: Path, data: bytes) -> None:
    """Make ``final`` hold ``data`` durably, through the temp file ``tmp`` (same filesystem)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    fsync_dir(final.parent)
