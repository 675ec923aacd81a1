"""``ronctl chaos ...``: restart-storm, inject and bus-flood drills (not available yet)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Verb = Callable[..., argparse.ArgumentParser]


def register(verb: Verb, admin_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    from kernel.cli import cmd_not_yet

    p = verb("chaos", "chaos drills (not available yet)", cmd_not_yet)
    admin_arg(p)
