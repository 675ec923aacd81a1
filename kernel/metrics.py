"""Node-wide Prometheus metrics: every process records, the supervisor serves one scrape.

Each process of the node (the supervisor and every service process, restarted with new pids) writes
its samples into per-pid mmap files under one directory inside the node's runtime dir
(prometheus_client's multiprocess mode). The supervisor's scrape merges all files, live and dead:
a counter summed over pids never goes down because a child crashed and came back.

The golden names are a contract kept in ``specs/metrics.txt``; tests check the scrape against it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from kernel._metrics_fold import InstanceId, fold_dead
from kernel.exposes import MetricSpec

__all__ = ["KERNEL_METRICS", "LATENCY_BUCKETS", "MULTIPROC_ENV", "Metrics"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds; spans an in-process bus hop (sub-ms) up to a slow object transfer.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

KERNEL_METRICS = (
    MetricSpec("service_restarts", "counter", "Restarts of a supervised service.", ("service",)),
    MetricSpec("bus_published", "counter", "KernelEvents published on the bus."),
    MetricSpec("bus_no_receivers", "counter", "Bus publishes with no subscriber connected."),
    MetricSpec("bus_receiver_lag", "counter", "Events a receiver missed (sequence gaps)."),
    MetricSpec("bus_dropped", "counter", "Events dropped by a publisher because the bus was full."),
    MetricSpec("bus_lagged", "counter", "Lag incidents detected by bus receivers."),
    MetricSpec(
        "request_latency_seconds",
        "histogram",
        "Latency of a request by operation.",
        ("op",),
        buckets=LATENCY_BUCKETS,
    ),
    MetricSpec("rejected", "counter", "Requests rejected, by stable reason.", ("reason",)),
    MetricSpec(
        "busy_rejections", "counter", "Commands answered Busy because a queue was full.", ("queue",)
    ),
    MetricSpec(
        "queue_dropped", "counter", "Items dropped because a bounded queue was full.", ("queue",)
    ),
    MetricSpec(
        "http_requests",
        "counter",
        "HTTP requests by route template, method and status.",
        ("route", "method", "status"),
    ),
    MetricSpec(
        "service_quarantined",
        "gauge",
        "1 while a service is quarantined (not restarted), else 0.",
        ("service",),
        gauge_mode="mostrecent",
    ),
    MetricSpec(
        "auth_failures",
        "counter",
        "Writes refused for their capability token, by verifying service and reason.",
        ("service", "reason"),
    ),
    MetricSpec("integrity_fail", "counter", "Objects whose digest did not match (never served)."),
    MetricSpec(
        "node_ready",
        "gauge",
        "1 while /readyz says 200 (every required service ready), else 0; set at each scrape.",
        gauge_mode="livesum",  # only the supervisor sets it; the others hold 0
    ),
)
"""The kernel's own families (supervision, bus, commands, HTTP, tokens); the services declare
theirs (``kernel.exposes``)."""

Family = Counter | Gauge | Histogram


def _family(spec: MetricSpec) -> Family:
    """The prometheus-client wrapper of ``spec``, in no registry (the scrape reads the files)."""
    if spec.kind == "counter":
        return Counter(spec.name, spec.help, spec.labels, registry=None)
    if spec.kind == "gauge":
        return Gauge(
            spec.name, spec.help, spec.labels, multiprocess_mode=spec.gauge_mode, registry=None
        )
    buckets = spec.buckets or LATENCY_BUCKETS
    return Histogram(spec.name, spec.help, spec.labels, buckets=buckets, registry=None)


class _AmnesiaLabelCollector(Collector):
    """Wraps the multiprocess collector: the one place that stamps ``amnesia`` on every series.

    It also yields an empty family for every golden metric that has no sample yet (a labelled
    counter nobody has touched), so the scrape always names the whole contract.
    """

    def __init__(self, directory: Path, amnesia: str, declared: Iterable[Metric]) -> None:
        self._inner = MultiProcessCollector(None, path=str(directory))
        self._amnesia = amnesia
        self._declared = list(declared)

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for family in self._inner.collect():
            seen.add(family.name)
            stamped = Metric(family.name, family.documentation, family.type, family.unit)
            stamped.samples = [
                Sample(
                    s.name,
                    {**s.labels, "amnesia": self._amnesia},
                    s.value,
                    s.timestamp,
                    s.exemplar,
                )
                for s in family.samples
            ]
            yield stamped
        for family in self._declared:
            if family.name not in seen:
                yield Metric(family.name, family.documentation, family.type, family.unit)


class Metrics:
    """The node's golden metrics, written by this process into the node's shared directory.

    Guarantees:
    - Works whatever the import order: prometheus_client picks its value class from
      ``PROMETHEUS_MULTIPROC_DIR`` once, when ``prometheus_client.values`` is imported, so a process
      that imported prometheus_client before knowing its runtime dir would silently keep
      per-process in-memory values that no scrape ever sees. We therefore set the env var (the
      mmap value reads it whenever it opens a file) and install a fresh ``MultiProcessValue``
      class ourselves, before creating any metric. It stays installed because labelled children
      (``.labels(...)``) are created lazily and read ``values.ValueClass`` at that moment.
      Consequence: this is per-process state; create one ``Metrics`` per process (a later one
      takes over the files for children created after it).
    - Metrics live in a private ``CollectorRegistry``, never the global ``REGISTRY``: the wrappers
      only know this pid's values, the scrape reads everyone's files.
    - Counters and histograms survive child restarts: a dead process's counts are kept and summed;
      its files are folded into one archive per type (``_metrics_fold``) at each scrape and
      ``fold_dead`` call, so the directory stays as small as the set of live processes.
    - Gauges: ``service_quarantined`` uses ``mostrecent``: the last write from any process wins
      (only the supervisor writes it), so a dead process cannot pin a stale value;
      a ``livesum`` gauge (the default for a declared gauge) is the sum over live processes (a
      dead process's file is dropped at the next fold: what it held is gone).
    """

    def __init__(
        self,
        multiproc_dir: Path,
        *,
        amnesia: bool,
        reset: bool = False,
        declared: Iterable[MetricSpec] = (),
    ) -> None:
        """Open (and create, 0700) the node's metrics directory; make the kernel's families and
        ``declared`` (the services': each process its own, the supervisor every service's, so
        the scrape names them all before any sample exists). Services may declare the same
        family (the same spec: ron-transport's metrics in every service that dials); two
        different specs under one name are refused (``ValueError``).

        ``reset=True`` deletes sample files of a previous node run; only the supervisor passes
        it, once, before spawning children (children must never reset: they would erase their
        siblings' counts).
        """
        self.directory = Path(multiproc_dir)
        self.amnesia = amnesia
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if reset:
            for stale in self.directory.glob("*.db"):
                stale.unlink(missing_ok=True)
        os.environ[MULTIPROC_ENV] = str(self.directory)
        self._value_class = values.MultiProcessValue(process_identifier=InstanceId())
        self._fold_lock = threading.Lock()  # a fold and a scrape never overlap
        values.ValueClass = self._value_class

        self._families: dict[str, Family] = {}
        specs: dict[str, MetricSpec] = {}
        for spec in (*KERNEL_METRICS, *declared):
            if spec.name in specs:
                if specs[spec.name] == spec:
                    continue  # a shared family (ron-transport's, in each service that uses it)
                raise ValueError(f"metric {spec.name} is declared twice, differently")
            specs[spec.name] = spec
            self._families[spec.name] = _family(spec)
        self.service_restarts = self.counter("service_restarts")
        self.bus_published = self.counter("bus_published")
        self.bus_no_receivers = self.counter("bus_no_receivers")
        self.bus_receiver_lag = self.counter("bus_receiver_lag")
        self.bus_dropped = self.counter("bus_dropped")
        self.bus_lagged = self.counter("bus_lagged")
        self.request_latency_seconds = self.histogram("request_latency_seconds")
        self.rejected = self.counter("rejected")
        self.busy_rejections = self.counter("busy_rejections")
        self.queue_dropped = self.counter("queue_dropped")
        self.http_requests = self.counter("http_requests")
        self.service_quarantined = self.gauge("service_quarantined")
        self.auth_failures = self.counter("auth_failures")
        self.integrity_fail = self.counter("integrity_fail")
        self.node_ready = self.gauge("node_ready")
        families = [f for wrapper in self._families.values() for f in wrapper.describe()]
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(
            _AmnesiaLabelCollector(self.directory, "on" if amnesia else "off", families)
        )

    def family(self, name: str) -> Family:
        """The family ``name`` (the kernel's, or one this process declared); KeyError if none."""
        return self._families[name]

    def counter(self, name: str) -> Counter:
        """The counter ``name``; KeyError if there is no such counter."""
        family = self._families[name]
        if not isinstance(family, Counter):
            raise KeyError(f"{name} is not a counter")
        return family

    def gauge(self, name: str) -> Gauge:
        """The gauge ``name``; KeyError if none."""
        family = self._families[name]
        if not isinstance(family, Gauge):
            raise KeyError(f"{name} is not a gauge")
        return family

    def histogram(self, name: str) -> Histogram:
        """The histogram ``name``; KeyError if none."""
        family = self._families[name]
        if not isinstance(family, Histogram):
            raise KeyError(f"{name} is not a histogram")
        return family

    def render(self) -> tuple[bytes, str]:
        """The aggregate scrape of every process of the node: (body, content type).

        Reads the sample files (small, on tmpfs in micronode); call it from a worker thread in a
        trio program. Every sample line carries ``amnesia="on"|"off"``.
        """
        with self._fold_lock:
            fold_dead(self.directory)
            return generate_latest(self._registry), CONTENT_TYPE_PLAIN_0_0_4

    def fold_dead(self) -> int:
        """Fold the sample files of processes that are gone into the archives; returns how many.

        Blocking file I/O (small files): call it from a worker thread in a trio program.
        """
        with self._fold_lock:
            return fold_dead(self.directory)

    def close(self) -> None:
        """Unmap this process's sample files (values already written stay in the files)."""
        self._value_class.close_all_files()
