"""External tools some tests need (promtool, prometheus, chromium, systemd-analyze).

Without the tool a test skips on a developer's machine, but fails under CI (``CI`` set): CI
installs them (``.ci/run``), so a missing one there is a broken setup, never a silent pass.
"""

from __future__ import annotations

import os
import shutil

import pytest
import trio

__all__ = ["need_tool"]


def need_tool(name: str, package: str) -> str:
    """The path of ``name``; skips (fails under CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package: {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it (.ci/run)")
        pytest.skip(message)
    return path


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
    assert lint.returncode == 0, lint.stdout + lint.stderr
