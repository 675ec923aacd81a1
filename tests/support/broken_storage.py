"""A deliberately BROKEN svc-storage, for the drill's must-fail test: it acknowledges before it is
durable ("reply first, rename later").

``commit`` and ``put`` answer success at once and make the object durable ``LATE_COMMIT`` seconds
later in the background. Without a crash every object still appears; a crash (kill, panic, hang)
inside that window loses acknowledged writes, which is exactly what a restart storm must catch.
Run it in place of svc-storage by pointing a profile's ``module`` at
``tests.support.broken_storage``.
"""

from __future__ import annotations

import contextlib

import trio

from ipc import oap
from kernel.service import run_service
from services.lib import objstore
from services.storage import __main__ as storage_main
from services.storage import store as storage
from services.storage.exposes import EXPOSES  # noqa: F401  (svc-storage's metrics and routes)
from services.storage.settings import StorageSettings as Settings  # noqa: F401  (checked at load)

LATE_COMMIT = 2.0

_original_commit = storage.Store.commit
_original_committer = storage.Store.run_committer
_late: list[trio.Nursery] = []  # the background nursery, once the committer runs


async def _commit_later(store: storage.Store, tmp: str, obj_id: str, size: int) -> None:
    await trio.sleep(LATE_COMMIT)
    with contextlib.suppress(oap.OapError):
        await _original_commit(store, tmp, obj_id, size)
    objstore.remove_temp(store.root, tmp)


async def commit_acking_early(store: storage.Store, tmp: str, obj_id: str, size: int) -> bool:
    store._check_size(size)
    _late[0].start_soon(_commit_later, store, tmp, obj_id, size)
    return True  # BROKEN: acknowledged before anything is durable


async def put_acking_early(store: storage.Store, data: bytes) -> tuple[str, bool]:
    store._check_size(len(data))

    def write() -> tuple[str, int, str]:
        with objstore.TempObject(store.root, len(data)) as temp:
            temp.write(data)
            return temp.finish()

    obj_id, size, tmp = await trio.to_thread.run_sync(write)
    _late[0].start_soon(_commit_later, store, tmp, obj_id, size)
    return obj_id, True  # BROKEN: acknowledged before anything is durable


async def committer_with_background(store: storage.Store) -> None:
    async with trio.open_nursery() as nursery:
        _late.append(nursery)
        await _original_committer(store)


storage.Store.commit = commit_acking_early  # type: ignore[method-assign]
storage.Store.put = put_acking_early  # type: ignore[method-assign]
storage.Store.run_committer = committer_with_background  # type: ignore[method-assign]

if __name__ == "__main__":
    run_service(storage_main.main)
