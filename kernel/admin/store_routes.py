"""Store housekeeping on the control socket: ``ronctl ls``, ``pin add|rm|ls`` and ``gc``.

Routes (answers are JSON; svc-storage's fields as they are):

- ``GET /store/objects?after=ID&max=N`` -> ``{"objects": [{"id","size","mtime","pinned"}],
  "more"}``, in id order, N in 1..1000 (100);
- ``GET /store/pins?after=ID&max=N`` -> ``{"ids": [...], "more"}``;
- ``PUT /store/pins/{id}`` -> ``{"id","pinned":true,"changed"}`` (404 if not stored);
  ``DELETE /store/pins/{id}`` -> ``{"id","pinned":false,"changed"}``;
- ``POST /store/gc`` ``{"grace": seconds, "dry_run": bool}`` -> svc-storage's ``GcReport``.

Why the control socket only, listing included: the list of what a node stores tells what its
users keep; pins and GC change the node. Pins and GCs are audited.
"""

from __future__ import annotations

from typing import Any

import attrs

from ipc import oap
from ipc.proto import storage as proto
from kernel.admin.control import NodeControl
from kernel.admin.http import BadBody, Request, Route, one_line, read_json, send_error, send_json

__all__ = ["DEFAULT_GRACE", "GC_TIMEOUT", "StoreRoutes"]

DEFAULT_GRACE = 3600.0  # a GC keeps whatever was written or named in the last hour
GC_TIMEOUT = 600.0  # a GC of a million objects takes well under this (one stat each)
CALL_TIMEOUT = 10.0
_STATUS = {
    "schema_invalid": 400,
    "not_found": 404,
    "busy": 429,
    "unavailable": 503,
    "timeout": 503,
    "not_ready": 503,
}


class StoreRoutes:
    def __init__(self, control: NodeControl) -> None:
        self._control = control

    def table(self) -> tuple[Route, ...]:
        return (
            Route("/store/objects", {"GET": self.objects}),
            Route("/store/pins", {"GET": self.pins}),
            Route("/store/pins/{id}", {"PUT": self.pin, "DELETE": self.pin}),
            Route("/store/gc", {"POST": self.gc}),
        )

    async def _ask(self, req: Request, request: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """svc-storage's reply, or None after answering the error."""
        try:
            reply = await self._control.storage(request, timeout)
        except oap.OapError as exc:
            status = _STATUS.get(exc.reason, 502)
            headers = [(b"retry-after", b"1")] if status in (429, 503) else []
            body = {"error": exc.reason if status != 400 else "bad_request"}
            body["detail"] = exc.detail or exc.reason
            await send_json(req.send, status, body, headers=headers)
            return None
        if reply is None:
            await send_error(req.send, 404, "not_found", "this node runs no svc-storage")
        return reply

    async def _page(self, req: Request, make: Any) -> None:
        try:
            request = make(after=req.query_one("after", ""), max=int(req.query_one("max", "100")))
        except (ValueError, TypeError) as exc:
            await send_error(req.send, 400, "bad_request", one_line(exc))
            return
        reply = await self._ask(req, request)
        if reply is not None:
            await send_json(req.send, 200, attrs.asdict(reply))

    async def objects(self, req: Request) -> None:
        await self._page(req, proto.ListObjects)

    async def pins(self, req: Request) -> None:
        await self._page(req, proto.ListPins)

    async def pin(self, req: Request) -> None:
        obj_id = req.params["id"]
        try:
            request = (proto.Pin if req.method == "PUT" else proto.Unpin)(id=obj_id)
        except ValueError as exc:
            await send_error(req.send, 400, "bad_request", one_line(exc))
            return
        reply = await self._ask(req, request)
        if reply is not None:
            act = "pin" if reply.pinned else "unpin"
            self._control.audit(act, id=obj_id, changed=reply.changed, caller=req.caller)
            await send_json(req.send, 200, attrs.asdict(reply))

    async def gc(self, req: Request) -> None:
        try:
            doc = await read_json(req)
            grace, dry_run = doc.get("grace", DEFAULT_GRACE), doc.get("dry_run", False)
            if not isinstance(dry_run, bool) or isinstance(grace, bool):
                raise BadBody('expected {"grace": seconds, "dry_run": true|false}')
            request = proto.Gc(grace=float(grace), dry_run=dry_run)
        except (BadBody, ValueError, TypeError) as exc:
            await send_error(req.send, 400, "bad_request", one_line(exc))
            return
        reply = await self._ask(req, request, GC_TIMEOUT)
        if reply is not None:
            if not dry_run:
                self._control.audit("gc", removed=reply.removed, caller=req.caller)
            await send_json(req.send, 200, attrs.asdict(reply))
