"""svc-index's process (``python -m services.index``): its protocol over ``NameIndex``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from ipc import oap
from ipc.proto import index as proto
from ipc.proto.codec import Request
from kernel import logs
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.index.names import NameIndex
from services.index.settings import IndexSettings

FEATURES = ("index",)
INDEX_DIR = "index"


def _record(name: str, obj_id: str, version: int, type_: str) -> proto.NameRecord:
    """The wire record: an untyped name ("" in the table) has no ``type`` at all."""
    return proto.NameRecord(name, obj_id, version, type_ or None)


def make_handler(
    ctx: ServiceContext, index: NameIndex
) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    async def dispatch(req: Request[object]) -> proto.NameRecord | proto.NameList | proto.TypeSet:
        match req:
            case proto.GetName(name=name):
                found = await index.get(proto.check_name(name))
                if found is None:
                    raise oap.OapError("not_found", f"no name {name!r}")
                return _record(name, *found)
            case proto.ListNames(prefix=prefix, after=after, max=limit):
                rows, more = await index.list(prefix, after, limit)
                return proto.NameList(names=tuple(_record(*r) for r in rows), more=more)
            case proto.PutName(name=name, id=obj_id, expect_version=expect, type=type_):
                checked = None if type_ is None else proto.check_media_type(type_)
                version, served = await index.put(proto.check_name(name), obj_id, expect, checked)
                return _record(name, obj_id, version, served)
            case proto.SetType(id=obj_id, type=type_):
                checked = proto.check_media_type(type_)
                await index.set_type(obj_id, checked)
                return proto.TypeSet(obj_id, checked)
        raise oap.OapError("schema_invalid", f"svc-index has no op {req.OP!r}")

    return protocol_handler(
        proto.PROTOCOL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
    )


async def main(ctx: ServiceContext) -> None:
    ctx.settings_as(IndexSettings)  # none today; the node refused any key before we started
    index = NameIndex(ctx.data_dir / INDEX_DIR)
    server = ctx.command_server(make_handler(ctx, index))
    try:
        # a warm spare opens its connections ahead and waits; only the live instance writes
        await index.open()
        await ctx.live()
        logs.log("index_opened", path=str(index.path))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(index.run_committer)
            await nursery.start(server.run)
            ctx.ready()
    finally:
        index.close()


if __name__ == "__main__":
    run_service(main, warm=True)
