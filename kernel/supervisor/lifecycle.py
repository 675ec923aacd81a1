"""A supervised child's lifecycle as an explicit state machine: the states, and every legal move.

Why explicit (as OTP's gen_statem and h11's connection states are): the child loop used to
derive its state from a dozen flags ("is this event None?"), and which combinations could occur
was nowhere written down. Here a state is one ``Phase``, a move is one ``Move``, and ``TABLE`` is
the whole truth; ``Lifecycle.apply`` is the one place a phase changes, and refuses anything the
table does not allow (a bug, raised loudly). Pure: no trio, no processes; the loop in
``kernel.supervisor.child`` feeds it, and ``tests/unit/test_lifecycle_properties.py`` checks it.

Requests from other tasks (an operator's stop, start or restart, the node's stop) are not moves
by themselves: they are latched in ``Lifecycle.request`` (the strongest one wins: stop > hold >
restart) and the loop turns them into moves when it wakes up.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["TABLE", "IllegalMove", "Lifecycle", "Move", "Phase", "Request"]


class Phase(enum.Enum):
    STARTING = "starting"  # spawning a process
    RUNNING = "running"  # a process is up: watched for exit and heartbeats
    DRAINING = "draining"  # the process is being stopped (node stop, operator stop or restart)
    BACKOFF = "backoff"  # crashed: waiting the policy's delay before the next spawn
    QUARANTINED = "quarantined"  # crashed too often: down until an operator releases it
    HELD = "held"  # an operator stopped it: down until an operator starts it
    STOPPED = "stopped"  # final: the loop has ended


class Move(enum.Enum):
    SPAWNED = "spawned"  # the launcher gave us a process
    CRASHED = "crashed"  # it exited (or hung, or could not spawn) and the policy says retry
    QUARANTINE = "quarantine"  # ... and the policy says it crashed too often
    FINISHED = "finished"  # ... and its restart mode says it stays down (transient, temporary)
    DRAIN = "drain"  # a request ends the running process
    DRAINED = "drained"  # that process is gone (reaped)
    RESPAWN = "respawn"  # the backoff is over, or an operator restarts/starts/releases it
    HOLD = "hold"  # an operator stop, when no process runs
    STOP = "stop"  # the node (or a reload) stops it for good


class Request(enum.IntEnum):
    """What another task asked for; a stronger request replaces a weaker one."""

    RESTART = 1  # an operator's restart (or start, or release): respawn now, no backoff
    HOLD = 2  # an operator's stop: down until started
    STOP = 3  # for good


class IllegalMove(RuntimeError):
    """A move the table does not allow from the current phase: a supervisor bug."""


_DOWN = {Move.RESPAWN: Phase.STARTING, Move.HOLD: Phase.HELD, Move.STOP: Phase.STOPPED}
_ENDED = {  # a process's end, as the restart policy and restart mode judge it
    Move.CRASHED: Phase.BACKOFF,
    Move.QUARANTINE: Phase.QUARANTINED,
    Move.FINISHED: Phase.STOPPED,
}

TABLE: dict[Phase, dict[Move, Phase]] = {
    Phase.STARTING: {
        Move.SPAWNED: Phase.RUNNING,
        **_ENDED,
        Move.HOLD: Phase.HELD,
        Move.STOP: Phase.STOPPED,
    },
    Phase.RUNNING: {**_ENDED, Move.DRAIN: Phase.DRAINING},
    Phase.DRAINING: {Move.DRAINED: Phase.STARTING, Move.HOLD: Phase.HELD, Move.STOP: Phase.STOPPED},
    Phase.BACKOFF: dict(_DOWN),
    Phase.QUARANTINED: dict(_DOWN),
    Phase.HELD: {Move.RESPAWN: Phase.STARTING, Move.STOP: Phase.STOPPED},
    Phase.STOPPED: {},
}
"""phase -> move -> next phase. STOPPED is final; every other phase can reach it."""


@attrs.define
class Lifecycle:
    """One child's phase and its latched request."""

    phase: Phase = Phase.STARTING
    request: Request | None = None

    def apply(self, move: Move) -> Phase:
        """Take ``move``; the new phase. ``IllegalMove`` if the table has no such move here."""
        nxt = TABLE[self.phase].get(move)
        if nxt is None:
            raise IllegalMove(f"{move.value} is not allowed while {self.phase.value}")
        self.phase = nxt
        if nxt is not Phase.STOPPED and move in (Move.RESPAWN, Move.HOLD, Move.DRAINED):
            self.request = self.request if self.request is Request.STOP else None
        return nxt

    def ask(self, request: Request) -> bool:
        """Latch ``request`` (a weaker one never replaces a stronger one); False once stopped or
        when a stronger request is already waiting."""
        if self.phase is Phase.STOPPED or (self.request is not None and self.request > request):
            return False
        self.request = request
        return True

    @property
    def stopping(self) -> bool:
        return self.request is Request.STOP or self.phase is Phase.STOPPED

    def after_drain(self) -> Move:
        """What ends a drain: the latched request (a restart when none is left)."""
        if self.request is Request.STOP:
            return Move.STOP
        if self.request is Request.HOLD:
            return Move.HOLD
        return Move.DRAINED
