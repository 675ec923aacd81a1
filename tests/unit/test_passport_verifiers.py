"""svc-passport's record of which verifier applied which key-set version: a revoke waits on it."""

from __future__ import annotations

import trio
import trio.testing

from services.passport.verifiers import LIVE_S, Verifiers


async def test_waits_for_every_live_verifier_and_names_the_late_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    verifiers = Verifiers()
    verifiers.poll_started("svc-gateway", 5)
    verifiers.poll_started("svc-overlay", 5)
    async with trio.open_nursery() as nursery:

        async def gateway_applies_6() -> None:
            await trio.sleep(0.3)
            verifiers.poll_ended("svc-gateway")
            verifiers.poll_started("svc-gateway", 6)

        nursery.start_soon(gateway_applies_6)
        start = trio.current_time()
        pending = await verifiers.wait_applied(6, timeout=LIVE_S + 1.0)
    assert pending == ("svc-overlay",)  # it kept its poll open and never acked: still behind
    assert trio.current_time() - start >= LIVE_S + 1.0


async def test_answers_at_the_ack_once_warm(autojump_clock: trio.testing.MockClock) -> None:
    verifiers = Verifiers()
    await trio.sleep(LIVE_S)  # past the warm-up after a start
    verifiers.poll_started("svc-gateway", 1)
    async with trio.open_nursery() as nursery:

        async def ack() -> None:
            await trio.sleep(0.05)
            verifiers.poll_ended("svc-gateway")
            verifiers.poll_started("svc-gateway", 2)

        nursery.start_soon(ack)
        start = trio.current_time()
        assert await verifiers.wait_applied(2, timeout=5.0) == ()
        assert trio.current_time() - start < 0.1


async def test_a_silent_verifier_stops_counting_and_a_fresh_start_waits_for_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    verifiers = Verifiers()
    start = trio.current_time()
    assert await verifiers.wait_applied(1, timeout=10.0) == ()
    assert trio.current_time() - start >= LIVE_S  # a restarted passport waits to hear from all
    verifiers.poll_started("svc-gone", 0)
    verifiers.poll_ended("svc-gone")  # then it died: no poll for longer than LIVE_S
    start = trio.current_time()
    assert await verifiers.wait_applied(1, timeout=10.0) == ()
    assert LIVE_S <= trio.current_time() - start < LIVE_S + 0.5


async def test_a_poll_starting_does_not_end_another_verifiers_long_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two verifiers long-polling the same version must each wait their whole poll: were a
    poll's start to wake the other's, the two would answer each other at once forever (an idle
    node spent most of a core in svc-passport, svc-gateway and svc-overlay)."""
    verifiers = Verifiers()
    verifiers.poll_started("svc-gateway", 3)
    async with trio.open_nursery() as nursery:

        async def overlay_polls() -> None:
            await trio.sleep(0.1)
            verifiers.poll_started("svc-overlay", 3)  # same version: nothing for anyone

        nursery.start_soon(overlay_polls)
        start = trio.current_time()
        await verifiers.wait_keys(1.0)
        assert trio.current_time() - start >= 1.0
    # a key-set change still answers every long poll at once
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _later(verifiers.keys_changed, 0.2))
        start = trio.current_time()
        await verifiers.wait_keys(5.0)
        assert trio.current_time() - start < 0.3


async def _later(fn: object, delay: float) -> None:
    await trio.sleep(delay)
    fn()  # type: ignore[operator]
