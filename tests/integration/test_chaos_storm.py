"""The restart-storm drill: 20 s storms on micronode and macronode (and macronode with
``spawn = "exec"``) lose nothing acknowledged (the build fails otherwise), a storage that acks
before it is durable makes the drill fail, and the pure parts (schedule, quarantine model)
behave."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import trio

from kernel.cli.chaos.quarantine import QuarantineModel
from kernel.cli.chaos.schedule import plan_faults
from tests.support.node_harness import FAST_CONFIG, REPO, child_env, ronctl_cmd

STORM_TIMEOUT = 240


async def run_storm(
    tmp_path: Path, *args: str, spawn: str = "forkserver"
) -> tuple[subprocess.CompletedProcess, dict]:
    config = tmp_path / "fast.toml"
    config.write_text(FAST_CONFIG + f'spawn = "{spawn}"\n')  # FAST_CONFIG ends in [supervisor]
    report_path = tmp_path / "report.json"
    cmd = ronctl_cmd(
        "chaos", "restart-storm", "--config", str(config), "--report", str(report_path),
        "--node-log", str(tmp_path / "node.log"), *args,
    )  # fmt: skip
    done = await trio.run_process(
        cmd, capture_stdout=True, capture_stderr=True, check=False, env=child_env()
    )
    assert report_path.exists(), done.stderr.decode()[-2000:]
    return done, json.loads(report_path.read_text())


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("profile", "spawn"),
    [("micronode", "forkserver"), ("macronode", "forkserver"), ("macronode", "exec")],
)
async def test_20s_restart_storm_loses_no_acknowledged_write(
    tmp_path: Path, profile: str, spawn: str
) -> None:
    with trio.fail_after(STORM_TIMEOUT):
        done, report = await run_storm(
            tmp_path, "--profile", profile, "--duration", "20", "--interval", "1",
            "--faults", "kill,panic,hang", "--seed", "4", "--rate", "20", spawn=spawn,
        )  # fmt: skip
    summary = done.stdout.decode()
    failed = [c for c in report["checks"] if not c["ok"]]
    assert done.returncode == 0 and report["passed"], f"{failed}\n{summary}"
    readback = report["readback"]
    assert readback["objects"] > 0, "the workload acknowledged nothing: the drill proved nothing"
    assert readback["identical"] == readback["objects"]
    assert readback["lost"] == [] and readback["corrupt"] == []
    assert readback["chunked"] > 0 and readback["largest"] >= 10 << 20, readback  # 10 MiB+
    assert report["faults"]["landed"] > 0
    assert set(report["faults"]["by_kind"]) <= {"kill", "panic", "hang"}
    assert check(report, "restarts_match_crashes_injected")["ok"]
    assert "PASSED" in summary and "acked_writes_read_back" in summary
    # the mailbox workload: every acknowledged send received and acked once after processing
    crashed = {f["service"] for f in report["timeline"]["faults"] if f["outcome"] == "landed"}
    assert {"svc-mailbox", "svc-gateway", "svc-storage"} <= crashed, crashed
    mail = report["mail"]
    assert mail["acked_sends"] > 0, "the mailbox acknowledged nothing: the drill proved nothing"
    assert mail["lost"] == [] and mail["unsettled"] == [] and mail["came_back"] == 0
    assert mail["drained"] is True and check(report, "acked_messages_delivered_once")["ok"]
    print(f"{profile}/{spawn} mail: {mail}")  # the redelivery count, for the closing note


@pytest.mark.slow
async def test_storage_that_acks_before_durable_makes_the_drill_fail(tmp_path: Path) -> None:
    profile = (REPO / "profiles" / "micronode.toml").read_text()
    broken, n = re.subn(
        r'module = "services\.storage"', 'module = "tests.support.broken_storage"', profile
    )
    assert n == 1
    path = tmp_path / "broken.toml"
    path.write_text(broken)
    with trio.fail_after(STORM_TIMEOUT):
        done, report = await run_storm(
            tmp_path, "--profile", str(path), "--duration", "12", "--interval", "2",
            "--faults", "kill", "--services", "svc-storage", "--seed", "3", "--rate", "30",
            "--max-size", "64KiB",
        )  # fmt: skip
    assert done.returncode == 1, done.stdout.decode()
    assert report["passed"] is False
    assert check(report, "acked_writes_read_back")["ok"] is False
    assert report["readback"]["lost"], report["readback"]
    assert "LOST" in done.stdout.decode() and "FAILED" in done.stdout.decode()


def test_the_schedule_is_a_function_of_the_seed() -> None:
    args = dict(duration=30.0, interval=0.25, faults=("kill", "panic", "hang"))
    services = ("svc-a", "svc-b", "svc-c")
    first = plan_faults(seed=7, services=services, **args)
    assert first == plan_faults(seed=7, services=services, **args)
    assert first != plan_faults(seed=8, services=services, **args)
    assert len(first) == 119 and all(0 < f.at < 30 for f in first)
    assert {f.fault for f in first} == {"kill", "panic", "hang"}
    with pytest.raises(ValueError):
        plan_faults(seed=1, duration=5, interval=1, faults=("melt",), services=services)


def test_quarantine_model_predicts_the_cap_and_forgets_on_release() -> None:
    model = QuarantineModel(restart_cap=5, restart_window=60.0, tolerance=1.0)
    verdicts = [model.crash("svc-a", t) for t in (0, 1, 2, 3, 4, 5)]
    assert verdicts == ["restart"] * 5 + ["quarantine"]
    model.observed_quarantine("svc-a")
    model.release("svc-a")
    assert model.crash("svc-a", 6) == "restart"
    assert model.crash("svc-b", 0) == "restart"
    for t in (1, 2, 3, 4):
        model.crash("svc-b", t)
    assert model.crash("svc-b", 60.5) == "ambiguous"  # the restart at 0 is at the window's edge
    assert model.crash("svc-b", 200) == "restart"  # all history far outside the window
    assert model.mismatches() == []
    model.observed_quarantine("svc-b")
    model.observed_quarantine("svc-b")
    assert model.mismatches() == ["svc-b: quarantined 2x, expected 0 (+1 ambiguous)"]


def test_plot_draws_a_png_from_a_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from kernel.cli.chaos.plot import plot_timeline

    report = {
        "passed": True,
        "node": {"profile": "micronode"},
        "options": {"seed": 1},
        "timeline": {
            "faults": [
                {"t": 1.0, "service": "svc-a", "fault": "kill", "outcome": "landed"},
                {"t": 2.0, "service": "svc-b", "fault": "hang", "outcome": "skipped: starting"},
            ],
            "crashes": [(1.01, "svc-a", "signal SIGKILL")],
            "quarantines": [],
            "readiness": [(0.0, True), (1.0, False), (1.5, True)],
            "storm_end": 3.0,
            "requests": [(0.5, "put", 0.01, True), (1.2, "get", 0.5, False)],
        },
    }
    out = tmp_path / "t.png"
    plot_timeline(report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
