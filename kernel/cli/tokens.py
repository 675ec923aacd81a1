"""How the write verbs (put, name set, mail) get their token, and ``parse_duration``; kept apart
from ``kernel.cli.auth`` so those verbs start without importing the token codec (``ipc.caps``,
``cryptography``): the gateway checks the token, ronctl only carries it."""

from __future__ import annotations

import argparse
import os
import re

from kernel import childenv
from kernel.cli.client import AdminError
from kernel.cli.common import control_client

__all__ = ["CLI_TTL", "TOKEN_ENV", "parse_duration", "write_token"]

TOKEN_ENV = childenv.TOKEN
CLI_TTL = 300.0  # the tokens the write verbs mint for themselves: short-lived (auth.cli_ttl)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h``, ``7d`` as seconds (> 0)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90s, 10m, 1h or 7d, got {text!r}"
        )
    if float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be more than zero, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def write_token(args: argparse.Namespace, op: str) -> str | None:
    """The token a write verb sends: ``--token`` > ``$RON_TOKEN`` > one minted for ``op``
    through the control socket (when this user may use it) > None (the node may be open)."""
    given = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    if given:
        return str(given).strip()
    try:
        resp = control_client(args).post("/token/mint", {"ops": [op], "ttl": CLI_TTL})
    except AdminError:
        return None  # not the node's user, or no local node: the gateway will say what it needs
    if resp.status != 200:
        return None
    body = resp.json()
    return body.get("token") if isinstance(body, dict) else None
