"""Overlay benchmark: fetch by id from a real node over TLS vs bare trio TCP/TLS transfers of the
same bytes (client-side BLAKE3 verification in every cell), all in one run.

Cells (64 KiB and 1 MiB objects, 1 and 8 requests in flight on one connection):

- ``overlay``: the app SDK (``ipc.sdk.AsyncClient``) fetching from node A's svc-overlay: TLS
  1.3 pinned by node id, OAP/1 START/DATA/END frames, verified against the id;
  ``overlay+pq``: the same with ``pq.mode = hybrid`` on both ends (ML-KEM-768 exchange, every
  DATA payload sealed again with ChaCha20-Poly1305);
- ``bare tls`` / ``bare tcp``: a bare trio server process sending the same bytes as 4-byte
  length-prefixed 64 KiB frames over ``trio.SSLStream`` / plain TCP; the client hashes every
  frame and checks the id (the shape of ``../shared/notes/overlay.md``);
- ``via B``: ``GET /o/{id}`` on node B's gateway for 64 KiB objects only node A holds (B fetches,
  verifies, commits, serves): p50/p95 per request;
- handshakes: 200 sequential connect -> first answer, to A's overlay (TLS, pinned, HELLO) and to
  the bare TLS server.

CPU per MB is the client's plus the server process's (svc-overlay for ``overlay``), from /proc.

    python bench/overlay.py [--seconds 4] [--handshakes 200]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import blake3  # noqa: E402
import trio  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from bench.gateway import cpu_seconds, mint_token, service_pid  # noqa: E402
from ipc import ids  # noqa: E402
from ipc.sdk import AsyncClient  # noqa: E402
from ipc.transport import NodeCertificate, PeerAddr, client_context, dial, server_context  # noqa: E402

SIZES = {"64KiB": 64 << 10, "1MiB": 1 << 20}
FRAME = 64 << 10


# --- nodes ----------------------------------------------------------------------------------


def start_node(
    workdir: Path,
    name: str,
    peers: list[str],
    pq_mode: str = "off",
    *,
    profile: str = "micronode",
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], dict]:
    """A node of its own (``ronctl run PROFILE``) with ``overlay.peers``; its ready line, with
    ``runtime_dir`` and its peer ``addr`` added."""
    runtime = Path(tempfile.mkdtemp(prefix=f"rov-{name}-", dir="/dev/shm"))
    cfg = workdir / f"{name}.toml"
    cfg.write_text(f'[overlay]\npeers = {json.dumps(peers)}\n\n[pq]\nmode = "{pq_mode}"\n')
    cmd = [sys.executable, "-m", "kernel", "run", profile, "--config", str(cfg), *extra]
    for flag in ("--admin-addr", "--gateway-addr", "--overlay-addr"):
        cmd += [flag, "127.0.0.1:0"]
    cmd += ["--runtime-dir", str(runtime)]
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the node
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(runtime)], check=False)
        raise SystemExit(f"node {name} did not start; see {workdir / f'{name}.log'}")
    ready = json.loads(line)
    version = json.loads(urllib.request.urlopen(ready["admin"] + "/version", timeout=10).read())
    ready["runtime_dir"] = str(runtime)
    ready["addr"] = f"{version['node_id']}@{ready['overlay'].removeprefix('tcp://')}"
    return proc, ready


def put(gateway: str, token: str, data: bytes) -> str:
    req = urllib.request.Request(
        gateway + "/o", data=data, method="PUT", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.loads(resp.read())["id"])


# --- the bare baseline server (a process of its own) ------------------------------------------


def bare_server(port_file: str, tls: bool, sizes: list[int]) -> None:
    """Serves request = 4-byte object index; answer = the object as length-prefixed frames."""
    objects = [os.urandom(size) for size in sizes]
    cert = NodeCertificate.from_identity(Ed25519PrivateKey.generate())
    ctx = server_context(cert) if tls else None

    async def one(stream: trio.abc.Stream) -> None:
        if ctx is not None:
            stream = trio.SSLStream(stream, ctx, server_side=True)
        buf = b""
        try:
            while True:
                while len(buf) < 4:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                (index,), buf = struct.unpack(">I", buf[:4]), buf[4:]
                obj = memoryview(objects[index])
                for off in range(0, len(obj), FRAME):
                    piece = obj[off : off + FRAME]
                    await stream.send_all(struct.pack(">I", len(piece)) + piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        info = {
            "port": listeners[0].socket.getsockname()[1],
            "ids": [ids.id_of(o) for o in objects],
        }
        await trio.Path(port_file).write_text(json.dumps(info))
        await trio.serve_listeners(one, listeners)

    trio.run(main)


def start_bare(workdir: Path, tls: bool, sizes: list[int]) -> tuple[subprocess.Popen[bytes], dict]:
    port_file = workdir / f"bare-{'tls' if tls else 'tcp'}.json"
    cmd = [sys.executable, __file__, "--bare", str(port_file), "--bare-tls", str(int(tls))]
    cmd += ["--bare-sizes", ",".join(map(str, sizes))]
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            raise SystemExit("the bare server did not start")
        time.sleep(0.05)
    return proc, json.loads(port_file.read_text())


# --- measurements --------------------------------------------------------------------------


def client_cpu() -> float:
    usage = os.times()
    return usage.user + usage.system


async def overlay_cell(
    addr: str, obj_ids: list[str], inflight: int, seconds: float, pq_mode: str = "off"
) -> tuple[int, int]:
    """(objects, bytes) fetched in ``seconds``, ``inflight`` at once on one connection."""
    done = [0, 0]
    async with AsyncClient.connect(addr, pq_mode=pq_mode) as client:
        if client.pq != ("pq" if pq_mode == "hybrid" else "off"):
            raise SystemExit(f"the overlay cell negotiated {client.pq!r}")
        end = time.monotonic() + seconds

        async def worker(k: int) -> None:
            i = k
            while time.monotonic() < end:
                data = await client.get(obj_ids[i % len(obj_ids)], max_size=2 << 20)
                done[0] += 1
                done[1] += len(data)
                i += inflight

        async with trio.open_nursery() as nursery:
            for k in range(inflight):
                nursery.start_soon(worker, k)
    return done[0], done[1]


async def bare_cell(
    port: int, tls: bool, indexes: list[int], obj_ids: list[str], inflight: int, seconds: float
) -> tuple[int, int]:
    """The same over the bare server: ``inflight`` requests pipelined, answers in order."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if tls:
        ctx = client_context(None)
        stream = trio.SSLStream(stream, ctx)
        await stream.do_handshake()
    done = [0, 0]
    end = time.monotonic() + seconds
    outstanding = trio.Semaphore(inflight)
    order_send, order_recv = trio.open_memory_channel[int](inflight)
    buf = bytearray()

    async def sender() -> None:
        async with order_send:
            i = 0
            while time.monotonic() < end:
                await outstanding.acquire()
                k = i % len(indexes)
                await stream.send_all(struct.pack(">I", indexes[k]))
                await order_send.send(k)
                i += 1

    async def read_exactly(n: int) -> bytes:
        while len(buf) < n:
            data = await stream.receive_some(1 << 18)
            if not data:
                raise EOFError
            buf.extend(data)
        out = bytes(buf[:n])
        del buf[:n]
        return out

    async def receiver() -> None:
        async for k in order_recv:  # answers come in request order
            hasher, got = blake3.blake3(), 0
            while got < SIZE_OF[indexes[k]]:
                (n,) = struct.unpack(">I", await read_exactly(4))
                hasher.update(await read_exactly(n))
                got += n
            if "b3:" + hasher.hexdigest() != obj_ids[indexes[k]]:
                raise SystemExit("bare transfer: digest mismatch")
            done[0] += 1
            done[1] += got
            outstanding.release()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    await stream.aclose()
    return done[0], done[1]


SIZE_OF: dict[int, int] = {}


async def handshakes(addr: str | None, port: int | None, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        if addr is not None:
            async with trio.open_nursery() as nursery:
                conn = await dial(PeerAddr.parse(addr), None, nursery)
                await conn.channel.aclose()
        else:
            stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), CLIENT_CTX)
            await stream.do_handshake()
            await stream.aclose()
        times.append(time.perf_counter() - start)
    return sorted(times)


CLIENT_CTX = client_context(None)


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * q))] * 1000 if xs else 0.0


def spread(xs: list[float]) -> str:
    return f"p50 {pct(xs, 0.5):.1f} ms p95 {pct(xs, 0.95):.1f} ms p99 {pct(xs, 0.99):.1f} ms"


def via_b(gateway_b: str, obj_ids: list[str]) -> list[float]:
    times = []
    for obj_id in obj_ids:
        start = time.perf_counter()
        with urllib.request.urlopen(f"{gateway_b}/o/{obj_id}", timeout=30) as resp:
            data = resp.read()
        times.append(time.perf_counter() - start)
        if ids.id_of(data) != obj_id:
            raise SystemExit("via B: wrong bytes")
    return sorted(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput cell (4)")
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--via-b", type=int, default=100, help="objects fetched through B (100)")
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    parser.add_argument("--bare-tls", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--bare-sizes", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_server(args.bare, bool(args.bare_tls), [int(s) for s in args.bare_sizes.split(",")])
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="ovbench-"))
    per_size = 8
    sizes = [size for size in SIZES.values() for _ in range(per_size)]
    for i, size in enumerate(sizes):
        SIZE_OF[i] = size
    procs: list[subprocess.Popen[bytes]] = []
    readies: list[dict] = []
    try:
        a, ready_a = start_node(workdir, "a", [], pq_mode="hybrid")  # answers PQ when asked
        procs.append(a)
        readies.append(ready_a)
        token = mint_token(ready_a["runtime_dir"])
        # the node's objects: the same sizes as the bare server's (different bytes)
        node_ids = {
            label: [put(ready_a["gateway"], token, os.urandom(size)) for _ in range(per_size)]
            for label, size in SIZES.items()
        }
        b_ids = [
            put(ready_a["gateway"], token, os.urandom(SIZES["64KiB"])) for _ in range(args.via_b)
        ]
        b, ready_b = start_node(workdir, "b", [ready_a["addr"]])
        procs.append(b)
        readies.append(ready_b)
        bare_tls, info_tls = start_bare(workdir, True, sizes)
        bare_tcp, info_tcp = start_bare(workdir, False, sizes)
        procs += [bare_tls, bare_tcp]
        overlay_pid = service_pid(ready_a["admin"], "svc-overlay")
        rows = []
        for label in SIZES:
            indexes = [i for i, s in enumerate(sizes) if s == SIZES[label]]
            for inflight in (1, 8):
                for cell, pid in (
                    ("overlay", overlay_pid),
                    ("overlay+pq", overlay_pid),
                    ("bare tls", bare_tls.pid),
                    ("bare tcp", bare_tcp.pid),
                ):
                    c0, s0, t0 = client_cpu(), cpu_seconds(pid), time.perf_counter()
                    if cell.startswith("overlay"):
                        mode = "hybrid" if cell.endswith("+pq") else "off"
                        n, nbytes = trio.run(
                            overlay_cell,
                            ready_a["addr"],
                            node_ids[label],
                            inflight,
                            args.seconds,
                            mode,
                        )
                    else:
                        info = info_tls if cell == "bare tls" else info_tcp
                        n, nbytes = trio.run(
                            bare_cell,
                            info["port"],
                            cell == "bare tls",
                            indexes,
                            info["ids"],
                            inflight,
                            args.seconds,
                        )
                    wall = time.perf_counter() - t0
                    cpu = client_cpu() - c0 + cpu_seconds(pid) - s0
                    mb = nbytes / 1e6
                    rows.append(
                        (label, inflight, cell, n / wall, mb / wall, cpu * 1000 / max(mb, 1e-9))
                    )
        hs_overlay = trio.run(handshakes, ready_a["addr"], None, args.handshakes)
        hs_bare = trio.run(handshakes, None, info_tls["port"], args.handshakes)
        through_b = via_b(ready_b["gateway"], b_ids)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ready in readies:
            subprocess.run(["rm", "-rf", ready["runtime_dir"]], check=False)

    print(
        f"# overlay: fetch by id over TLS vs bare trio transfers, {args.seconds:g} s per cell; "
        "client-side BLAKE3 verification everywhere; CPU = client + server process"
    )
    head = f"{'object':<7} {'in flight':>9}  {'cell':<9} {'obj/s':>8} {'MB/s':>8}"
    print(head + f" {'CPU ms/MB':>10}  vs bare tls")
    bare = {(r[0], r[1]): r for r in rows if r[2] == "bare tls"}
    for label, inflight, cell, ops, mbs, cpu in rows:
        ratio = mbs / bare[(label, inflight)][4] if bare[(label, inflight)][4] else 0.0
        print(
            f"{label:<7} {inflight:>9}  {cell:<9} {ops:8.0f} {mbs:8.1f} {cpu:10.1f}  {ratio:9.2f}x"
        )
    print(
        f"handshake (connect -> TLS -> pin), {args.handshakes} sequential: overlay "
        f"{spread(hs_overlay)}; bare TLS {spread(hs_bare)}"
    )
    print(
        f"GET through B of a 64 KiB object only A holds, {len(through_b)} sequential: "
        + spread(through_b)
    )
    key = ("1MiB", 8)
    ov = next(r for r in rows if (r[0], r[1]) == key and r[2] == "overlay")
    pqr = next(r for r in rows if (r[0], r[1]) == key and r[2] == "overlay+pq")
    print(
        "targets: 1 MiB x 8 overlay >= 0.7x bare TLS "
        f"{'met' if ov[4] >= 0.7 * bare[key][4] else 'MISSED'} ({ov[4] / bare[key][4]:.2f}x); "
        f"via B p95 < 50 ms {'met' if pct(through_b, 0.95) < 50 else 'MISSED'}; "
        f"handshake p95 <= 10 ms {'met' if pct(hs_overlay, 0.95) <= 10 else 'MISSED'}; "
        f"hybrid CPU/MB <= 1.5x off {'met' if pqr[5] <= 1.5 * ov[5] else 'MISSED'} "
        f"({pqr[5] / ov[5]:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
