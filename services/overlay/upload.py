"""Object uploads over the overlay (``put``): one connection's open uploads, and receiving one.

Guarantees:

- the write token (the frame's capability segment) is checked before anything is stored: no
  token → 401 ``cap_required``, a bad one → 403 ``cap_invalid``, a caveat that does not allow
  the write (op, size, audience) → 403 ``cap_denied``; the token is never logged;
- the bytes go to a temp object; the answer is sent only once they hashed to the claimed id
  (else 422 ``digest_mismatch``, nothing kept) and svc-storage made the object durable;
- every DATA frame must continue exactly where the last ended, within the announced size;
- a refused upload's remaining frames are dropped until its END (the client sent them already),
  and at most ``limit`` uploads are open on one connection (one more: 429 ``busy``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from ipc import caps, oap
from ipc.proto import overlay, storage
from ipc.transport import ChannelClosed, Connection
from kernel import logs
from services.lib import objstore
from services.lib.tokens import KeysNotLoaded, TokenGate

__all__ = ["Uploads", "authorize", "check_token"]

Commit = Callable[[storage.Commit], Awaitable[storage.Stored]]
QUEUE = 8  # frames waiting for one upload's writer


def authorize(gate: TokenGate | None, frame: oap.Frame, request: overlay.Put) -> None:
    """Raise the ``OapError`` that refuses this upload, if any (``gate`` None: writes open)."""
    check_token(gate, frame, "put", None, request.size)


def check_token(
    gate: TokenGate | None, frame: oap.Frame, op: str, name: str | None, size: int | None
) -> caps.Token | None:
    """Raise the ``OapError`` that refuses the write ``op`` by the token in ``frame``'s
    capability segment: 401 ``cap_required`` (none), 403 ``cap_invalid``, 403 ``cap_denied``
    (a caveat: op, prefix, size, audience), 503 ``unavailable`` (no key set yet). The verified
    token (None when writes are open)."""
    if gate is None:
        return None
    if not frame.cap:
        raise oap.OapError("cap_required", f"a {op} needs a capability token in the cap segment")
    try:
        return gate.verify(frame.cap.decode("ascii", "replace"), op, name, size)
    except KeysNotLoaded as exc:
        raise oap.OapError("unavailable", str(exc), retry_after=1) from None
    except caps.CapDenied as exc:
        raise oap.OapError("cap_denied", exc.detail) from None
    except caps.CapError as exc:
        raise oap.OapError("cap_invalid", exc.detail) from None


class Uploads:
    """The open uploads of one connection, by corr_id.

    A refused or failed upload is remembered as "dropping" so its remaining frames are dropped
    until its END. Its sender may never send that END (the SDK stops at the refusal), so a
    dropping entry never counts toward ``limit``, and at most ``DROPPING_FACTOR * limit`` are
    remembered (the oldest is forgotten first): memory stays bounded either way."""

    DROPPING_FACTOR = 4

    def __init__(self, conn: Connection, root: Path, commit: Commit, limit: int) -> None:
        self.conn = conn
        self.root = root
        self.commit = commit
        self.limit = limit
        self._open: dict[int, trio.MemorySendChannel[oap.Frame] | None] = {}  # None: dropping
        self._live = 0  # entries that are not None: uploads being received

    def owns(self, frame: oap.Frame) -> bool:
        return frame.corr_id in self._open and not oap.is_hello_request(frame)

    async def route(self, frame: oap.Frame) -> None:
        dest = self._open[frame.corr_id]
        if dest is None:  # a refused upload: drop its frames until its END
            if frame.flags & oap.END:
                del self._open[frame.corr_id]
            return
        try:
            await dest.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self._open.get(frame.corr_id) is not None:  # it failed meanwhile: drop the rest
                self._drop(frame.corr_id)
            if frame.flags & oap.END:
                self._open.pop(frame.corr_id, None)

    def refuse(self, frame: oap.Frame) -> None:
        """Drop the frames that follow this refused upload's START (unless it ended there)."""
        if not frame.flags & oap.END:
            self._open[frame.corr_id] = None
            self._forget_oldest_dropping()

    def _drop(self, corr_id: int) -> None:
        """A live upload failed: drop the rest of its frames (until its END)."""
        if self._open.get(corr_id) is not None:
            self._live -= 1
        self._open[corr_id] = None
        self._forget_oldest_dropping()

    def _forget_oldest_dropping(self) -> None:
        dropping = [c for c, dest in self._open.items() if dest is None]
        for corr_id in dropping[: max(0, len(dropping) - self.DROPPING_FACTOR * self.limit)]:
            del self._open[corr_id]

    def _finish(self, corr_id: int) -> None:
        if self._open.pop(corr_id, None) is not None:
            self._live -= 1

    def start(self, nursery: trio.Nursery, frame: oap.Frame, request: overlay.Put) -> None:
        if self._live >= self.limit:
            raise oap.OapError(
                "busy", f"{self.limit} uploads open on this connection", retry_after=1
            )
        send, receive = trio.open_memory_channel[oap.Frame](QUEUE)
        self._open[frame.corr_id] = send
        self._live += 1
        nursery.start_soon(self._receive, frame, request, receive)

    async def _receive(
        self, req: oap.Frame, request: overlay.Put, frames: trio.MemoryReceiveChannel[oap.Frame]
    ) -> None:
        temp: objstore.TempObject | None = None
        ended = False
        try:
            temp = await trio.to_thread.run_sync(
                lambda: objstore.TempObject(self.root, max_size=max(request.size, 1))
            )
            off = 0
            async with frames:
                async for frame in frames:
                    if frame.flags & oap.END:
                        ended = True
                        break
                    data = oap.unpack_payload(oap.Data, frame.payload)
                    if (
                        data.obj != request.id
                        or data.off != off
                        or off + len(data.data) > request.size
                    ):
                        raise oap.OapError("schema_invalid", f"DATA out of place at {data.off}")
                    await trio.to_thread.run_sync(temp.write, data.data)
                    off += len(data.data)
            got, size, tmp = await trio.to_thread.run_sync(temp.finish)
            temp = None
            if got != request.id or size != request.size:
                await trio.to_thread.run_sync(objstore.remove_temp, self.root, tmp)
                raise oap.OapError("digest_mismatch", f"the bytes hash to {got} ({size} bytes)")
            done = await self.commit(storage.Commit(tmp=tmp, id=got, size=size))
            reply = overlay.Stored(id=got, size=size, created=bool(done.created))
            logs.log(
                "object_uploaded",
                id=got,
                size=size,
                created=reply.created,
                conn_id=self.conn.conn_id,
                corr_id=req.corr_id,
            )
            await self.conn.channel.send(overlay.PEER.reply_frame(req, reply))
        except (oap.OapError, objstore.StoreError) as exc:
            if isinstance(exc, objstore.StoreError):
                reason = (
                    "object_too_large" if isinstance(exc, objstore.ObjectTooLarge) else "internal"
                )
                exc = oap.OapError(reason, str(exc))
            self._drop(req.corr_id)  # drop the rest of its frames (until its END)
            with contextlib.suppress(ChannelClosed):
                await self.conn.channel.send(oap.error_frame(req, exc))
        finally:
            if ended or self._open.get(req.corr_id) is not None:
                self._finish(req.corr_id)
            if temp is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(temp.abort)
