"""The trio<->zmq adapter never hangs: real processes, back-pressure at small and large HWM.

Each run is bounded by a watchdog (trio.fail_after); a hang fails the test instead of freezing CI.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import zmq

from ipc.ztrio import TrioSocket

PUBSUB_MESSAGES = 200_000
ROUND_TRIPS = 20_000
WATCHDOG = 120


@asynccontextmanager
async def peer(*args: str) -> AsyncIterator[None]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.support.zmq_peer", *args], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert (await proc.stdout.receive_some(64)).startswith(b"ready")
        yield
    finally:
        proc.kill()
        await proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("hwm", [10, 1000])
async def test_pub_to_sub_delivers_everything_under_back_pressure(tmp_path: Path, hwm: int) -> None:
    endpoint = f"ipc://{tmp_path}/pub"
    ctx = zmq.Context()
    raw = ctx.socket(zmq.SUB)
    raw.set(zmq.RCVHWM, hwm)
    received = 0
    with trio.fail_after(WATCHDOG), TrioSocket(raw) as sub:
        async with peer("pub", endpoint, str(PUBSUB_MESSAGES), str(hwm)):
            raw.connect(endpoint)
            raw.subscribe(b"")
            done = False
            while not done:
                for (body,) in await sub.recv_batch(256):
                    if body == b"end":
                        done = True
                        break
                    assert int.from_bytes(body, "big") == received  # in order, none lost
                    received += 1
    ctx.term()
    assert received == PUBSUB_MESSAGES


@pytest.mark.slow
@pytest.mark.parametrize("hwm", [10, 1000])
async def test_dealer_with_a_sender_and_a_receiver_task(tmp_path: Path, hwm: int) -> None:
    """Two tasks on one DEALER: the sender blocks on HWM while the receiver drains replies. The
    naive adapter hangs here (the send eats the receiver's fd edge)."""
    endpoint = f"ipc://{tmp_path}/echo"
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.set(zmq.SNDHWM, hwm)
    raw.set(zmq.RCVHWM, hwm)
    seen = bytearray(ROUND_TRIPS)
    with trio.fail_after(WATCHDOG), TrioSocket(raw) as dealer:
        async with peer("echo", endpoint, str(hwm)):
            raw.connect(endpoint)

            async def sender() -> None:
                for i in range(ROUND_TRIPS):
                    await dealer.send_multipart([i.to_bytes(4, "big"), b"x" * 64])

            async def receiver() -> None:
                for _ in range(ROUND_TRIPS):
                    rid, body = await dealer.recv_multipart()
                    assert body == b"x" * 64
                    seen[int.from_bytes(rid, "big")] += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                nursery.start_soon(receiver)
    ctx.term()
    assert seen == bytearray([1]) * ROUND_TRIPS


async def test_cancelled_receive_loses_nothing(tmp_path: Path) -> None:
    """Receives cancelled at random points never drop a message (rule 5)."""
    ctx = zmq.Context()
    push_raw, pull_raw = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    endpoint = f"ipc://{tmp_path}/pp"
    got: list[int] = []
    with trio.fail_after(30), TrioSocket(push_raw) as push, TrioSocket(pull_raw) as pull:
        pull_raw.bind(endpoint)
        push_raw.connect(endpoint)

        async def produce() -> None:
            for i in range(2000):
                await push.send_multipart([i.to_bytes(4, "big")])
                if i % 7 == 0:
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            while len(got) < 2000:
                with trio.move_on_after(0.0002 * (1 + len(got) % 5)):
                    (body,) = await pull.recv_multipart()
                    got.append(int.from_bytes(body, "big"))
    ctx.term()
    assert got == list(range(2000))


async def test_close_wakes_waiters(tmp_path: Path) -> None:
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PULL)
    raw.bind(f"ipc://{tmp_path}/c")
    sock = TrioSocket(raw)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def wait_forever() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await sock.recv_multipart()

            nursery.start_soon(wait_forever)
            nursery.start_soon(wait_forever)
            await trio.testing.wait_all_tasks_blocked()
            sock.close()
    ctx.term()
