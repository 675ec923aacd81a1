"""svc-storage's process (``python -m services.storage``): its protocol over ``Store``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ipc import ids, oap
from ipc.commands import CommandClient
from ipc.proto import index
from ipc.proto import storage as proto
from ipc.proto.codec import Request, call
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.lib import objstore
from services.storage.admin import admin_routes
from services.storage.housekeeping import Housekeeper, NamedIds
from services.storage.settings import StorageSettings
from services.storage.store import Store

FEATURES = ("storage",)
INDEX = "svc-index"
INDEX_TIMEOUT = 10.0  # one page of names


def make_handler(
    ctx: ServiceContext, store: Store, keeper: Housekeeper
) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    async def dispatch(req: Request[object]) -> Any:
        match req:
            case proto.Commit(tmp=tmp, id=obj_id, size=size):
                return proto.Stored(obj_id, size, await store.commit(tmp, obj_id, size))
            case proto.Put(data=data):
                obj_id, created = await store.put(data)
                return proto.Stored(obj_id, len(data), created)
            case proto.Stat(id=obj_id):
                return proto.StatReply(obj_id, await store.stat(obj_id))
            case proto.Quarantine(id=obj_id):
                return proto.Quarantined(await store.quarantine(obj_id))
            case proto.ListObjects(after=after, max=limit, chunks=chunks):
                return await keeper.list_objects(after, limit, bool(chunks))
            case proto.Touch(id=obj_id):
                return proto.Touched(obj_id, await keeper.touch(obj_id))
            case proto.Pin(id=obj_id):
                return proto.PinReply(obj_id, True, await keeper.pin(obj_id))
            case proto.Unpin(id=obj_id):
                return proto.PinReply(obj_id, False, await keeper.unpin(obj_id))
            case proto.ListPins(after=after, max=limit):
                return await keeper.list_pins(after, limit)
            case proto.Gc(grace=grace, dry_run=dry_run):
                return await keeper.gc(grace, dry_run)
            case proto.Usage():
                if not store.exact and store.full_for(0):  # only the count may say "full"
                    await store.counted.wait()
                s = store.settings
                return proto.UsageReply(
                    bytes=store.usage.bytes,
                    objects=store.usage.objects,
                    max_bytes=s.max_bytes,
                    max_objects=s.max_objects,
                    max_object_size=s.max_object_size,
                )
        raise oap.OapError("schema_invalid", f"svc-storage has no op {req.OP!r}")

    return protocol_handler(
        proto.PROTOCOL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
    )


@asynccontextmanager
async def named_ids(ctx: ServiceContext) -> AsyncIterator[NamedIds]:
    """What a GC asks for the ids names point at: every page of svc-index's ``list``. A node
    without svc-index has no names; an svc-index that does not answer fails the GC (503), so
    nothing is removed on a guess."""
    if not any(spec.name == INDEX for spec in ctx.config.services):

        async def no_names() -> set[str]:
            return set()

        yield no_names
        return
    async with CommandClient.connect(
        ctx.runtime_dir, INDEX, max_inflight=1, timeout=INDEX_TIMEOUT
    ) as client:

        async def every_name() -> set[str]:
            named: set[str] = set()
            after = ""
            while True:
                try:
                    page = await call(
                        client, index.PROTOCOL, index.ListNames(after=after, max=index.LIST_MAX)
                    )
                except oap.OapError as exc:
                    raise oap.OapError(
                        "unavailable", f"svc-index did not list the names ({exc.reason})"
                    ) from None
                named.update(ids.parse_id(record.id) for record in page.names)
                if not page.more or not page.names:
                    return named
                after = page.names[-1].name

        yield every_name


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings_as(StorageSettings)
    store = Store(objstore.store_root(ctx.data_dir), settings, ctx.metrics)
    await store.lay_out()
    async with named_ids(ctx) as names, trio.open_nursery() as nursery:
        keeper = Housekeeper(store, names)
        server = ctx.command_server(make_handler(ctx, store, keeper), admin=admin_routes(keeper))
        # a warm spare waits here; the store is opened only by the live instance (its usage hint
        # is the last process's until that one is gone)
        await ctx.live()
        await store.open()
        nursery.start_soon(store.run_committer)
        await nursery.start(server.run)
        ctx.ready()
        # background work starts once ready: its worker threads (fsyncs, the recount, the temp
        # sweep) would otherwise hold the GIL while the service is coming back
        nursery.start_soon(store.sync_fanouts)
        nursery.start_soon(store.sweep_forever)
        nursery.start_soon(store.keep_usage)


if __name__ == "__main__":
    run_service(main, warm=True)
