"""``ronctl --version`` and ``ronctl completion``: the script is run in a real bash, with the
words a user would have typed, and must offer what ronctl's own parser accepts."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from kernel.cli import completion
from kernel.cli.entry import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"ronctl {project['version']}\n"


def complete(words: list[str], shell: str = "bash") -> set[str]:
    """What the generated script offers for ``ronctl <words>`` (the last one being typed)."""
    bash = shutil.which("bash")
    assert bash, "bash is needed to run the completion script"
    script = completion.script(build_parser(), shell)
    quoted = " ".join(f"'{w}'" for w in ["ronctl", *words])
    run = f"COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _ronctl"
    run += '; printf "%s\\n" "${COMPREPLY[@]}"'
    probe = f"{script}\n{run}"
    out = subprocess.run(
        [bash, "-c", probe], capture_output=True, text=True, check=True, timeout=10
    )
    return set(out.stdout.split())


def _verbs(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_verb_completes_from_nothing() -> None:
    offered = complete([""])
    assert _verbs(build_parser()) <= offered and "--version" in offered


@pytest.mark.parametrize(
    ("words", "expected", "never"),
    [
        (["pin", ""], {"add", "rm", "ls", "--help"}, {"gc", "--json"}),
        (["p"], {"peers", "put", "pin"}, {"pin/add"}),
        (["name", "set", "--e"], {"--expect-version"}, set()),
        (["gc", "--"], {"--grace", "--dry-run", "--json", "--runtime-dir"}, {"--all"}),
        (["--json", "ls", "--a"], {"--after", "--all", "--admin"}, set()),  # options: no step
        (["completion", ""], {"bash", "zsh"}, {"run"}),
    ],
)
def test_sub_verbs_and_options_complete(
    words: list[str], expected: set[str], never: set[str]
) -> None:
    offered = complete(words)
    assert expected <= offered and not (never & offered), offered


def test_the_zsh_script_is_the_bash_one_behind_bashcompinit() -> None:
    zsh = completion.script(build_parser(), "zsh")
    assert zsh.splitlines()[1].startswith("autoload -U +X bashcompinit")
    assert zsh.endswith(completion.script(build_parser(), "bash"))
