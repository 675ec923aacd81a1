"""svc-mailbox's process (``python -m services.mailbox``): its protocol over ``Mailboxes``.

At start it learns the node id from svc-passport (a send to ``name@<this node>`` is local),
opens the tables under ``<data_dir>/mailbox`` (tmpfs under amnesia) and serves its command
socket; the outbox's forwarder sends through svc-overlay when the profile runs one.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import attrs
import trio

from ipc import oap
from ipc.commands import CommandClient
from ipc.proto import mailbox as proto
from ipc.proto import overlay
from ipc.proto.admin import AdminAnswer
from ipc.proto.codec import Request, call
from ipc.transport import PeerAddr
from kernel import logs
from kernel.admin_calls import AdminCall, Answer, answer_json
from kernel.identity import wait_identity
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.mailbox.box import Mailboxes
from services.mailbox.checks import check_send
from services.mailbox.meter import DepthMeter
from services.mailbox.outbox import Forwarder
from services.mailbox.reach import Reach
from services.mailbox.settings import MailboxSettings
from services.mailbox.store import MailDb

FEATURES = ("mailbox",)
MAILBOX_DIR = "mailbox"
OVERLAY = "svc-overlay"
DELIVER_TIMEOUT = 15.0  # seconds for a remote node to accept a batch


def make_handler(
    ctx: ServiceContext, box: Mailboxes, node_id: str, reach: Reach
) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:

    async def dispatch(req: Request[object]) -> object:
        match req:
            case proto.Send(mailbox=address, messages=messages, origin=origin, owner=owner):
                target, remote = check_send(address, messages, node_id, origin)
                if remote:
                    await reach.check(target)
                return await box.send(target, remote, messages, origin, owner or origin)
            case proto.Receive(mailbox=mb, max=limit, visibility=vis, wait=wait):
                return await box.receive(proto.check_mailbox(mb), limit, vis, wait)
            case proto.Ack(mailbox=mb, receipts=receipts):
                return await box.ack(proto.check_mailbox(mb), receipts)
            case proto.Nack(mailbox=mb, receipts=receipts, delay=delay):
                return await box.nack(proto.check_mailbox(mb), receipts, delay)
            case proto.Extend(mailbox=mb, receipts=receipts, visibility=vis):
                return await box.extend(proto.check_mailbox(mb), receipts, vis)
            case proto.Dlq(mailbox=mb, max=limit):
                return await box.dlq(proto.check_mailbox(mb), limit)
            case proto.Redrive(mailbox=mb, max=limit):
                return await box.redrive(proto.check_mailbox(mb), limit)
            case proto.Outbox(max=limit):
                return await box.outbox_list(limit)
            case proto.Receipt(msg_id=msg_id):
                return await box.receipt(msg_id)
        raise oap.OapError("schema_invalid", f"svc-mailbox has no op {req.OP!r}")

    return protocol_handler(
        proto.PROTOCOL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
    )


# The committer thread releases the GIL at every SQLite statement and must get it back from the
# event loop, which holds it while it decodes requests; CPython's default switch interval (5 ms)
# then stretches a commit of a few hundred messages to ~60 ms (bench/mailbox.py).
GIL_SWITCH_INTERVAL = 0.0005


def outbox_view(box: Mailboxes) -> Answer:
    """``GET /outbox``: what waits for another node to accept it. No message ids: the TCP admin
    plane is open, and a stranger must not learn ids to reuse."""

    async def view(_call: AdminCall) -> AdminAnswer:
        reply = await box.outbox_list(proto.Outbox().max)
        entries = [attrs.asdict(e, filter=lambda a, _v: a.name != "msg_id") for e in reply.entries]
        return answer_json(200, {"depth": reply.depth, "entries": entries})

    return view


async def main(ctx: ServiceContext) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    settings = ctx.settings_as(MailboxSettings)
    has_overlay = any(spec.name == OVERLAY for spec in ctx.config.services)
    async with (
        CommandClient.connect(ctx.runtime_dir, "svc-passport", max_inflight=4, timeout=2.0) as pp,
        CommandClient.connect(ctx.runtime_dir, OVERLAY, max_inflight=8, timeout=30.0) as ov,
    ):
        ident = await wait_identity(pp)
        if ident is None:
            logs.log("mailbox_no_identity", level="error", reason="svc-passport did not answer")
            raise SystemExit(2)
        db = MailDb(ctx.data_dir / MAILBOX_DIR, settings.policy())
        try:
            await trio.to_thread.run_sync(db.connect)
            # a warm spare waits here, connected: the tables are the live instance's alone
            await ctx.live()
            count = await trio.to_thread.run_sync(db.load)
            meter = DepthMeter(ctx.metrics, db, settings.depth_labels)
            box = Mailboxes(db, on_commit=meter.after_commit)
            meter.show_all()
            logs.log("mailbox_opened", messages=count, outbox=db.outbox_depth())

            async def deliver(node: str, request: proto.Send) -> proto.Sent:
                if not has_overlay:
                    raise oap.OapError(
                        "unavailable", "this node runs no svc-overlay", retry_after=5
                    )
                reply: proto.Sent = await call(
                    ov,
                    overlay.LOCAL,
                    overlay.Deliver(
                        node_id=node, mailbox=request.mailbox, messages=request.messages
                    ),
                    timeout=DELIVER_TIMEOUT,
                )
                return reply

            forwarder = Forwarder(
                box, deliver, retry_base=settings.retry_base, retry_max=settings.retry_max
            )

            async def locate(node: str) -> object:
                return await call(ov, overlay.LOCAL, overlay.Locate(node_id=node), timeout=20.0)

            listed = frozenset(PeerAddr.parse(t).node_id for t in ctx.config.overlay.peers)
            reach = Reach(listed, locate if has_overlay else None)
            server = ctx.command_server(
                make_handler(ctx, box, ident.node_id, reach), admin={"/outbox": outbox_view(box)}
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(box.run)
                await nursery.start(server.run)
                ctx.ready()
                # the outbox's first look (a database read in a worker thread) once ready: it
                # would otherwise hold the GIL while the service is coming back
                nursery.start_soon(forwarder.run)
        finally:
            db.close()


if __name__ == "__main__":
    run_service(main, warm=True)
