"""The typed OAP/1 error and the append-only canon of reason strings.

The canon is a contract (metrics labels, logs, peers): a reason string, once published, never
changes its spelling or its code, and is never removed. ``specs/oap_reasons.json`` mirrors
``REASONS`` and a test keeps them equal; new reasons are appended to both.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

REASONS: Final = MappingProxyType(
    {
        # Framing: the bytes are not a well-formed OAP/1 frame.
        "bad_version": 400,
        "reserved_flags": 400,
        "bad_length": 400,
        "cap_len_overflow": 400,
        "truncated": 400,
        "trailing_bytes": 400,
        "bad_compression": 400,
        "field_range": 400,
        "unknown_app_proto": 400,
        # Authority.
        "cap_required": 401,
        "cap_invalid": 403,
        "not_found": 404,
        # Size.
        "frame_too_large": 413,
        "inflate_too_large": 413,
        "chunk_too_large": 413,
        # Typed payloads.
        "schema_invalid": 422,
        # Pressure and availability.
        "quota_exceeded": 429,
        "busy": 429,
        "internal": 500,
        "integrity_failure": 500,
        "transport_error": 502,
        "not_ready": 503,
        "unavailable": 503,
        "timeout": 504,
        "insufficient_storage": 507,
        # Data plane (svc-storage, svc-index).
        "version_conflict": 409,
        "bad_name": 422,
        "digest_mismatch": 422,
        "object_too_large": 413,
        # Transport limits (svc-overlay, ron-transport).
        "peer_limit": 429,
        "rate_limited": 429,
        "too_large": 413,
        "pq_required": 403,
        "cap_denied": 403,
        # Addressing (svc-mailbox, svc-overlay): no listed peer and no lookup knows that node.
        "node_unknown": 404,
    }
)
"""reason -> status code. Append-only."""


class OapError(Exception):
    """One failure with a status ``code`` and a stable ``reason`` from the canon.

    ``detail`` is free text for humans (never parsed); ``retry_after`` (seconds) accompanies
    pressure and readiness errors. ``code`` defaults to the canon's code for ``reason``; a reason
    outside the canon (e.g. appended by a newer peer) is accepted only with an explicit code.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        code: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        if code is None:
            try:
                code = REASONS[reason]
            except KeyError:
                raise ValueError(f"reason {reason!r} is not in the OAP/1 canon") from None
        if not 100 <= code <= 599:
            raise ValueError(f"OapError code {code} is not a status code")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        self.code: int = code
        self.reason: str = reason
        self.detail: str = detail
        self.retry_after: int | None = retry_after
        super().__init__(code, reason, detail)

    def __reduce__(self) -> tuple[object, ...]:
        # args hold (code, reason, detail); rebuild through the keyword signature instead.
        return (_rebuild, (self.reason, self.detail, self.code, self.retry_after))

    def __str__(self) -> str:
        text = f"{self.code} {self.reason}"
        if self.detail:
            text += f": {self.detail}"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after}s)"
        return text

    def __repr__(self) -> str:
        return (
            f"OapError({self.reason!r}, {self.detail!r}, code={self.code}, "
            f"retry_after={self.retry_after!r})"
        )


def _rebuild(reason: str, detail: str, code: int, retry_after: int | None) -> OapError:
    return OapError(reason, detail, code=code, retry_after=retry_after)
