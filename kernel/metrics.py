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

__all__ = ["LATENCY_BUCKETS", "MULTIPROC_ENV", "Metrics"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds; spans an in-process bus hop (sub-ms) up to a slow object transfer.
HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""The seeds' fixed buckets for ``handshake_latency_seconds`` (seconds)."""

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
      ``conn_inflight`` uses ``livesum``: the sum over live processes (a dead process's file is
      dropped at the next fold: the connections it held are gone).
    """

    def __init__(self, multiproc_dir: Path, *, amnesia: bool, reset: bool = False) -> None:
        """Open (and create, 0700) the node's metrics directory.

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

        self.service_restarts = Counter(
            "service_restarts", "Restarts of a supervised service.", ["service"], registry=None
        )
        self.bus_published = Counter(
            "bus_published", "KernelEvents published on the bus.", registry=None
        )
        self.bus_no_receivers = Counter(
            "bus_no_receivers", "Bus publishes with no subscriber connected.", registry=None
        )
        self.bus_receiver_lag = Counter(
            "bus_receiver_lag", "Events a receiver missed (sequence gaps).", registry=None
        )
        self.bus_dropped = Counter(
            "bus_dropped", "Events dropped by a publisher because the bus was full.", registry=None
        )
        self.bus_lagged = Counter(
            "bus_lagged", "Lag incidents detected by bus receivers.", registry=None
        )
        self.request_latency_seconds = Histogram(
            "request_latency_seconds",
            "Latency of a request by operation.",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.rejected = Counter(
            "rejected", "Requests rejected, by stable reason.", ["reason"], registry=None
        )
        self.busy_rejections = Counter(
            "busy_rejections",
            "Commands answered Busy because a queue was full.",
            ["queue"],
            registry=None,
        )
        self.queue_dropped = Counter(
            "queue_dropped",
            "Items dropped because a bounded queue was full.",
            ["queue"],
            registry=None,
        )
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=None,
        )
        self.service_quarantined = Gauge(
            "service_quarantined",
            "1 while a service is quarantined (not restarted), else 0.",
            ["service"],
            multiprocess_mode="mostrecent",
            registry=None,
        )
        self.auth_failures = Counter(
            "auth_failures",
            "Writes refused for their capability token, by verifying service and reason.",
            ["service", "reason"],
            registry=None,
        )
        self.integrity_fail = Counter(
            "integrity_fail", "Objects whose digest did not match (never served).", registry=None
        )

        # ron-transport (svc-overlay): the seeds' transport metrics
        self.transport_dials = Counter(
            "transport_dials",
            "Dials to peers, by backend and result.",
            ["backend", "result"],
            registry=None,
        )
        self.transport_accepts = Counter(
            "transport_accepts", "Connections accepted from peers.", registry=None
        )
        self.handshake_latency_seconds = Histogram(
            "handshake_latency_seconds",
            "Connect to a completed TLS handshake (pin checked).",
            buckets=HANDSHAKE_BUCKETS,
            registry=None,
        )
        self.tls_handshake_failures = Counter(
            "tls_handshake_failures", "TLS handshakes that failed, either side.", registry=None
        )
        self.io_timeouts = Counter(
            "io_timeouts", "Transport waits that ran out, by op.", ["op"], registry=None
        )
        self.bytes_in = Counter("bytes_in", "Bytes received from peers.", registry=None)
        self.bytes_out = Counter("bytes_out", "Bytes sent to peers.", registry=None)
        self.conn_inflight = Gauge(
            "conn_inflight",
            "Peer connections svc-overlay's listener serves now.",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.pq_fallback = Counter(
            "pq_fallback",
            "Peer connections that fell back to plain TLS (pq.mode = hybrid).",
            registry=None,
        )

        # svc-mailbox (the seeds' M3 metrics and the outbox)
        self.mailbox_sent = Counter(
            "mailbox_sent", "Messages stored (or queued for another node) once.", registry=None
        )
        self.mailbox_delivered = Counter(
            "mailbox_delivered", "Deliveries of messages to receivers.", registry=None
        )
        self.mailbox_acked = Counter("mailbox_acked", "Messages acked (deleted).", registry=None)
        self.mailbox_visibility_timeout = Counter(
            "mailbox_visibility_timeout",
            "Deliveries whose visibility ended without an ack or nack (redelivered).",
            registry=None,
        )
        self.mailbox_dlq = Counter(
            "mailbox_dlq", "Messages moved to a dead-letter queue (max_deliver).", registry=None
        )
        self.mailbox_depth = Gauge(
            "mailbox_depth",
            "Messages in a mailbox, dead letters excluded (a bounded set of mailbox labels).",
            ["mailbox"],
            multiprocess_mode="livesum",
            registry=None,
        )
        self.mailbox_outbox_depth = Gauge(
            "mailbox_outbox_depth",
            "Messages waiting in the outbox for another node to accept them.",
            multiprocess_mode="livesum",
            registry=None,
        )

        self.storage_bytes = Gauge(
            "storage_bytes",
            "Bytes of objects svc-storage holds (its quota is storage_quota_bytes).",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.storage_objects = Gauge(
            "storage_objects",
            "Objects svc-storage holds.",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.storage_quota_bytes = Gauge(
            "storage_quota_bytes",
            "svc-storage's max_bytes: a PUT that would go over it is refused 507.",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.node_ready = Gauge(
            "node_ready",
            "1 while /readyz says 200 (every required service ready), else 0; set at each scrape.",
            multiprocess_mode="livesum",  # only the supervisor sets it; the others hold 0
            registry=None,
        )

        declared = [
            family
            for wrapper in (
                self.mailbox_sent,
                self.mailbox_delivered,
                self.mailbox_acked,
                self.mailbox_visibility_timeout,
                self.mailbox_dlq,
                self.mailbox_depth,
                self.mailbox_outbox_depth,
                self.transport_dials,
                self.transport_accepts,
                self.handshake_latency_seconds,
                self.tls_handshake_failures,
                self.io_timeouts,
                self.bytes_in,
                self.bytes_out,
                self.pq_fallback,
                self.conn_inflight,
                self.service_restarts,
                self.bus_published,
                self.bus_no_receivers,
                self.bus_receiver_lag,
                self.bus_dropped,
                self.bus_lagged,
                self.request_latency_seconds,
                self.rejected,
                self.busy_rejections,
                self.queue_dropped,
                self.http_requests,
                self.service_quarantined,
                self.integrity_fail,
                self.auth_failures,
                self.storage_bytes,
                self.storage_objects,
                self.node_ready,
            )
            for family in wrapper.describe()
        ]
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(
            _AmnesiaLabelCollector(self.directory, "on" if amnesia else "off", declared)
        )

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
