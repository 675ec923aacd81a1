"""Properties of the restart policy (DESIGN.md §3), checked against an independent reference model.

Times and windows are whole seconds so the model's arithmetic and the policy's agree exactly, and
hypothesis can land crashes exactly on window boundaries.
"""

from __future__ import annotations

import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.supervisor.policy import CrashHistory, Quarantine, Restart, RestartPolicy


@st.composite
def policies(draw: st.DrawFn) -> RestartPolicy:
    lo = draw(st.floats(0.0, 2.0, allow_nan=False))
    hi = draw(st.floats(lo, 60.0, allow_nan=False))
    return RestartPolicy(
        stable_after=draw(st.integers(0, 20)),
        min_backoff=lo,
        max_backoff=hi,
        restart_cap=draw(st.integers(1, 6)),
        restart_window=draw(st.integers(1, 120)),
    )


def ops_for(policy: RestartPolicy) -> st.SearchStrategy[list[tuple]]:
    """Ops: ("crash", seconds since the previous op, uptime) or ("release",). Gaps and uptimes
    are biased towards the policy's own boundaries (window, stable_after) where rules flip."""
    window, stable = int(policy.restart_window), int(policy.stable_after)
    gaps = st.one_of(
        st.integers(0, 40),
        st.sampled_from([window, max(0, window - 1), window + 1, window // policy.restart_cap]),
    )
    uptimes = st.one_of(st.integers(0, 30), st.sampled_from([stable, max(0, stable - 1)]))
    crash = st.tuples(st.just("crash"), gaps, uptimes)
    return st.lists(st.one_of(crash, crash, crash, st.tuples(st.just("release"))), max_size=60)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RestartPolicy, list[tuple]]:
    policy = draw(policies())
    return policy, draw(ops_for(policy))


@attrs.define
class Reference:
    """The rules written out directly: full restart log, streak counter, no cleverness."""

    policy: RestartPolicy
    restarts: list[float] = attrs.Factory(list)
    streak: int = 0

    def crash(self, now: float, uptime: float) -> tuple[str, int, float]:
        p = self.policy
        self.streak = 1 if uptime >= p.stable_after else self.streak + 1
        recent = [t for t in self.restarts if now - t < p.restart_window]
        if len(recent) + 1 > p.restart_cap:
            return ("quarantine", self.streak, 0.0)
        self.restarts.append(now)
        bound = (
            0.0 if self.streak == 1 else min(p.max_backoff, p.min_backoff * 2 ** (self.streak - 2))
        )
        return ("restart", self.streak, bound)

    def release(self) -> None:
        self.restarts.clear()
        self.streak = 0


@settings(max_examples=400)
@given(scenarios(), st.integers(0, 2**32))
def test_policy_matches_the_reference_model(
    scenario: tuple[RestartPolicy, list[tuple]], seed: int
) -> None:
    policy, ops = scenario
    history = CrashHistory(policy, random.Random(seed))
    model = Reference(policy)
    now = 0.0
    for op in ops:
        if op[0] == "release":
            history.release()
            model.release()
            continue
        now += op[1]
        decision = history.record_crash(now, float(op[2]))
        kind, streak, bound = model.crash(now, float(op[2]))
        if kind == "quarantine":
            assert decision == Quarantine()
            continue
        assert isinstance(decision, Restart)
        assert decision.attempt == streak
        assert bound / 2 <= decision.delay <= bound <= policy.max_backoff
        if streak == 1:
            assert decision.delay == 0.0


@given(policies(), st.integers(1, 300))
def test_bound_is_monotone_and_capped(policy: RestartPolicy, n: int) -> None:
    assert policy.bound(1) == 0.0
    assert policy.bound(n) <= policy.bound(n + 1) <= policy.max_backoff
    if n >= 2:
        assert policy.bound(n) == min(policy.max_backoff, policy.min_backoff * 2 ** min(n - 2, 62))


@given(policies(), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), max_size=40))
def test_delays_grow_along_a_streak(policy: RestartPolicy, steps: list[tuple[int, int]]) -> None:
    """Within one streak (no stable run), the attempt number and its bound never go down."""
    unstable = attrs.evolve(policy, stable_after=10**9, restart_cap=10**6)
    history = CrashHistory(unstable, random.Random(0))
    now, last_bound = 0.0, 0.0
    for attempt, (dt, uptime) in enumerate(steps, start=1):
        now += dt
        decision = history.record_crash(now, float(uptime))
        assert isinstance(decision, Restart) and decision.attempt == attempt
        assert unstable.bound(attempt) >= last_bound
        last_bound = unstable.bound(attempt)


@given(scenarios(), st.integers(0, 2**32))
def test_same_seed_same_schedule(scenario: tuple[RestartPolicy, list[tuple]], seed: int) -> None:
    policy, ops = scenario
    runs = []
    for _ in range(2):
        history = CrashHistory(policy, random.Random(seed))
        now, out = 0.0, []
        for op in ops:
            if op[0] == "release":
                history.release()
            else:
                now += op[1]
                out.append(history.record_crash(now, float(op[2])))
        runs.append(out)
    assert runs[0] == runs[1]


def test_defaults_are_the_design_numbers() -> None:
    p = RestartPolicy()
    assert (p.stable_after, p.min_backoff, p.max_backoff) == (10.0, 0.1, 30.0)
    assert (p.restart_cap, p.restart_window) == (5, 60.0)
    # 100 ms x 2^(n-2) reaches the 30 s cap at the 11th crash of a streak
    assert p.bound(2) == 0.1 and p.bound(10) == 25.6 and p.bound(11) == 30.0


def test_stable_run_restarts_at_once_and_resets_the_streak() -> None:
    history = CrashHistory(RestartPolicy(restart_cap=100), random.Random(1))
    assert history.record_crash(0.0, 1.0) == Restart(delay=0.0, attempt=1)
    second = history.record_crash(1.0, 1.0)
    assert isinstance(second, Restart) and second.attempt == 2 and 0.05 <= second.delay <= 0.1
    assert history.record_crash(30.0, 25.0) == Restart(delay=0.0, attempt=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"restart_cap": 0},
        {"min_backoff": 2.0, "max_backoff": 1.0},
        {"min_backoff": -1.0},
        {"restart_window": 0.0},
        {"stable_after": float("nan")},
    ],
)
def test_invalid_knobs_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)


@settings(max_examples=300)
@given(scenarios(), st.integers(0, 40), st.integers(0, 2**32))
def test_a_spare_is_never_armed_before_a_crash_would_restart_at_once(
    scenario: tuple[RestartPolicy, list[tuple]], ran: int, seed: int
) -> None:
    """``at_once_in`` (when the supervisor lets a warm spare go live by itself): a crash at
    that time, or any later one, gets ``Restart(delay=0)``; a spare that went live as the
    process died is then exactly what the policy would have started."""
    policy, ops = scenario
    history = CrashHistory(policy, random.Random(seed))
    now = 0.0
    for op in ops:
        if op[0] == "release":
            history.release()
        else:
            now += op[1]
            history.record_crash(now, float(op[2]))
    started_at = now - ran
    wait = history.at_once_in(now, started_at)
    assert wait >= 0
    for later in (0.0, 0.5, 7.0, policy.restart_window):
        at = now + wait + later
        copy = CrashHistory(policy, random.Random(seed))
        copy._streak, copy._restarts = history._streak, history._restarts.copy()
        decision = copy.record_crash(at, at - started_at)
        assert isinstance(decision, Restart) and decision.delay == 0.0, (wait, later, decision)
