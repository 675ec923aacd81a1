"""svc-storage's process (``python -m services.storage``): its protocol over ``Store``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from ipc import oap
from ipc.proto import storage as proto
from ipc.proto.codec import Request
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.lib import objstore
from services.storage.settings import StorageSettings
from services.storage.store import Store

FEATURES = ("storage",)


def make_handler(ctx: ServiceContext, store: Store) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    async def dispatch(
        req: Request[object],
    ) -> proto.Stored | proto.StatReply | proto.Quarantined | proto.UsageReply:
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
        s = store.settings
        return proto.UsageReply(
            bytes=store.usage.bytes,
            objects=store.usage.objects,
            max_bytes=s.max_bytes,
            max_objects=s.max_objects,
            max_object_size=s.max_object_size,
        )

    return protocol_handler(
        proto.PROTOCOL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
    )


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings_as(StorageSettings)
    store = Store(objstore.store_root(ctx.data_dir), settings, ctx.metrics)
    await store.open()
    server = ctx.command_server(make_handler(ctx, store))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run_committer)
        nursery.start_soon(store.sweep_forever)
        await nursery.start(server.run)
        ctx.ready()


if __name__ == "__main__":
    run_service(main)
