"""Run the OAP/1 fuzz entry briefly in CI (its invariants are in tests/support/fuzz_oap.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import trio

FUZZ = Path(__file__).resolve().parents[1] / "support" / "fuzz_oap.py"
ROOT = FUZZ.parent.parent


def _load_fuzz_module():  # by path: works whether or not tests/ is a package
    spec = importlib.util.spec_from_file_location("fuzz_oap", FUZZ)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_one_accepts_every_vector_under_every_control_byte() -> None:
    fuzz = _load_fuzz_module()
    corpus = fuzz._corpus()
    assert len(corpus) >= 30
    for blob in corpus:
        for control in range(0, 256, 17):
            fuzz.fuzz_one(bytes([control]) + blob)


async def test_fuzz_entry_runs_for_a_few_seconds_without_finding_anything() -> None:
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, str(FUZZ), "--seconds", "5"],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert report["event"] == "fuzz_done" and report["inputs"] > 1000


def test_fuzz_entry_reports_a_broken_invariant_as_a_failure(monkeypatch) -> None:
    fuzz = _load_fuzz_module()

    def broken(data: bytes) -> None:
        raise AssertionError("planted")

    monkeypatch.setattr(fuzz, "fuzz_one", broken)
    assert fuzz.main(["--seconds", "0.01", "--seed", "3"]) == 1
