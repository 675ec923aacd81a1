"""svc-storage's admin routes (declared in ``services.storage.exposes``; control socket only):
``ronctl ls``, ``pin add|rm|ls`` and ``gc``. Answers are JSON, the protocol's replies as they are.

- ``GET /store/objects?after=ID&max=N`` -> ``{"objects": [{"id","size","mtime","pinned"}],
  "more"}``, in id order, N in 1..1000 (100);
- ``GET /store/pins?after=ID&max=N`` -> ``{"ids": [...], "more"}``;
- ``PUT /store/pins/{id}`` -> ``{"id","pinned":true,"changed"}`` (404 if not stored);
  ``DELETE /store/pins/{id}`` -> ``{"id","pinned":false,"changed"}``;
- ``POST /store/gc`` ``{"grace": seconds, "dry_run": bool}`` -> ``GcReport``.

Why the control socket only, listing included: the list of what a node stores tells what its
users keep; pins and GCs change the node, so their answers carry an audit record.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ipc.proto import storage as proto
from ipc.proto.admin import AdminAnswer
from kernel.admin_calls import AdminCall, Answer, BadRequest, answer_json, json_body, query_one
from services.storage.housekeeping import Housekeeper

__all__ = ["DEFAULT_GRACE", "admin_routes"]

DEFAULT_GRACE = 3600.0  # a GC keeps whatever was written or named in the last hour


def _page_args(call: AdminCall) -> tuple[str, int]:
    try:
        after, limit = query_one(call, "after", ""), int(query_one(call, "max", "100"))
        proto.ListObjects(after=after, max=limit)  # the protocol's own bounds
    except (ValueError, TypeError) as exc:
        raise BadRequest(str(exc)) from None
    return after, limit


def admin_routes(keeper: Housekeeper) -> Mapping[str, Answer]:
    """The answers to svc-storage's declared routes, over ``keeper``."""

    async def objects(call: AdminCall) -> AdminAnswer:
        chunks = query_one(call, "chunks", "") in ("1", "true")  # ronctl ls --chunks
        listing = await keeper.list_objects(*_page_args(call), chunks)
        return answer_json(200, attrs.asdict(listing))

    async def pins(call: AdminCall) -> AdminAnswer:
        return answer_json(200, attrs.asdict(await keeper.list_pins(*_page_args(call))))

    async def pin(call: AdminCall) -> AdminAnswer:
        obj_id = call.params.get("id", "")
        try:
            proto.Pin(id=obj_id)  # the id rule Pin and Unpin share
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        pinning = call.method == "PUT"
        changed = await (keeper.pin(obj_id) if pinning else keeper.unpin(obj_id))
        reply = proto.PinReply(obj_id, pinning, changed)
        act = "pin" if reply.pinned else "unpin"
        audit = {"act": act, "id": obj_id, "changed": reply.changed}
        return answer_json(200, attrs.asdict(reply), audit=audit)

    async def gc(call: AdminCall) -> AdminAnswer:
        doc = json_body(call)
        grace, dry_run = doc.get("grace", DEFAULT_GRACE), doc.get("dry_run", False)
        if (
            not isinstance(dry_run, bool)
            or not isinstance(grace, int | float)
            or isinstance(grace, bool)
        ):
            raise BadRequest('expected {"grace": seconds, "dry_run": true|false}')
        try:
            request = proto.Gc(grace=float(grace), dry_run=dry_run)
        except (ValueError, TypeError) as exc:
            raise BadRequest(str(exc)) from None
        report = await keeper.gc(request.grace, request.dry_run)
        audit = None if dry_run else {"act": "gc", "removed": report.removed}
        return answer_json(200, attrs.asdict(report), audit=audit)

    return {
        "/store/objects": objects,
        "/store/pins": pins,
        "/store/pins/{id}": pin,
        "/store/gc": gc,
    }
