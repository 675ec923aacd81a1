"""``ServiceContext.ready`` says Health{ok} at once (a respawn is back as soon as it says so),
and the heartbeat does not repeat what was just said."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import trio

from ipc import events
from kernel.service import ServiceContext, _heartbeat


class Recorder:
    def __init__(self) -> None:
        self.published: list[object] = []

    def publish(self, event: object) -> None:
        self.published.append(event)


def context(bus: Recorder) -> ServiceContext:
    ctx = ServiceContext(
        "svc-x",
        Path("/nonexistent"),
        Path("/nonexistent"),
        cast(Any, None),
        cast(Any, None),
        cast(Any, bus),
        cast(Any, None),
    )
    ctx._live = trio.Event()
    return ctx


async def test_ready_publishes_health_before_any_checkpoint() -> None:
    bus = Recorder()
    ctx = context(bus)
    ctx.ready()
    assert bus.published == []  # not live yet (a spare): nothing is said
    assert ctx._live is not None
    ctx._live.set()
    ctx.ready()
    assert bus.published == [events.Health(service="svc-x", ok=True)]


async def test_the_heartbeat_skips_the_turn_ready_covered(autojump_clock: trio.abc.Clock) -> None:
    bus = Recorder()
    ctx = context(bus)
    assert ctx._live is not None
    ctx._live.set()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_heartbeat, ctx, 1.0)
        await trio.sleep(0.1)
        ctx.ready()
        await trio.sleep(0.5)
        assert len(bus.published) == 1  # ready's, not one more from the heartbeat's wake
        await trio.sleep(1.0)
        assert len(bus.published) == 2  # then one per interval
        nursery.cancel_scope.cancel()
