"""kernel.metrics: one scrape for the node, golden names from specs/, counters that survive pids."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
import trio
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from kernel.config import load_config
from kernel.exposes import MetricSpec, exposes_of
from kernel.metrics import MULTIPROC_ENV, Metrics
from tests.support.tools import check_metrics

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "metrics.txt"


def golden() -> list[tuple[str, str, tuple[str, ...]]]:
    """(exposed name, type, labels) per line of specs/metrics.txt."""
    rows = []
    for line in SPEC.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, labels = line.split()
        rows.append((name, kind, () if labels == "-" else tuple(labels.split(","))))
    return rows


def family_name(exposed: str, kind: str) -> str:
    # The parser names counter families without the _total suffix.
    return exposed.removesuffix("_total") if kind == "counter" else exposed


def samples_by_name(body: bytes) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def every_service_metric() -> list[MetricSpec]:
    """What the services of both profiles declare (``kernel.exposes``): the supervisor's set."""
    found: dict[str, MetricSpec] = {}
    for profile in ("micronode", "macronode"):
        for spec in load_config(profile).services:
            found.update((m.name, m) for m in exposes_of(spec.module).metrics)
    return list(found.values())


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch):
    """Metrics() sets process-wide state on purpose; undo it after each test."""
    monkeypatch.setenv(MULTIPROC_ENV, "placeholder")
    monkeypatch.delenv(MULTIPROC_ENV)
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    made: list[Metrics] = []

    def make(directory: Path, **kwargs) -> Metrics:
        kwargs.setdefault("declared", every_service_metric())
        m = Metrics(directory, **kwargs)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def touch_every_metric(m: Metrics) -> None:
    for exposed, kind, labels in golden():
        metric = m.family(exposed.removesuffix("_total"))
        if labels:
            metric = metric.labels(**{label: "x" for label in labels})
        if kind == "histogram":
            metric.observe(0.002)
        elif kind == "gauge":
            metric.set(1)
        else:
            metric.inc()


def test_scrape_declares_every_golden_metric_even_untouched(isolated, tmp_path: Path) -> None:
    m = isolated(tmp_path / "metrics", amnesia=False, reset=True)
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for exposed, kind, _ in golden():
        assert families.get(family_name(exposed, kind)) == kind, exposed


def test_golden_labels_and_amnesia_on_every_sample(isolated, tmp_path: Path) -> None:
    m = isolated(tmp_path / "metrics", amnesia=True, reset=True)
    touch_every_metric(m)
    body, _ = m.render()
    by_name = samples_by_name(body)
    for exposed, kind, labels in golden():
        name = f"{exposed}_count" if kind == "histogram" else exposed
        assert name in by_name, exposed
        for sample in by_name[name]:
            assert set(sample.labels) == {*labels, "amnesia"}, (exposed, sample.labels)
    sample_lines = [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]
    assert sample_lines
    assert all('amnesia="on"' in ln for ln in sample_lines)


def test_amnesia_off_is_labelled_off(isolated, tmp_path: Path) -> None:
    m = isolated(tmp_path / "metrics", amnesia=False)
    m.integrity_fail.inc()
    body, _ = m.render()
    assert samples_by_name(body)["integrity_fail_total"][0].labels == {"amnesia": "off"}


def test_promtool_accepts_the_scrape(isolated, tmp_path: Path) -> None:
    m = isolated(tmp_path / "metrics", amnesia=False, reset=True)
    touch_every_metric(m)
    body, _ = m.render()
    assert check_metrics(body) == []


CHILD = textwrap.dedent(
    """
    import os, sys
    import prometheus_client  # imported before the node's dir is known: must not matter
    from pathlib import Path
    from kernel.metrics import Metrics
    m = Metrics(Path(sys.argv[1]), amnesia=False)
    m.service_restarts.labels(service="svc-x").inc(int(sys.argv[2]))
    m.bus_published.inc(int(sys.argv[2]))
    m.request_latency_seconds.labels(op="get").observe(0.004)
    print(os.getpid())
    """
)


async def run_child(directory: Path, amount: int) -> int:
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    done = await trio.run_process(
        [sys.executable, "-c", CHILD, str(directory), str(amount)],
        cwd=REPO,
        env=env,
        capture_stdout=True,
        check=True,
    )
    return int(done.stdout)


async def test_counters_sum_across_dead_and_new_children(isolated, tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    parent = isolated(directory, amnesia=False, reset=True)
    parent.bus_published.inc()
    with trio.fail_after(30):
        first = await run_child(directory, 2)  # runs, counts, exits ("crashes")
        second = await run_child(directory, 3)  # its restart: a new pid
    assert first != second

    def totals() -> tuple[float, float, float]:
        by_name = samples_by_name(parent.render()[0])
        restarts = by_name["service_restarts_total"]
        assert restarts[0].labels == {"service": "svc-x", "amnesia": "off"}
        return (
            restarts[0].value,
            by_name["bus_published_total"][0].value,
            by_name["request_latency_seconds_count"][0].value,
        )

    assert totals() == (5.0, 6.0, 2.0)
    # the two dead children's files were folded into the archives by that scrape: only the
    # live process's files and one archive per type are left, and the totals did not move
    names = sorted(p.name for p in directory.glob("*.db"))
    assert all(
        n.endswith("_archive.db") or n.split("_")[-1].startswith(f"{os.getpid()}.") for n in names
    ), names
    assert {"counter_archive.db", "histogram_archive.db"} <= set(names)
    assert parent.fold_dead() == 0
    assert totals() == (5.0, 6.0, 2.0), "folding dead processes must never lower a counter"
    with trio.fail_after(30):
        await run_child(directory, 4)  # a later restart adds on top of the archive
    assert totals() == (9.0, 10.0, 3.0)
    assert len(list(directory.glob("*.db"))) == len(names)


def test_reset_forgets_a_previous_run_and_plain_open_does_not(isolated, tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    old = isolated(directory, amnesia=False)
    old.integrity_fail.inc(7)
    old.close()

    def integrity(m: Metrics) -> float:
        return samples_by_name(m.render()[0])["integrity_fail_total"][0].value

    assert integrity(isolated(directory, amnesia=False)) == 7.0
    assert integrity(isolated(directory, amnesia=False, reset=True)) == 0.0


def test_quarantine_gauge_takes_the_latest_write(isolated, tmp_path: Path) -> None:
    m = isolated(tmp_path / "metrics", amnesia=False)
    m.service_quarantined.labels(service="svc-a").set(1)
    m.service_quarantined.labels(service="svc-a").set(0)
    (sample,) = samples_by_name(m.render()[0])["service_quarantined"]
    assert sample.value == 0.0
    assert sample.labels == {"service": "svc-a", "amnesia": "off"}


def test_directory_is_private(isolated, tmp_path: Path) -> None:
    m = isolated(tmp_path / "metrics", amnesia=True)
    assert (m.directory.stat().st_mode & 0o777) == 0o700


LIVE_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kernel.exposes import exposes_of
    from kernel.metrics import Metrics
    declared = exposes_of("services.overlay").metrics
    m = Metrics(Path(sys.argv[1]), amnesia=False, declared=declared)
    m.gauge("conn_inflight").inc(int(sys.argv[2]))  # connections it held when it died
    """
)


async def test_a_live_gauge_forgets_what_a_dead_process_held(isolated, tmp_path: Path) -> None:
    """conn_inflight sums live processes only: a crashed svc-overlay's connections are gone."""
    directory = tmp_path / "metrics"
    parent = isolated(directory, amnesia=False, reset=True)
    parent.gauge("conn_inflight").inc(1)
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    with trio.fail_after(30):
        await trio.run_process(
            [sys.executable, "-c", LIVE_CHILD, str(directory), "3"], cwd=REPO, env=env, check=True
        )
    (sample,) = samples_by_name(parent.render()[0])["conn_inflight"]
    assert sample.value == 1.0
    assert not [p for p in directory.glob("gauge_livesum_*.db") if str(os.getpid()) not in p.name]


def test_the_instance_id_is_cached_per_process_and_a_fork_gets_its_own() -> None:
    """Metric files are named by ``PID.START``: asked on every update, so cached (no syscall
    per update), and a forked child must never write into its parent's files."""
    from kernel._metrics_fold import InstanceId

    ident = InstanceId()
    mine = ident()
    assert mine.startswith(f"{os.getpid()}.") and ident() is mine
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        os.write(w, ident().encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert child.startswith(f"{pid}.") and child != mine
    assert ident() == mine
