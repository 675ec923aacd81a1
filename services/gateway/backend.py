"""What the gateway's HTTP layer needs from the data plane (the seam ``app.py`` speaks to).

The HTTP layer is tested against an in-memory fake of ``Backend`` and runs in a node against
``store_backend.StoreBackend``. Every failure crosses this seam as a ``GatewayError`` with a
stable reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import attrs

from ipc.proto.codec import Request
from ipc.proto.index import NameList, NameRecord
from ipc.proto.storage import Stored

__all__ = ["Backend", "FetchWatch", "NameRecord", "Stored", "StoredObject", "Upload"]

R = TypeVar("R")


class StoredObject(Protocol):
    """An object whose bytes are verified before they are served: a raw object whole when it
    was opened, a manifest's chunk by chunk as they are read (``chunked``)."""

    size: int
    head: bytes  # its first min(size, prefetch) bytes, read together with the verification

    async def prepare(self, start: int, end: int) -> None:
        """Before the answer begins: raise now what would otherwise cut the body later (a
        chunked object's missing or malformed chunks in ``[start, end)``)."""

    async def read(self, offset: int, n: int) -> bytes: ...

    async def aclose(self) -> None: ...


class Upload(Protocol):
    """A streamed upload into a temp object (hashed as it goes); invisible until committed."""

    async def write(self, data: bytes) -> None:
        """Append; ``GatewayError(object_too_large)`` past the cap (nothing past it is kept)."""

    async def commit(self) -> Stored:
        """Make it durable through svc-storage; returns once svc-storage acknowledged."""

    async def abort(self) -> None: ...


@attrs.frozen
class FetchWatch:
    """A request's side of a fetch through a peer: ``progress(n)``, n more bytes arrived (the
    request's deadline moves back); ``hangup()`` returns when the client has gone (the fetch
    then stops: nobody would get the object)."""

    progress: Callable[[int], None] | None
    hangup: Callable[[], Awaitable[None]]


class Backend(Protocol):
    async def open_object(
        self, obj_id: str, prefetch: int, watch: FetchWatch | None = None
    ) -> StoredObject:
        """Raises ``not_found``, or ``integrity_failure`` (never serve it: quarantine it).
        ``watch``: what a fetch through a peer reports to and stops on."""

    def held(self, obj_id: str) -> bytes | None:
        """A raw object's bytes, verified when read and unchanged in the store since, if the
        backend keeps them at hand (no await, no I/O beyond a stat); else None: the caller
        opens it as usual (``open_object``)."""

    async def exists(self, obj_id: str) -> bool:
        """Whether the store holds ``obj_id`` (no verification: for a conditional GET)."""

    async def put_small(self, data: bytes) -> Stored:
        """Store a body that fits in one command; durable when it returns."""

    async def begin_upload(self, max_size: int) -> Upload: ...

    async def free_space(self, *, fresh: bool = False) -> tuple[int, int] | None:
        """(bytes, objects) the store can still take (a recent view, or read now when
        ``fresh``), None if unknown."""

    async def quarantine(self, obj_id: str) -> None: ...

    async def get_name(self, name: str) -> NameRecord: ...

    async def put_name(
        self, name: str, obj_id: str, expect_version: int | None, type_: str | None = None
    ) -> NameRecord:
        """``type_`` None: the name takes the type recorded for ``obj_id`` (``set_type``)."""

    async def set_type(self, obj_id: str, type_: str) -> None:
        """Record the media type ``obj_id`` was uploaded with (durable when it returns)."""

    async def list_names(self, prefix: str, after: str, limit: int) -> NameList: ...

    async def mail(self, request: Request[R], timeout: float) -> R:
        """svc-mailbox's typed reply to ``request`` (``ipc.proto.mailbox``), else GatewayError."""
