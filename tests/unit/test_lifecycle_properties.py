"""Properties of a child's lifecycle (``kernel.supervisor.lifecycle``), like the policy's: the
table is the whole truth, STOPPED is final and always reachable, a stop request is never lost."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.supervisor.lifecycle import TABLE, IllegalMove, Lifecycle, Move, Phase, Request

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("ask"), st.sampled_from(list(Request))),
        st.tuples(st.just("move"), st.sampled_from(list(Move))),
    ),
    max_size=60,
)


@settings(max_examples=500)
@given(STEPS)
def test_moves_follow_the_table_and_a_stop_is_never_lost(steps: list[tuple[str, object]]) -> None:
    life = Lifecycle()
    stop_asked = False
    for kind, what in steps:
        before = (life.phase, life.request)
        if kind == "ask":
            assert isinstance(what, Request)
            took = life.ask(what)
            if took:
                stop_asked |= what is Request.STOP
                assert life.request is what
            else:  # refused: stopped already, or a stronger request waits
                assert (life.phase, life.request) == before
                assert life.phase is Phase.STOPPED or (before[1] is not None and before[1] > what)
            continue
        assert isinstance(what, Move)
        expected = TABLE[life.phase].get(what)
        if expected is None:
            with pytest.raises(IllegalMove):
                life.apply(what)
            assert (life.phase, life.request) == before  # a refused move changes nothing
        else:
            assert life.apply(what) is expected
        if stop_asked:
            assert life.stopping  # latched until the loop ends
    if stop_asked:
        assert life.request is Request.STOP or life.phase is Phase.STOPPED


def test_stopped_is_final_and_every_phase_reaches_it() -> None:
    assert TABLE[Phase.STOPPED] == {}
    for phase in Phase:
        seen, frontier = {phase}, [phase]
        while frontier:
            frontier = [n for p in frontier for n in TABLE[p].values() if n not in seen]
            seen.update(frontier)
        assert Phase.STOPPED in seen, phase


def test_a_stop_reaches_stopped_in_at_most_two_moves_from_anywhere() -> None:
    """What the node's stop relies on: STOP from every waiting phase, DRAIN then STOP while a
    process runs (RUNNING), and STARTING checks requests before it spawns."""
    for phase in Phase:
        if phase is Phase.STOPPED:
            continue
        life = Lifecycle(phase=phase)
        assert life.ask(Request.STOP)
        if phase is Phase.RUNNING:
            life.apply(Move.DRAIN)
        assert life.apply(life.after_drain()) is Phase.STOPPED


@given(st.lists(st.sampled_from(list(Request)), min_size=1, max_size=8))
def test_the_strongest_request_wins(asked: list[Request]) -> None:
    life = Lifecycle(phase=Phase.RUNNING)
    for request in asked:
        life.ask(request)
    assert life.request is max(asked)
    life.apply(Move.DRAIN)
    end = life.after_drain()
    assert end is {Request.STOP: Move.STOP, Request.HOLD: Move.HOLD}.get(max(asked), Move.DRAINED)
    life.apply(end)
    assert life.request is (Request.STOP if end is Move.STOP else None)
