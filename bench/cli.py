"""``ronctl`` start-up: how long a verb takes from the shell, against ``python -c pass``.

Each command runs ``--runs`` times as a fresh process (what a user or a script pays), against a
real micronode this bench starts: ``ronctl --version`` (no node), ``ronctl status`` (admin plane
over HTTP), ``ronctl put`` of 4 KiB (a token minted through the control socket, then the PUT),
``ronctl get`` of it. The baseline, in the same run, is the interpreter alone. Targets (issue
29): ``--version`` ≤ 120 ms, ``status`` ≤ 200 ms on this machine.

    python bench/cli.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kernel.cli.chaos import target  # noqa: E402


def timed(cmd: list[str], runs: int, env: dict[str, str]) -> list[float]:
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=60)
        took.append((time.perf_counter() - started) * 1000)
    return took


async def measure(runs: int) -> list[tuple[str, list[float]]]:
    py = sys.executable
    script = Path(py).with_name("ronctl")  # the console script a user runs
    ronctl = [str(script)] if script.exists() else [py, "-m", "kernel.cli"]
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(target.start_node("micronode"))
        assert node.control is not None
        env = {**os.environ, "RON_RUNTIME_DIR": str(node.control.parent)}
        blob = Path(tempfile.mkdtemp()) / "4k.bin"
        blob.write_bytes(os.urandom(4096))
        put = await trio.run_process(
            [*ronctl, "put", str(blob)], capture_stdout=True, env=env, check=True
        )
        obj_id = put.stdout.decode().strip()
        cases = [
            ("python -c pass (baseline)", [py, "-c", "pass"]),
            ("ronctl --version", [*ronctl, "--version"]),
            ("ronctl status", [*ronctl, "status"]),
            ("ronctl put 4 KiB", [*ronctl, "put", str(blob)]),
            ("ronctl get 4 KiB", [*ronctl, "get", obj_id]),
        ]
        return [
            (label, await trio.to_thread.run_sync(timed, cmd, runs, env)) for label, cmd in cases
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    rows = trio.run(measure, args.runs)
    base = statistics.median(rows[0][1])
    print(f"\n## bench/cli.py: wall time of a fresh process, {args.runs} runs each\n")
    print("| command | median ms | p90 ms | vs python -c pass |")
    print("|---|---|---|---|")
    for label, took in rows:
        took.sort()
        p90 = took[min(len(took) - 1, round(0.9 * (len(took) - 1)))]
        print(f"| {label} | {statistics.median(took):.0f} | {p90:.0f} | "
              f"{statistics.median(took) / base:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
