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
