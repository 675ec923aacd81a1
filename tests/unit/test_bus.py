"""The bus: delivery, publish never blocks, drops and lag counted, no slow joiner (in one
process), and every event names the pid that published it (across processes)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import trio

from ipc.bus import Bus
from ipc.bus_proxy import BusProxy
from ipc.events import ConfigUpdated, Health, ServiceCrashed, Shutdown


async def _start_proxy(nursery: trio.Nursery, runtime_dir: Path, **kw: object) -> BusProxy:
    proxy = BusProxy(runtime_dir, **kw)
    await nursery.start(proxy.run)
    return proxy


async def test_events_reach_every_subscriber_in_order(tmp_path: Path) -> None:
    sent = [Health(service="svc-a", ok=True), ServiceCrashed(service="svc-a", reason="exit 3")]
    sent += [ConfigUpdated(version=v) for v in range(1, 200)] + [Shutdown()]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await _start_proxy(nursery, tmp_path)
            async with (
                Bus.connect(tmp_path) as pub,
                Bus.connect(tmp_path) as sub1,
                Bus.connect(tmp_path, topics=["kernel.config"]) as sub2,
            ):
                for ev in sent:
                    assert pub.publish(ev)
                got1 = [await sub1.recv() for _ in sent]
                got2 = [await sub2.recv() for ev in sent if isinstance(ev, ConfigUpdated)]
            nursery.cancel_scope.cancel()
    assert got1 == sent
    assert got2 == [ev for ev in sent if isinstance(ev, ConfigUpdated)]
    assert sub1.stats.lagged == 0


async def test_publish_never_blocks_and_drops_are_counted(tmp_path: Path) -> None:
    """10x capacity published with a stalled subscriber and no flusher turn: every call returns at
    once, the outbox holds at most `capacity`, the rest are dropped and counted."""
    capacity = 64
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await _start_proxy(nursery, tmp_path, capacity=capacity)
            async with (
                Bus.connect(tmp_path, capacity=capacity) as pub,
                Bus.connect(tmp_path, capacity=capacity),
            ):
                # publish() is synchronous: it cannot wait for the subscriber or the flusher.
                results = [pub.publish(ConfigUpdated(version=i)) for i in range(10 * capacity)]
                assert results.count(True) == capacity
                assert pub.stats.dropped == 9 * capacity
                assert pub.stats.published == capacity
            nursery.cancel_scope.cancel()


async def test_stalled_subscriber_lags_and_the_gap_is_counted(tmp_path: Path) -> None:
    capacity = 16
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            proxy = await _start_proxy(nursery, tmp_path, capacity=capacity)
            async with (
                Bus.connect(tmp_path, capacity=capacity) as pub,
                Bus.connect(tmp_path, capacity=capacity) as stalled,
            ):
                # Publish far more than the subscriber's queues and socket buffers hold (1 KiB
                # events), flushing as we go so the publisher itself drops nothing, while the
                # subscriber does not read.
                total = 200 * capacity
                for i in range(total):
                    assert pub.publish(ServiceCrashed(service="svc-x", reason=f"{i:08d}" * 128))
                    if i % 8 == 7:
                        await pub.flushed()
                await pub.flushed()
                marker = ServiceCrashed(service="svc-marker", reason="end")  # same topic: gaps show
                while proxy.forwarded < total:  # the proxy saw everything before the marker
                    await trio.sleep(0.01)
                pub.publish(marker)
                while (await stalled.recv()) != marker:
                    pass
                assert pub.stats.dropped == 0
                assert stalled.stats.lagged >= 1
                assert stalled.stats.received + stalled.stats.lag_events == total + 1
            nursery.cancel_scope.cancel()


async def test_connect_times_out_without_a_proxy(tmp_path: Path) -> None:
    with trio.fail_after(10):
        try:
            async with Bus.connect(tmp_path, sync_timeout=0.3):
                raise AssertionError("connected to a proxy that does not exist")
        except trio.TooSlowError:
            pass


REPO = str(Path(__file__).resolve().parents[2])
PUBLISHER = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from ipc.bus import Bus
    from ipc.events import Health

    async def main():
        async with Bus.connect(Path(sys.argv[1]), topics=()) as bus:
            bus.publish(Health(service="svc-p", ok=True))

    trio.run(main)
    """
)


async def test_every_event_names_the_pid_that_published_it(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await _start_proxy(nursery, tmp_path)
            async with Bus.connect(tmp_path) as sub:
                assert sub.publish(Health(service="svc-self", ok=True))
                assert await sub.recv_with_sender() == (Health("svc-self", True), os.getpid())
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-c", PUBLISHER, str(tmp_path)],
                    env={**os.environ, "PYTHONPATH": REPO},
                )
                event, sender = await sub.recv_with_sender()
                assert event == Health(service="svc-p", ok=True)
                assert sender == proc.pid != os.getpid()
                assert await proc.wait() == 0
            nursery.cancel_scope.cancel()
