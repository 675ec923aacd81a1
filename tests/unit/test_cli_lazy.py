"""``ronctl VERB`` imports the module declaring VERB and not every verb's (issue 29: start-up).

The table ``kernel.cli.entry.VERBS`` says which module declares which verb; a verb added to a
module without the table would still work (the full parser is built for a verb it does not
know) but would be slow, so the table is checked against what each module really declares.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from typing import Any

import pytest

from kernel.cli.common import add_admin_arg
from kernel.cli.entry import REGISTRARS, VERBS, build_parser


def _declared_by(module_name: str) -> set[str]:
    module = importlib.import_module(f"kernel.cli.{module_name}")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    seen: set[str] = set()

    def verb(name: str, summary: str, func: Any, **kw: Any) -> argparse.ArgumentParser:
        seen.add(name)
        return sub.add_parser(name)

    module.register(verb, build_parser if module_name == "completion" else add_admin_arg)
    return seen


def test_the_table_names_the_module_that_declares_each_verb() -> None:
    declared = {v: m for m in REGISTRARS for v in _declared_by(m)}
    assert declared == VERBS
    full = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(full.choices) == set(VERBS)


@pytest.mark.parametrize(
    ("argv", "absent"),
    [
        (["status"], ("ipc.caps", "kernel.cli.chaos.verbs", "kernel.cli.mail")),
        (["get", "b3:" + "0" * 64], ("ipc.caps", "kernel.cli.chaos.verbs", "kernel.cli.node")),
    ],
)
def test_a_verb_imports_only_what_its_module_needs(
    argv: list[str], absent: tuple[str, ...]
) -> None:
    code = (
        "import sys\n"
        "from kernel.cli.entry import build_parser\n"
        f"build_parser({argv[0]!r}).parse_args({argv!r})\n"
        f"print(' '.join(m for m in {absent!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    assert done.stdout.decode().strip() == "", done.stdout
