"""The kernel (outside ``kernel/cli``, which is a client) names no service: no ``svc-...`` name
and no service's metric. A new service is a package and a profile entry (``kernel.exposes``);
the day the kernel needs to know one by name, this test says where."""

from __future__ import annotations

import re
from pathlib import Path

KERNEL = Path(__file__).resolve().parents[2] / "kernel"
SERVICE_NAME = re.compile(r"svc-[a-z0-9]")
SERVICE_METRIC = re.compile(r"\b(mailbox|storage|overlay|transport)_[a-z_]+")
# the one allowed mention: the naming rule itself (DESIGN.md §2: services are svc-*)
ALLOWED = {("exposes.py", 'SERVICE_PREFIX = "svc-"')}


def mentions(pattern: re.Pattern[str]) -> list[str]:
    found = []
    for path in sorted(KERNEL.rglob("*.py")):
        rel = path.relative_to(KERNEL)
        if rel.parts[0] == "cli":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not any(
                rel.name == name and text in line for name, text in ALLOWED
            ):
                found.append(f"kernel/{rel}:{number}: {line.strip()}")
    return found


def test_no_service_name_in_the_kernel() -> None:
    assert mentions(SERVICE_NAME) == []


def test_no_service_metric_in_the_kernel() -> None:
    assert mentions(SERVICE_METRIC) == []
