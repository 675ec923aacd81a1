"""``ronctl``: run a node, and talk to a running one through its admin plane (DESIGN.md §8).

Contract: every user mistake ends in one line on stderr and a non-zero exit (1 for a failed verb,
2 for usage errors and verbs not available yet); never a traceback. Only ``run`` is a trio
program; the other verbs are short blocking HTTP calls. Heavy imports (the node, the config
loader) happen inside the verbs that need them, so ``ronctl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kernel import childenv, runtime
from kernel.cli.client import AdminError
from kernel.cli.common import ADMIN_ENV, TERMINATED_EXIT, CliError, Terminated, add_admin_arg

__all__ = ["ADMIN_ENV", "REGISTRARS", "VERBS", "CliError", "build_parser", "main"]

DEBUG_ENV = childenv.DEBUG

# verb -> the module declaring it (``register``), in the order ``ronctl --help`` lists them:
# ``ronctl VERB`` imports that module alone (a verb's imports, not every verb's: ``ronctl
# status`` starts in a fraction of the time). Kept true by tests/unit/test_cli_lazy.py (the full
# parser's verbs, module by module).
VERBS = {
    "run": "node", "status": "node", "peers": "node", "stop": "node", "release": "node",
    "config": "node", "start": "services", "restart": "services", "logs": "logs",
    "tail": "logs", "put": "put", "get": "data", "id": "auth", "token": "auth", "audit": "auth",
    "mail": "mail", "name": "names", "ls": "store", "pin": "store", "gc": "store",
    "dht": "dht", "identity": "dht", "chaos": "chaos.verbs", "completion": "completion",
}  # fmt: skip
REGISTRARS = tuple(dict.fromkeys(VERBS.values()))  # the modules, each once, in that order


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``ronctl`` surface, each subparser carrying its handler as ``func``: every verb, or
    with ``only`` (a verb name) just the verbs of the module declaring it."""
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

    for name in (VERBS[only],) if only in VERBS else REGISTRARS:
        module = importlib.import_module(f"kernel.cli.{name}")
        # completion walks the whole parser; every other module takes the admin options
        module.register(verb, build_parser if name == "completion" else add_admin_arg)
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
    given = list(sys.argv[1:] if argv is None else argv)
    only = given[0] if given and not given[0].startswith("-") else None
    args = build_parser(only).parse_args(given)  # usage errors: argparse prints and exits 2
    try:
        return int(args.func(args))
    except CliError as e:
        return _fail(str(e), e.code)
    except (AdminError, runtime.RuntimeDirError) as e:
        return _fail(str(e), 1)
    except Terminated:
        return _fail("terminated (SIGTERM): what it had begun is undone", TERMINATED_EXIT)
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
