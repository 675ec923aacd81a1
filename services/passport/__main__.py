"""svc-passport's process (``python -m services.passport``): its protocol over ``Authority``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from ipc import oap
from ipc.proto import passport as proto
from ipc.proto.codec import Request
from kernel import logs
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.lib.keys import KEYS_DIR, KeyCustodyError, KeyStore
from services.passport.authority import EPOCH_FILE, Authority, next_epoch, revocations_of
from services.passport.revocations import RevocationFull
from services.passport.settings import PassportSettings
from services.passport.verifiers import Verifiers

FEATURES = ("passport", "audit")
TICK_MAX = 60.0  # seconds between schedule checks at most
REVOKE_WAIT = 2.5  # seconds a revoke waits for the verifiers (within the kernel's call timeout)


def make_handler(
    ctx: ServiceContext,
    authority: Authority,
    lock: trio.Lock,
    schedule: Schedule,
    verifiers: Verifiers,
) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    """``lock``: one act at a time (the files have one writer), shared with the schedule."""

    async def act(fn: Callable[[], Any]) -> Any:
        async with lock:
            result = await trio.to_thread.run_sync(fn)
        schedule.changed()
        verifiers.keys_changed()  # long polls answer with the new version at once
        return result

    async def keys(req: proto.Keys) -> proto.KeySet:
        verifiers.poll_started(req.verifier, req.since)
        try:
            if req.since == authority.version and req.wait > 0:
                await verifiers.wait_keys(req.wait)
            return authority.keyset(req.since, time.time())
        finally:
            verifiers.poll_ended(req.verifier)

    async def dispatch(req: Request[object]) -> object:
        now = time.time()
        try:
            match req:
                case proto.Keys():
                    return await keys(req)
                case proto.Identity():
                    return authority.identity()
                case proto.Mint():
                    minted = await act(lambda: authority.mint(req, now))
                    logs.log("token_minted", id=minted.id, kid=minted.kid, ops=",".join(req.ops))
                    return minted
                case proto.Revoke():
                    revoked = await act(lambda: authority.revoke(req, now))
                    # Acts take effect before they answer (DESIGN §8): every verifier refuses it.
                    pending = await verifiers.wait_applied(authority.version, REVOKE_WAIT)
                    logs.log(
                        "token_revoked",
                        id=revoked.id,
                        already=revoked.already,
                        pending=",".join(pending),
                    )
                    return attrs.evolve(revoked, pending=tuple(pending))
                case proto.Rotate(caller=caller):
                    rotated = await act(lambda: authority.rotate(now, caller=caller))
                    logs.log("key_rotated", kid=rotated.kid, previous=rotated.previous)
                    return rotated
                case proto.Audit():
                    return await act(lambda: authority.audit(req, now))
                case proto.AuditCheck():
                    return await act(authority.audit_check)
        except ValueError as exc:  # the caller's argument (a malformed token id): canon 422
            raise oap.OapError("schema_invalid", str(exc)) from None
        except RevocationFull as exc:
            raise oap.OapError("insufficient_storage", str(exc)) from None
        raise oap.OapError("schema_invalid", f"svc-passport has no op {req.OP!r}")

    return protocol_handler(
        proto.PROTOCOL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
    )


class Schedule:
    """Rotates and expires on time: sleeps until the next change (at most a minute), then
    ticks; an act that moves the next change (a rotation) wakes it through ``changed``."""

    def __init__(self, authority: Authority, lock: trio.Lock, on_tick: Callable[[], None]) -> None:
        self._authority = authority
        self._lock = lock
        self._on_tick = on_tick  # a tick may change the key set: wake the long polls
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
                self._on_tick()


async def main(ctx: ServiceContext) -> None:
    ctx.settings_as(PassportSettings)
    key_file = Path(ctx.config.identity.key_file) if ctx.config.identity.key_file else None
    # a warm spare reads the revocations ahead (up to 100,000 lines); once live, only the tail
    revoked = revocations_of(ctx.data_dir, ctx.config.auth)
    await trio.to_thread.run_sync(lambda: revoked.load(time.time(), compact=False))
    keys = await trio.to_thread.run_sync(KeyStore.read_ahead, ctx.data_dir / KEYS_DIR)
    # and reserves its start number (its fsync, on a disk, would otherwise delay the respawn)
    epoch = await trio.to_thread.run_sync(next_epoch, ctx.data_dir / EPOCH_FILE)
    await ctx.live()  # keys, epoch and audit log are the live instance's alone
    try:
        authority = await trio.to_thread.run_sync(
            lambda: Authority(
                ctx.data_dir,
                ctx.config.auth,
                now=time.time(),
                identity_file=key_file,
                revocations=revoked,
                keys=keys,
                epoch=epoch,
            )
        )
    except KeyCustodyError as exc:
        logs.log("key_custody_refused", level="error", reason=str(exc))
        raise SystemExit(2) from None
    logs.log("passport_ready", node_id=authority.node_id, kid=authority.keys.active.kid)
    lock = trio.Lock()
    verifiers = Verifiers()
    schedule = Schedule(authority, lock, verifiers.keys_changed)
    server = ctx.command_server(make_handler(ctx, authority, lock, schedule, verifiers))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(schedule.run)
        await nursery.start(server.run)
        ctx.ready()


if __name__ == "__main__":
    run_service(main, warm=True)
