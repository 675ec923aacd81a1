"""Tiny child programs and fakes for the supervisor tests.

Run as ``python -m tests.support.children [MODE]`` (MODE defaults to ``$RON_TEST_MODE``). Every
mode arms the parent-death signal first, like a real service, then prints ``started <pid>``.

Modes: ``exit:N`` (exit N at once), ``sleep`` (sleep until killed; default SIGTERM action),
``ignore-term`` (print ``term ignored`` on SIGTERM and keep sleeping), ``mini-supervisor`` (run a
real Supervisor with one ``sleep`` child and print its output lines, for the kill -9 test).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

MODE_ENV = "RON_TEST_MODE"
REPO_ROOT = str(Path(__file__).resolve().parents[2])
MODULE = "tests.support.children"


# ---- fakes ------------------------------------------------------------------------------------


class Recorder:
    """An append-only list whose readers can wait for a matching item (no polling)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = trio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, pred: Callable[[Any], bool], *, start: int = 0) -> Any:
        i = start
        while True:
            while i < len(self.items):
                if pred(self.items[i]):
                    return self.items[i]
                i += 1
            await self._changed.wait()


class FakeBus(Recorder):
    def publish(self, event: Any) -> bool:
        self.add(event)
        return True


@attrs.frozen
class LogRecord:
    event: str
    service: str | None
    reason: str | None
    level: str
    fields: dict[str, Any]


class FakeLog(Recorder):
    def __call__(
        self,
        event: str,
        *,
        level: str = "info",
        service: str | None = None,
        reason: str | None = None,
        **fields: Any,
    ) -> None:
        self.add(LogRecord(event, service, reason, level, fields))

    async def wait_event(self, event: str, service: str | None = None, start: int = 0) -> LogRecord:
        return await self.wait_for(
            lambda r: r.event == event and (service is None or r.service == service), start=start
        )

    def count(self, event: str, service: str) -> int:
        return sum(1 for r in self.items if r.event == event and r.service == service)


class _Series:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def set(self, value: float) -> None:
        self.value = value


class _Family:
    def __init__(self) -> None:
        self.series: dict[str, _Series] = {}

    def labels(self, *, service: str) -> _Series:
        return self.series.setdefault(service, _Series())

    def value(self, service: str) -> float:
        return self.series[service].value if service in self.series else 0.0


class FakeMetrics:
    def __init__(self) -> None:
        self.service_restarts = _Family()
        self.service_quarantined = _Family()


class FakeOutput(Recorder):
    def __call__(self, service: str, line: bytes) -> None:
        self.add((service, line))


def env_for(spec: Any) -> dict[str, str]:
    """Child env for test specs: the mode from ``settings`` and the repo on the path."""
    return {MODE_ENV: spec.settings.get("mode", "sleep"), "PYTHONPATH": REPO_ROOT}


# ---- child programs ---------------------------------------------------------------------------


def _sleep_forever() -> None:
    while True:
        signal.pause()


def _mini_supervisor() -> None:
    from kernel.config import Config, ServiceSpec, SupervisorConfig
    from kernel.health import HealthState
    from kernel.launch import ExecLauncher
    from kernel.supervisor import Supervisor

    def output(service: str, line: bytes) -> None:
        print(f"{service}: {line.decode()}", flush=True)

    cfg = Config(
        supervisor=SupervisorConfig(heartbeat_timeout=0.0),
        services=(ServiceSpec(name="grandchild", module=MODULE, settings={"mode": "sleep"}),),
    )

    async def main() -> None:
        sup = Supervisor(
            cfg,
            health=HealthState(),
            bus=FakeBus(),
            launcher=ExecLauncher(),
            log=FakeLog(),
            output=output,
            env_for=env_for,
        )
        await sup.run()

    trio.run(main)


def main(argv: list[str]) -> None:
    from kernel.launch.pdeathsig import arm_from_env

    arm_from_env()
    mode = argv[1] if len(argv) > 1 else os.environ.get(MODE_ENV, "sleep")
    print(f"started {os.getpid()}", flush=True)
    if mode.startswith("exit:"):
        sys.exit(int(mode.split(":", 1)[1]))
    elif mode == "sleep":
        _sleep_forever()
    elif mode == "ignore-term":
        signal.signal(signal.SIGTERM, lambda *_: print("term ignored", flush=True))
        _sleep_forever()
    elif mode == "mini-supervisor":
        _mini_supervisor()
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
