"""Large objects (``specs/objects.md``): local GETs vs nginx, GETs through a peer vs bare trio TLS,
multi-source fetches, a resumed fetch, and the services' memory through all of it; one run.

Cells:

- ``local``: ``GET /o/{id}`` of 4 KiB / 1 MiB / 64 MiB / 1 GiB objects from a macronode's gateway
  vs **nginx** (Debian's, ``sendfile on``) serving the same bytes as files from the same
  filesystem (the node's data dir and nginx's root are both under the bench's work dir); the
  same Python client reads both: time to first byte (p50) and MB/s (median).
- ``peer``: a cold ``GET`` on node B of a 64 MiB and a 1 GiB object only A holds (B fetches the
  manifest, then the chunks, and streams as they are verified) vs a bare trio TLS server sending
  the same number of bytes (``bench/overlay.py``'s, 64 KiB frames, client-side BLAKE3).
- ``multi``: a 256 MiB object held by 1, 2 and 3 providers, each sending at most ``--rate`` MB/s
  to one peer (the overlay's ``rate_peer``), fetched cold by a fresh node through its gateway.
- ``resume``: a 1 GiB fetch through a fresh node cut at half by ``kill -9`` of its svc-overlay,
  then fetched again: the bytes the node received the second time vs the half it lacked.
- memory: the highest RSS of every ``ron:svc-*`` process of every node, sampled through the run.

    apt-get install -y nginx      # the baseline
    python bench/objects.py [--quick] [--rate 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import blake3  # noqa: E402
import trio  # noqa: E402

from bench.gateway import mint_token, service_pid  # noqa: E402
from bench.overlay import start_bare  # noqa: E402
from ipc.transport import client_context  # noqa: E402

MiB = 1 << 20
LOCAL = {"4KiB": (4096, 200), "1MiB": (MiB, 40), "64MiB": (64 * MiB, 5), "1GiB": (1024 * MiB, 2)}
READ = 1 << 20


# --- nodes and nginx ---------------------------------------------------------------------------


def node_config(workdir: Path, name: str, peers: list[str], rate: float) -> Path:
    """The macronode profile with ``overlay.peers`` and svc-overlay's ``rate_peer``."""
    text = (REPO / "profiles" / "macronode.toml").read_text()
    text = re.sub(r"(?m)^fetch_timeout = \S+", f"fetch_timeout = 30.0\nrate_peer = {rate}", text)
    text += f"\n[overlay]\npeers = {json.dumps(peers)}\n"  # the profile has no [overlay] table
    path = workdir / f"{name}.toml"
    path.write_text(text)
    return path


class Nodes:
    """Nodes of this run; each is stopped (SIGTERM) and its dirs removed at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []

    def start(self, name: str, peers: list[str] = (), rate: float = 0.0) -> dict:  # type: ignore[assignment]
        runtime = Path(tempfile.mkdtemp(prefix=f"rob-{name}-", dir="/dev/shm"))
        data = self.workdir / f"data-{name}"
        self.dirs += [runtime, data]
        cfg = node_config(self.workdir, name, list(peers), rate)
        cmd = [sys.executable, "-m", "kernel", "run", str(cfg), "--data-dir", str(data)]
        for flag in ("--admin-addr", "--gateway-addr", "--overlay-addr"):
            cmd += [flag, "127.0.0.1:0"]
        cmd += ["--runtime-dir", str(runtime)]
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the node
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"node {name} did not start; see {self.workdir / f'{name}.log'}")
        ready = json.loads(line)
        version = json.loads(urllib.request.urlopen(ready["admin"] + "/version").read())
        ready["runtime_dir"] = str(runtime)
        ready["addr"] = f"{version['node_id']}@{ready['overlay'].removeprefix('tcp://')}"
        ready["token"] = mint_token(str(runtime))
        return ready

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def start_nginx(workdir: Path, root: Path) -> tuple[subprocess.Popen[bytes], int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed: apt-get install -y nginx")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"daemon off; worker_processes 1; pid {workdir}/nginx.pid; error_log {workdir}/nginx.err;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {workdir};\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n"
    )
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nginx did not start")


# --- clients -----------------------------------------------------------------------------------


def hostport(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def put(node: dict, data: bytes) -> str:
    conn = http.client.HTTPConnection(*hostport(node["gateway"]), timeout=600)
    pieces = (data[i : i + READ] for i in range(0, len(data), READ))
    conn.request(
        "PUT", "/o", pieces, {"authorization": f"Bearer {node['token']}"}, encode_chunked=True
    )
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status not in (200, 201):
        raise SystemExit(f"PUT failed: {resp.status} {body[:200]!r}")
    return str(json.loads(body)["id"])


def timed_get(
    host: str, port: int, path: str, stop_after: int | None = None
) -> tuple[float, float, int]:
    """(time to first body byte, total seconds, bytes) of one GET on a fresh connection."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("GET", path)
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"GET {path}: {resp.status} {resp.read()[:200]!r}")
    buf = bytearray(READ)
    first = resp.readinto(memoryview(buf)[:1])
    ttfb = time.perf_counter() - began
    got = first
    while (n := resp.readinto(buf)) > 0:
        got += n
        if stop_after is not None and got >= stop_after:
            break
    total = time.perf_counter() - began
    conn.close()
    return ttfb, total, got


async def bare_once(port: int, index: int, size: int) -> tuple[float, float]:
    """(TTFB, seconds) of one object from the bare TLS server, hashed as it arrives."""
    began = time.perf_counter()
    stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), client_context(None))
    await stream.do_handshake()
    await stream.send_all(index.to_bytes(4, "big"))
    hasher, got, ttfb = blake3.blake3(), 0, 0.0
    buf = bytearray()
    while got < size:
        data = await stream.receive_some(1 << 18)
        if not data:
            raise SystemExit("bare server hung up")
        if not ttfb:
            ttfb = time.perf_counter() - began
        buf += data
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
            n = int.from_bytes(buf[:4], "big")
            hasher.update(buf[4 : 4 + n])
            got += n
            del buf[: 4 + n]
    await stream.aclose()
    return ttfb, time.perf_counter() - began


# --- memory ------------------------------------------------------------------------------------


class RssWatch:
    """Highest RSS (MiB) seen per ``ron:svc-*`` process name, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    name = Path(f"/proc/{pid}/comm").read_text().strip()  # kernel.procname
                    if not name.startswith("ron:svc-"):
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                except (OSError, UnicodeDecodeError):
                    continue
                kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
                self.peak[name] = max(self.peak.get(name, 0.0), kib / 1024)


# --- the run -----------------------------------------------------------------------------------


def mbs(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds if seconds else 0.0


PARTS = ("local", "peer", "multi", "resume")


def local_part(a: dict, workdir: Path, sizes: dict, procs: list, out: list[str]) -> dict:
    """The node's gateway vs nginx, the same bytes on the same filesystem."""
    root = workdir / "www"
    root.mkdir()
    ids: dict[str, str] = {}
    for label, (size, _) in sizes.items():
        data = os.urandom(size)
        ids[label] = put(a, data)
        (root / label).write_bytes(data)
    nginx, nginx_port = start_nginx(workdir, root)
    procs.append(nginx)
    host, port = hostport(a["gateway"])
    out.append("# local GET (one connection per GET): ours vs nginx (sendfile)")
    out.append(
        f"{'object':<7} {'ours TTFB ms':>13} {'nginx TTFB ms':>14} "
        f"{'ours MB/s':>10} {'nginx MB/s':>11} {'ratio':>6}"
    )
    local: dict[str, tuple[float, float, float, float]] = {}
    for label, (_size, reps) in sizes.items():
        ours = [timed_get(host, port, f"/o/{ids[label]}") for _ in range(reps)]
        theirs = [timed_get("127.0.0.1", nginx_port, f"/{label}") for _ in range(reps)]
        row = (
            statistics.median(t[0] for t in ours) * 1000,
            statistics.median(t[0] for t in theirs) * 1000,
            statistics.median(mbs(t[2], t[1]) for t in ours),
            statistics.median(mbs(t[2], t[1]) for t in theirs),
        )
        local[label] = row
        out.append(
            f"{label:<7} {row[0]:13.2f} {row[1]:14.2f} {row[2]:10.0f} "
            f"{row[3]:11.0f} {row[2] / row[3]:5.2f}x"
        )
    return local


def peer_part(a: dict, nodes: Nodes, workdir: Path, peer_sizes: dict, procs: list, out: list[str]):
    """A cold GET through B vs bare trio TLS of the same bytes."""
    peer_ids = {k: put(a, os.urandom(v)) for k, v in peer_sizes.items()}
    bare, info = start_bare(workdir, True, list(peer_sizes.values()))
    procs.append(bare)
    out.append("")
    out.append("# through a peer (B fetches from A, cold) vs bare trio TLS of the same bytes")
    out.append(f"{'object':<7} {'B TTFB ms':>10} {'B MB/s':>8} {'bare MB/s':>10} {'ratio':>6}")
    rows = {}
    for i, (label, size) in enumerate(peer_sizes.items()):
        b = nodes.start(f"b{i}", [a["addr"]])
        ttfb, secs, got = timed_get(*hostport(b["gateway"]), f"/o/{peer_ids[label]}")
        assert got == size
        _bare_ttfb, bare_secs = trio.run(bare_once, info["port"], i, size)
        rows[label] = r = (ttfb * 1000, mbs(size, secs), mbs(size, bare_secs))
        out.append(f"{label:<7} {r[0]:10.1f} {r[1]:8.0f} {r[2]:10.0f} {r[1] / r[2]:5.2f}x")
    return rows


def multi_part(nodes: Nodes, size: int, rate: float, out: list[str]) -> list[float]:
    """The same object on 1, 2, 3 providers paced at ``rate`` MB/s per peer; a fresh fetcher."""
    multi = os.urandom(size)
    providers = [nodes.start(f"p{i}", rate=rate * 1e6) for i in range(3)]
    multi_id = ""
    for p in providers:
        multi_id = put(p, multi)
    out.append("")
    out.append(
        f"# multi-source: {size // MiB} MiB, each provider sends <= {rate:g} MB/s to one peer"
    )
    times = []
    for n in (1, 2, 3):
        f = nodes.start(f"f{n}", [p["addr"] for p in providers[:n]])
        _ttfb, secs, got = timed_get(*hostport(f["gateway"]), f"/o/{multi_id}")
        assert got == size
        times.append(secs)
        out.append(
            f"{n} provider(s): {secs:6.2f} s  {mbs(size, secs):6.1f} MB/s  "
            f"{times[0] / secs:4.2f}x one"
        )
    return times


def resume_part(a: dict, nodes: Nodes, size: int, out: list[str]) -> tuple[int, int]:
    """A fetch through a fresh node cut at half by kill -9 of its svc-overlay, then again:
    (bytes received the second time, bytes that were missing)."""
    obj_id = put(a, os.urandom(size))
    r = nodes.start("r", [a["addr"]])
    rhost, rport = hostport(r["gateway"])
    overlay = service_pid(r["admin"], "svc-overlay")
    _t, _s, first = timed_get(rhost, rport, f"/o/{obj_id}", size // 2)
    os.kill(overlay, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while service_pid(r["admin"], "svc-overlay") == overlay and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # until it is ready again (its fetch jobs died with it)
    before = scrape(r["admin"], "bytes_in_total")
    _t, _s, got = timed_get(rhost, rport, f"/o/{obj_id}")
    assert got == size
    again = scrape(r["admin"], "bytes_in_total") - before
    missing = size - first
    out.append("")
    out.append(
        f"# resume: {size // MiB} MiB cut after {first / MiB:.0f} MiB by kill -9 of svc-overlay"
    )
    out.append(
        f"second fetch received {again / MiB:.1f} MiB for {missing / MiB:.1f} MiB missing "
        f"({(again - missing) / MiB:+.1f} MiB; target <= +2 chunks)"
    )
    return again, missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="no 1 GiB cells (a smoke run)")
    parser.add_argument("--rate", type=float, default=20.0, help="multi-source: MB/s per peer")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts, of {','.join(PARTS)}")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    sizes = {k: v for k, v in LOCAL.items() if not (args.quick and k == "1GiB")}
    big = 256 * MiB if args.quick else 1024 * MiB
    workdir = Path(tempfile.mkdtemp(prefix="objbench-", dir="/var/tmp"))
    nodes = Nodes(workdir)
    procs: list[subprocess.Popen[bytes]] = []
    out: list[str] = []
    targets: list[str] = []

    def target(what: str, ok: bool, shown: str) -> None:
        targets.append(f"{what} {'met' if ok else 'MISSED'} ({shown})")

    try:
        with RssWatch() as rss:
            a = nodes.start("a")
            if "local" in parts:
                local = local_part(a, workdir, sizes, procs, out)
                top = local.get("1GiB", local["64MiB"])
                target("largest local first byte <= 50 ms", top[0] <= 50, f"{top[0]:.1f} ms")
                r64 = local["64MiB"][2] / local["64MiB"][3]
                target("64 MiB >= 0.3x nginx", r64 >= 0.3, f"{r64:.2f}x; 0.5x is the next bar")
            if "peer" in parts:
                big_label = "1GiB" if big == 1024 * MiB else f"{big // MiB}MiB"
                rows = peer_part(a, nodes, workdir, {"64MiB": 64 * MiB, big_label: big}, procs, out)
                worst = max(r[0] for r in rows.values())
                target("through a peer first byte <= 0.2 s", worst <= 200, f"{worst:.0f} ms")
                ratio = min(r[1] / r[2] for r in rows.values())
                target("through a peer >= 0.7x bare TLS", ratio >= 0.7, f"{ratio:.2f}x")
            if "multi" in parts:
                times = multi_part(nodes, 256 * MiB if not args.quick else 64 * MiB, args.rate, out)
                target(
                    "3 providers >= 2.5x one",
                    times[0] / times[2] >= 2.5,
                    f"{times[0] / times[2]:.2f}x",
                )
            if "resume" in parts:
                again, missing = resume_part(a, nodes, big, out)
                target(
                    "resume <= missing + 2 chunks",
                    again <= missing + 2 * MiB,
                    f"{(again - missing) / MiB:+.1f} MiB",
                )
        out.append("")
        out.append("# peak RSS per service process (MiB), every node of the run")
        out.append("  ".join(f"{k}={v:.0f}" for k, v in sorted(rss.peak.items())))
        peak = max(rss.peak.values()) * MiB / 1e6
        target("every service < 100 MB RSS", peak < 100, f"{peak:.0f} MB")
    finally:
        for proc in procs:
            proc.terminate()
        nodes.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(out))
    print("\ntargets: " + "; ".join(targets))
    return 0


def scrape(admin: str, name: str) -> float:
    text = urllib.request.urlopen(admin + "/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


if __name__ == "__main__":
    sys.exit(main())
