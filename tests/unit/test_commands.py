"""Commands in one process: replies, Busy at once, deadlines, recovery after a server restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from ipc import oap
from ipc.commands import (
    CommandBusy,
    CommandClient,
    CommandServer,
    CommandTimeout,
    CommandUnavailable,
)


async def echo(frame: oap.Frame) -> oap.Frame:
    return oap.Frame(flags=oap.RESP, code=200, corr_id=frame.corr_id, payload=frame.payload)


def req(i: int, payload: bytes = b"ping") -> oap.Frame:
    return oap.Frame(flags=oap.REQ, corr_id=i, payload=payload)


async def test_reply_keeps_corr_id_and_payload(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(CommandServer(tmp_path, "svc-echo", echo).run)
            async with CommandClient.connect(tmp_path, "svc-echo") as client:
                replies = [await client.request(req(i, bytes([i]) * i)) for i in range(1, 50)]
            nursery.cancel_scope.cancel()
    assert [(r.corr_id, r.payload) for r in replies] == [(i, bytes([i]) * i) for i in range(1, 50)]


async def test_handler_errors_become_typed_errors(tmp_path: Path) -> None:
    async def failing(frame: oap.Frame) -> oap.Frame:
        if frame.payload == b"quota":
            raise oap.OapError("quota_exceeded", "too much", retry_after=3)
        raise RuntimeError("bug")

    errors: list[BaseException] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = CommandServer(tmp_path, "svc-x", failing, on_error=errors.append)
            await nursery.start(server.run)
            async with CommandClient.connect(tmp_path, "svc-x") as client:
                with pytest.raises(oap.OapError) as quota:
                    await client.request(req(1, b"quota"))
                with pytest.raises(oap.OapError) as internal:
                    await client.request(req(2, b"bug"))
            nursery.cancel_scope.cancel()
    assert (quota.value.code, quota.value.reason) == (429, "quota_exceeded")
    assert quota.value.retry_after == 3
    assert (internal.value.code, internal.value.reason) == (500, "internal")
    assert len(errors) == 1


def gated_echo() -> tuple[trio.Event, Callable[[oap.Frame], Awaitable[oap.Frame]]]:
    """An echo handler that holds every request until the returned event is set."""
    release = trio.Event()

    async def slow(frame: oap.Frame) -> oap.Frame:
        await release.wait()
        return await echo(frame)

    return release, slow


async def test_busy_at_once_when_the_client_bound_is_reached(tmp_path: Path) -> None:
    release, slow = gated_echo()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(CommandServer(tmp_path, "svc-slow", slow).run)
            async with CommandClient.connect(tmp_path, "svc-slow", max_inflight=4) as client:
                done: list[int] = []

                async def call(i: int) -> None:
                    done.append((await client.request(req(i))).corr_id)

                async with trio.open_nursery() as callers:
                    for i in range(4):
                        callers.start_soon(call, i)
                    while client.inflight < 4:
                        await trio.sleep(0.001)
                    with trio.fail_after(0.5):  # "at once": no waiting on the server
                        with pytest.raises(CommandBusy) as busy:
                            await client.request(req(99))
                    release.set()
            nursery.cancel_scope.cancel()
    assert busy.value.code == 429 and busy.value.reason == "busy"
    assert sorted(done) == [0, 1, 2, 3]


async def test_busy_from_a_full_server(tmp_path: Path) -> None:
    release, slow = gated_echo()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = CommandServer(tmp_path, "svc-slow", slow, max_inflight=2)
            await nursery.start(server.run)
            async with (
                CommandClient.connect(tmp_path, "svc-slow") as client,
                trio.open_nursery() as callers,
            ):
                for i in range(2):
                    callers.start_soon(client.request, req(i))
                while server.inflight < 2:
                    await trio.sleep(0.001)
                with pytest.raises(CommandBusy):
                    await client.request(req(3))
                release.set()
            nursery.cancel_scope.cancel()
    assert server.busy_rejections == 1


async def test_no_server_is_unavailable_within_the_deadline(tmp_path: Path) -> None:
    with trio.fail_after(5):
        async with CommandClient.connect(tmp_path, "svc-none") as client:
            with pytest.raises(CommandUnavailable) as exc:
                await client.request(req(1), timeout=0.2)
    assert exc.value.code == 503


async def test_hung_server_times_out_and_the_client_recovers_after_restart(tmp_path: Path) -> None:
    hang = trio.Event()

    async def maybe_hang(frame: oap.Frame) -> oap.Frame:
        if frame.payload == b"hang":
            await trio.sleep_forever()
        return await echo(frame)

    with trio.fail_after(20):
        async with CommandClient.connect(tmp_path, "svc-h") as client:
            async with trio.open_nursery() as nursery:
                await nursery.start(CommandServer(tmp_path, "svc-h", maybe_hang).run)
                assert (await client.request(req(1))).corr_id == 1
                with pytest.raises(CommandTimeout) as exc:
                    await client.request(req(2, b"hang"), timeout=0.2)
                nursery.cancel_scope.cancel()  # the server goes away
            assert exc.value.code == 504
            with pytest.raises(CommandUnavailable):
                await client.request(req(3), timeout=0.2)
            async with trio.open_nursery() as nursery:  # ... and comes back
                await nursery.start(CommandServer(tmp_path, "svc-h", maybe_hang).run)
                assert (await client.request(req(4), timeout=5)).corr_id == 4
                nursery.cancel_scope.cancel()
    assert not hang.is_set()
