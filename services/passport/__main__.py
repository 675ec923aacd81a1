"""svc-passport's process (``python -m services.passport``): its protocol over ``Authority``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ipc import oap
from ipc.proto import passport as proto
from ipc.proto.codec import Request
from kernel import logs
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.lib.keys import KeyCustodyError
from services.passport.authority import Authority
from services.passport.revocations import RevocationFull
from services.passport.settings import PassportSettings

FEATURES = ("passport", "audit")
TICK_MAX = 60.0  # seconds between schedule checks at most


def make_handler(
    ctx: ServiceContext, authority: Authority, lock: trio.Lock, schedule: Schedule
) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    """``lock``: one act at a time (the files have one writer), shared with the schedule."""

    async def act(fn: Callable[[], Any]) -> Any:
        async with lock:
            result = await trio.to_thread.run_sync(fn)
        schedule.changed()
        return result

    async def dispatch(req: Request[object]) -> object:
        now = time.time()
        try:
            match req:
                case proto.Keys(since=since):
                    return authority.keyset(since, now)
                case proto.Identity():
                    return authority.identity()
                case proto.Mint():
                    minted = await act(lambda: authority.mint(req, now))
                    logs.log("token_minted", id=minted.id, kid=minted.kid, ops=",".join(req.ops))
                    return minted
                case proto.Revoke():
                    revoked = await act(lambda: authority.revoke(req, now))
                    logs.log("token_revoked", id=revoked.id, already=revoked.already)
                    return revoked
                case proto.Rotate(caller=caller):
                    rotated = await act(lambda: authority.rotate(now, caller=caller))
                    logs.log("key_rotated", kid=rotated.kid, previous=rotated.previous)
                    return rotated
                case proto.Audit():
                    return await act(lambda: authority.audit(req, now))
                case proto.AuditCheck():
                    return await act(authority.audit_check)
        except ValueError as exc:
            raise oap.OapError("bad_request", str(exc)) from None
        except RevocationFull as exc:
            raise oap.OapError("insufficient_storage", str(exc)) from None
        raise oap.OapError("schema_invalid", f"svc-passport has no op {req.OP!r}")

    return protocol_handler(
        proto.PROTOCOL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
    )


class Schedule:
    """Rotates and expires on time: sleeps until the next change (at most a minute), then
    ticks; an act that moves the next change (a rotation) wakes it through ``changed``."""

    def __init__(self, authority: Authority, lock: trio.Lock) -> None:
        self._authority = authority
        self._lock = lock
        self._wake = trio.Event()

    def changed(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            delay = max(0.05, min(TICK_MAX, self._authority.next_change() - time.time()))
            with trio.move_on_after(delay) as slept:
                await self._wake.wait()
            self._wake = trio.Event()
            if slept.cancelled_caught:
                async with self._lock:
                    await trio.to_thread.run_sync(lambda: self._authority.tick(time.time()))


async def main(ctx: ServiceContext) -> None:
    ctx.settings_as(PassportSettings)
    try:
        authority = await trio.to_thread.run_sync(
            lambda: Authority(ctx.data_dir, ctx.config.auth, now=time.time())
        )
    except KeyCustodyError as exc:
        logs.log("key_custody_refused", level="error", reason=str(exc))
        raise SystemExit(2) from None
    logs.log("passport_ready", node_id=authority.node_id, kid=authority.keys.active.kid)
    lock = trio.Lock()
    schedule = Schedule(authority, lock)
    server = ctx.command_server(make_handler(ctx, authority, lock, schedule))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(schedule.run)
        await nursery.start(server.run)
        ctx.ready()


if __name__ == "__main__":
    run_service(main)
