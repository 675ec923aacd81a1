"""``ronctl put`` / ``ronctl get``: objects through the node's gateway."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Verb = Callable[..., argparse.ArgumentParser]


def register(verb: Verb, admin_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    from kernel.cli import cmd_not_yet

    p = verb("put", "store a file, print its id (not available yet)", cmd_not_yet)
    p.add_argument("file", metavar="FILE")
    admin_arg(p)
    p = verb("get", "fetch an object by id (not available yet)", cmd_not_yet)
    p.add_argument("id", metavar="ID", help="object id, b3:<hex>")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    admin_arg(p)
