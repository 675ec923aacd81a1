"""ops/prometheus/rules.yml is valid and does what its unit tests say (``promtool``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.tools import need_tool

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RUNBOOKS = OPS.parent / "runbooks"
METRICS = OPS.parents[1] / "specs" / "metrics.txt"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = need_tool("promtool", "prometheus")
    return subprocess.run(
        [promtool, *args], cwd=OPS, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules() -> None:
    done = _promtool("check", "rules", "rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    done = _promtool("test", "rules", "rules.test.yml")
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_every_alert_is_tested_names_a_real_runbook_and_golden_metrics() -> None:
    rules = yaml.safe_load((OPS / "rules.yml").read_text())["groups"][0]["rules"]
    tests = (OPS / "rules.test.yml").read_text()
    golden = {line.split()[0] for line in METRICS.read_text().splitlines() if line[:1].isalpha()}
    for rule in rules:
        assert f"alertname: {rule['alert']}" in tests, rule["alert"]
        assert (OPS.parents[1] / rule["annotations"]["runbook"]).is_file(), rule["alert"]
        words = {w for w in _identifiers(rule["expr"]) if w.endswith(("_total", "_bytes"))}
        assert words <= golden, (rule["alert"], words - golden)


def _identifiers(expr: str) -> set[str]:
    import re

    return set(re.findall(r"[a-z_]+", expr))
