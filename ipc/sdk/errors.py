"""The SDK's one error type: what failed, in the node's stable words."""

from __future__ import annotations

from ipc import oap

__all__ = ["SdkError"]


class SdkError(Exception):
    """An operation failed: ``reason`` is the node's stable OAP reason (or ``lost``: the
    connection went away), ``code`` its status."""

    def __init__(self, reason: str, detail: str, *, code: int, retry_after: int | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.code = code
        self.retry_after = retry_after

    @classmethod
    def of(cls, exc: oap.OapError) -> SdkError:
        return cls(exc.reason, exc.detail, code=exc.code, retry_after=exc.retry_after)
