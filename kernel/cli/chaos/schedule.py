"""The seeded fault schedule: which fault goes to which service when.

The schedule depends only on (seed, duration, interval, faults, services), never on what happens
during the drill, so the same ``--seed`` gives the same plan. Whether a planned fault lands depends
on the node at that moment (a service that is down or already faulted is skipped, and the skip is
reported), which is what a drill against real processes can promise.
"""

from __future__ import annotations

import random

import attrs

from kernel.faults import FAULTS

__all__ = ["PlannedFault", "plan_faults"]


@attrs.frozen
class PlannedFault:
    at: float  # seconds after the storm starts
    fault: str
    service: str


def plan_faults(
    *,
    seed: int,
    duration: float,
    interval: float,
    faults: tuple[str, ...],
    services: tuple[str, ...],
) -> list[PlannedFault]:
    """One fault every ``interval`` seconds (the first after one interval), uniformly random
    kind and target, drawn from ``random.Random(seed)``."""
    if interval <= 0 or duration <= 0:
        raise ValueError("duration and interval must be > 0")
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or not faults:
        raise ValueError(f"faults must be a non-empty subset of {', '.join(FAULTS)}")
    if not services:
        raise ValueError("no services to inject faults into")
    rng = random.Random(f"faults:{seed}")
    plan = []
    n = 1
    while n * interval < duration:
        plan.append(PlannedFault(round(n * interval, 6), rng.choice(faults), rng.choice(services)))
        n += 1
    return plan
