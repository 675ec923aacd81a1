"""svc-storage's settings (``[services.settings]``), checked when the node's config loads."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ipc.plain import Json
from kernel.config.services import structure_settings

__all__ = ["StorageSettings", "load_settings"]

GiB = 1 << 30


@attrs.frozen
class StorageSettings:
    """``[[services]] settings`` of svc-storage (defaults here; documented in the spec)."""

    max_bytes: int = attrs.field(default=GiB, validator=attrs.validators.ge(0))
    max_objects: int = attrs.field(default=1_000_000, validator=attrs.validators.ge(0))
    max_object_size: int = attrs.field(default=GiB, validator=attrs.validators.ge(0))
    tmp_max_age: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))
    batch_max: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    # true: a batch of several commits is made durable with syncfs(2) (two per batch); false:
    # fsync per file and per directory (for a data dir on a filesystem shared with busy writers)
    group_sync: bool = True


def load_settings(raw: Mapping[str, Json]) -> StorageSettings:
    """Strictly structured settings; ``ValueError`` with one line naming the problem."""
    return structure_settings("svc-storage", StorageSettings, raw)
