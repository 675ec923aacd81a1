"""``ronctl``: run a node, and talk to a running one through its admin plane (DESIGN.md §8).

Contract: every user mistake ends in one line on stderr and a non-zero exit (1 for a failed verb,
2 for usage errors and verbs not available yet); never a traceback. Only ``run`` is a trio
program; the other verbs are short blocking HTTP calls. Heavy imports (the node, the config
loader) happen inside the verbs that need them, so ``ronctl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kernel import childenv, runtime
from kernel.cli import auth, completion, data, dht, logs, mail, names, node, put, services, store
from kernel.cli.chaos import verbs
from kernel.cli.client import AdminError
from kernel.cli.common import ADMIN_ENV, CliError, add_admin_arg

__all__ = ["ADMIN_ENV", "CliError", "build_parser", "main"]

DEBUG_ENV = childenv.DEBUG


def build_parser() -> argparse.ArgumentParser:
    """The whole ``ronctl`` surface; each subparser carries its handler as ``func``."""
    parser = argparse.ArgumentParser(
        prog="ronctl",
        description="Run a RustyOnions node, and inspect or control a running one.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="print ronctl's version and exit"
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    def verb(
        name: str, summary: str, func: Callable[[argparse.Namespace], int] | None, **kw: Any
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=kw.pop("description", summary), **kw)
        if func is not None:
            p.set_defaults(func=func)
        return p

    # Verbs by topic: the node, data (put/get), chaos drills.
    node.register(verb, add_admin_arg)
    services.register(verb, add_admin_arg)
    logs.register(verb, add_admin_arg)
    put.register(verb, add_admin_arg)
    data.register(verb, add_admin_arg)
    auth.register(verb, add_admin_arg)
    mail.register(verb, add_admin_arg)
    names.register(verb, add_admin_arg)
    store.register(verb, add_admin_arg)
    dht.register(verb, add_admin_arg)
    verbs.register(verb, add_admin_arg)
    completion.register(verb, build_parser)
    return parser


class _VersionAction(argparse.Action):
    """``--version``, reading the installed metadata only when asked (it costs ~20 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kw: Any) -> None:
        from kernel.version import VERSION

        print(f"ronctl {VERSION}")  # stdout, as argparse's own version action does
        parser.exit()


def _fail(message: str, code: int) -> int:
    print(f"ronctl: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ronctl`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)  # usage errors: argparse prints and exits 2
    try:
        return int(args.func(args))
    except CliError as e:
        return _fail(str(e), e.code)
    except (AdminError, runtime.RuntimeDirError) as e:
        return _fail(str(e), 1)
    except KeyboardInterrupt:
        # Ctrl-C is how a following verb (tail, logs -f) ends: wherever it lands, that is 0
        return 0 if getattr(args, "follows", False) else 130
    except BrokenPipeError:
        # stdout went away (`ronctl tail | head`): not an error; keep Python quiet at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as e:
        if os.environ.get(DEBUG_ENV):
            raise
        return _fail(
            f"internal error: {type(e).__name__}: {e} (set {DEBUG_ENV}=1 for the traceback)", 70
        )
