"""External tools some tests need (promtool, prometheus, chromium, systemd-analyze).

Without the tool a test skips on a developer's machine, but fails under CI (``CI`` set): CI
installs them (``.ci/run``), so a missing one there is a broken setup, never a silent pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

__all__ = ["assert_promtool_accepts", "check_metrics", "need_tool", "promtool_problems"]


def need_tool(name: str, package: str) -> str:
    """The path of ``name``; skips (fails under CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package: {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it (.ci/run)")
        pytest.skip(message)
    return path


SPEC = Path(__file__).resolve().parents[2] / "specs" / "metrics.txt"
UNIT_LINT = "metric names should not contain abbreviated units"


def waived_names() -> frozenset[str]:
    """The seed names ``specs/metrics.txt`` keeps despite promtool's unit lint."""
    names: set[str] = set()
    for line in SPEC.read_text().splitlines():
        if line.startswith("# promtool-waived:"):
            names.update(line.partition(":")[2].split())
    return frozenset(names)


def promtool_problems(returncode: int, output: bytes) -> list[str]:
    """What ``promtool check metrics`` found, less the waived unit lint of seed names; a
    failure it printed nothing about is a problem too."""
    waived = waived_names()
    lines = [ln.strip() for ln in output.decode(errors="replace").splitlines() if ln.strip()]
    problems = [ln for ln in lines if not (ln.endswith(UNIT_LINT) and ln.split()[0] in waived)]
    if returncode != 0 and not lines:
        problems.append(f"promtool exited {returncode} without a word")
    return problems


def check_metrics(scrape: bytes) -> list[str]:
    """``promtool check metrics`` on ``scrape``: its problems (``promtool_problems``)."""
    promtool = need_tool("promtool", "prometheus")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, timeout=30, check=False
    )
    return promtool_problems(done.returncode, done.stdout + done.stderr)


async def assert_promtool_accepts(scrape: bytes) -> None:
    """``promtool check metrics`` (Prometheus's own linter) passes on ``scrape``."""
    promtool = need_tool("promtool", "prometheus")
    lint = await trio.run_process(
        [promtool, "check", "metrics"],
        stdin=scrape,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert promtool_problems(lint.returncode, lint.stdout + lint.stderr) == []
