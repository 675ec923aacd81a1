"""The drill's workload through the gateway (DESIGN.md §8) and its ledger of acknowledged writes.

Operation ``i`` is a pure function of ``(seed, i)``: its kind (PUT object, GET an acknowledged
object, update a name), the object's size (log-uniform up to ``max_size``, or ``large_size`` for a
share of them) and bytes. Object bytes
are never kept: they are regenerated from their seed to verify, so a long drill's memory is the
ledger of ids, not the data.

What counts as acknowledged, and so must never be lost:
- an object whose ``PUT /o`` answered 200/201 with the id of the bytes sent;
- a name whose ``PUT /names/{name}`` answered 200: it must later resolve to the last
  acknowledged id, or to an id of an update sent after it whose outcome is unknown (a timeout
  or 5xx may have been applied). Each name has one writer at a time, so "after" is well defined.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable

import attrs
import trio

from ipc import manifest
from kernel.cli.chaos.http import HttpError, HttpResponse, request

__all__ = ["Ledger", "NameRecord", "Workload", "WorkloadOptions", "object_bytes"]

JSON = "application/json"
REQUEST_TIMEOUT = 10.0
MAX_SAMPLES = 500_000  # latency samples kept for the report and the plot
# answers that mean "not applied": the write may be retried, nothing is owed
DEFINITE_REJECTIONS = frozenset({400, 404, 405, 409, 413, 415, 422, 429})


def object_bytes(seed: int, size: int) -> bytes:
    """The bytes of a workload object (deterministic in ``seed`` and ``size``)."""
    return random.Random(seed).randbytes(size)


def content_id(data: bytes) -> str:
    """The object id the node must answer (over 1 MiB: its manifest's, ``specs/objects.md``)."""
    return manifest.object_id(data)


@attrs.frozen
class WorkloadOptions:
    seed: int
    rate: float  # operations per second (open loop: late operations are shed, not queued)
    concurrency: int = 16
    max_size: int = 4 * 1024 * 1024
    large_share: float = 0.04  # of the PUTs: a large object (stored as chunks under a manifest)
    large_size: int = 10 * 1024 * 1024 + 12_345
    names: int = 8
    put_share: float = 0.5
    get_share: float = 0.3  # the rest are name updates


@attrs.frozen
class AckedObject:
    id: str
    size: int
    seed: int


@attrs.define
class NameRecord:
    acked_id: str | None = None
    acked_version: int = 0
    maybe: list[str] = attrs.field(factory=list)  # ids sent after the last ack, outcome unknown
    busy: bool = False


@attrs.define
class Ledger:
    objects: dict[str, AckedObject] = attrs.field(factory=dict)
    order: list[str] = attrs.field(factory=list)
    names: dict[str, NameRecord] = attrs.field(factory=dict)

    def ack_object(self, obj: AckedObject) -> None:
        if obj.id not in self.objects:
            self.objects[obj.id] = obj
            self.order.append(obj.id)


@attrs.define
class Counts:
    """Outcomes by operation: ``ok`` (acknowledged / read back), ``rejected`` (a definite 4xx),
    ``failed`` (5xx, timeout, transport), and the invariant breaks seen during the storm."""

    ok: dict[str, int] = attrs.field(factory=lambda: {"put": 0, "get": 0, "name": 0})
    rejected: dict[str, int] = attrs.field(factory=lambda: {"put": 0, "get": 0, "name": 0})
    failed: dict[str, int] = attrs.field(factory=lambda: {"put": 0, "get": 0, "name": 0})
    shed: int = 0  # operations not started because every worker was busy
    skipped: int = 0  # GET with nothing acked yet, or the name had a write in flight
    read_mismatch: int = 0  # a 200 whose bytes differ from what was acknowledged
    missing_during_storm: int = 0  # an acknowledged object answered 404 during the storm
    wrong_id: int = 0  # PUT /o acknowledged an id that is not the hash of the bytes sent
    failures: dict[str, int] = attrs.field(factory=dict)  # "put 503", "get timeout", ...

    @property
    def errors(self) -> int:
        return sum(self.failed.values())


@attrs.frozen
class Sample:
    t: float  # seconds since the storm started (the request's end)
    op: str
    latency: float
    ok: bool


class Workload:
    """Runs the seeded operations against ``gateway`` at ``options.rate`` until cancelled."""

    def __init__(
        self,
        gateway: str,
        options: WorkloadOptions,
        *,
        clock: Callable[[], float],
        token: str | None = None,
    ) -> None:
        self.gateway = gateway.rstrip("/")
        self._auth = [("authorization", f"Bearer {token}")] if token else []
        self.options = options
        self.ledger = Ledger()
        self.counts = Counts()
        self.samples: list[Sample] = []
        self.samples_dropped = 0
        self.issued = 0
        self._clock = clock

    async def _call(
        self,
        op: str,
        started: float,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> HttpResponse | None:
        """One request to the gateway. None if no answer came (a dropped or refused connection,
        a timeout): then the failure is already counted, noted and sampled under ``op``."""
        headers = [("content-type", content_type)] if content_type else []
        if method == "PUT":
            headers += self._auth
        try:
            return await request(
                method, self.gateway + path, body=body, headers=headers, timeout=REQUEST_TIMEOUT
            )
        except HttpError as exc:
            self.counts.failed[op] += 1
            self._note_failure(op, "timeout" if "no answer" in str(exc) else "transport")
            self._sample(op, started, False)
            return None

    def _note_failure(self, op: str, what: str) -> None:
        key = f"{op} {what}"
        self.counts.failures[key] = self.counts.failures.get(key, 0) + 1

    def _sample(self, op: str, started: float, ok: bool) -> None:
        if len(self.samples) >= MAX_SAMPLES:
            self.samples_dropped += 1
            return
        self.samples.append(Sample(self._clock(), op, time.monotonic() - started, ok))

    async def run(self) -> None:
        """Issue operations until cancelled (open loop at ``rate``, ``concurrency`` workers)."""
        send, receive = trio.open_memory_channel[int](self.options.concurrency)
        async with trio.open_nursery() as nursery:
            for _ in range(self.options.concurrency):
                nursery.start_soon(self._worker, receive.clone())
            period = 1.0 / self.options.rate
            next_at = trio.current_time()
            i = 0
            while True:
                try:
                    send.send_nowait(i)
                except trio.WouldBlock:
                    self.counts.shed += 1
                i += 1
                self.issued = i
                next_at += period
                await trio.sleep_until(next_at)

    async def _worker(self, receive: trio.MemoryReceiveChannel[int]) -> None:
        async with receive:
            async for i in receive:
                await self.run_op(i)

    async def run_op(self, i: int) -> None:
        """Operation ``i`` of the seeded sequence."""
        opts = self.options
        rng = random.Random(f"op:{opts.seed}:{i}")
        kind = rng.random()
        size = max(1, int(math.exp(rng.uniform(0, math.log(opts.max_size)))))
        data_seed = rng.getrandbits(64)
        pick = rng.random()
        name = f"chaos-{opts.seed}-{rng.randrange(opts.names)}"
        if rng.random() < opts.large_share:
            size = opts.large_size
        if kind < opts.put_share:
            await self._put(size, data_seed)
        elif kind < opts.put_share + opts.get_share:
            await self._get(pick)
        else:
            await self._name(name, pick)

    async def _put(self, size: int, data_seed: int) -> None:
        data = object_bytes(data_seed, size)
        expected = content_id(data)
        started = time.monotonic()
        resp = await self._call("put", started, "PUT", "/o", data, "application/octet-stream")
        if resp is None:
            return
        if resp.status in (200, 201):
            try:
                got = json.loads(resp.body)["id"]
            except (ValueError, KeyError, TypeError):
                got = None
            if got != expected:
                self.counts.wrong_id += 1
                self._sample("put", started, False)
                return
            self.ledger.ack_object(AckedObject(expected, size, data_seed))
            self.counts.ok["put"] += 1
            self._sample("put", started, True)
            return
        bucket = "rejected" if resp.status in DEFINITE_REJECTIONS else "failed"
        getattr(self.counts, bucket)["put"] += 1
        self._note_failure("put", str(resp.status))
        self._sample("put", started, False)

    async def _get(self, pick: float) -> None:
        order = self.ledger.order
        if not order:
            self.counts.skipped += 1
            return
        obj = self.ledger.objects[order[int(pick * len(order))]]
        started = time.monotonic()
        resp = await self._call("get", started, "GET", f"/o/{obj.id}")
        if resp is None:
            return
        if resp.status == 200:
            if resp.body != object_bytes(obj.seed, obj.size):
                self.counts.read_mismatch += 1
                self._sample("get", started, False)
                return
            self.counts.ok["get"] += 1
            self._sample("get", started, True)
            return
        if resp.status == 404:
            self.counts.missing_during_storm += 1
        self.counts.failed["get"] += 1
        self._note_failure("get", str(resp.status))
        self._sample("get", started, False)

    async def _name(self, name: str, pick: float) -> None:
        order = self.ledger.order
        record = self.ledger.names.setdefault(name, NameRecord())
        if not order or record.busy:
            self.counts.skipped += 1
            return
        target = order[int(pick * len(order))]
        record.busy = True
        # Unknown until answered: if we are cancelled mid-request the update may still apply.
        record.maybe.append(target)
        started = time.monotonic()
        body = json.dumps({"id": target}).encode()
        try:
            resp = await self._call("name", started, "PUT", f"/names/{name}", body, JSON)
        finally:
            record.busy = False
        if resp is None:
            return
        if resp.status == 200:
            try:
                version = int(json.loads(resp.body)["version"])
            except (ValueError, KeyError, TypeError):
                version = record.acked_version + 1
            record.acked_id, record.acked_version, record.maybe = target, version, []
            self.counts.ok["name"] += 1
            self._sample("name", started, True)
            return
        if resp.status in DEFINITE_REJECTIONS:
            record.maybe.remove(target)
            self.counts.rejected["name"] += 1
        else:
            self.counts.failed["name"] += 1
        self._note_failure("name", str(resp.status))
        self._sample("name", started, False)
