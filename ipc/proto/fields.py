"""Field validators the protocols share (attrs validators: they run when a value is built,
so also when a frame is decoded)."""

from __future__ import annotations

from ipc import ids
from ipc.plain import AnyField

__all__ = ["content_id", "unsigned"]


def unsigned(_inst: object, attr: AnyField, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attr.name} must be >= 0, got {value}")


def content_id(_inst: object, attr: AnyField, value: str) -> None:
    if not ids.is_id(value):
        raise ValueError(f"{attr.name}: {value!r:.80} is not a content id")
