"""Gateway benchmark: our gateway in a real macronode vs a bare hypercorn app, and durable PUTs
vs a plain temp -> fsync -> rename loop, all in one run.

Load: ``wrk`` (Debian package ``wrk``) with 64 connections; a Lua script gives every PUT a unique
body (so each one is a real durable write, not an idempotent hit) and prints p50/p95/p99.

- GET 4 KiB / 64 KiB: the gateway (verify-before-serve from the store on disk) vs a bare
  ASGI app serving the same bytes from memory on hypercorn's trio worker ("bare", the 0.8x
  target) and on our h11 loop ("bare(h11)": server vs server).
- PUT 4 KiB / 64 KiB: the gateway (answered after svc-storage made the object durable; every
  PUT carries a capability token the gateway verifies) vs the bare apps (hash only, nothing
  stored), vs a single-threaded temp -> write -> fsync -> rename -> fsync(dir) loop on the
  same disk (the "1x" target), and vs a second node with ``auth.writes = "open"``
  ("gateway(open)": the cost of the token check, target >= 0.9x).

Every cell runs in ``--rounds`` slices interleaved with the others (a busy machine or disk slows
both sides of a ratio alike); rates are totals, percentiles the median slice. Each line also
shows the server process's CPU per request (and svc-storage's for gateway PUTs): unlike req/s it
barely moves with other load on the machine.

    python bench/gateway.py [--seconds 10] [--rounds 2] [--connections 64] [--threads 1]
                            [--data-dir DIR] [--server h11|hypercorn] [--only get|put]

``--server`` picks svc-gateway's HTTP server; ``--profile-gateway`` records the gateway (and
svc-storage for PUTs) under py-spy during the first slice of each gateway cell and prints the
top functions (py-spy from PyPI, found on PATH or next to the interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._fsync_baseline import write_durably  # noqa: E402

SIZES = {"4KiB": 4096, "64KiB": 65536}

LUA = r"""
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  method = args[1] or "GET"
  size = tonumber(args[2] or "0")
  token = args[3] or ""
  pad = string.rep("x", size)
end
function request()
  if method == "PUT" then
    counter = counter + 1
    local tag = string.format("%d-%d-%d-", tid, counter, os.time())
    local body = tag .. string.sub(pad, #tag + 1)
    local headers = {["Content-Type"] = "application/octet-stream"}
    if token ~= "" then
      headers["Authorization"] = "Bearer " .. token
    end
    return wrk.format("PUT", nil, headers, body)
  end
  return wrk.format("GET")
end
function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "JSON{\"requests\":%d,\"seconds\":%f,\"p50\":%f,\"p95\":%f,\"p99\":%f,\"errors\":%d}\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, errors))
end
"""


# --- the bare baseline app (run in its own process) ----------------------------------------------


def bare_server(port_file: str, kind: str) -> None:
    """A bare ASGI app: GET /o/4KiB|64KiB from memory, PUT hashes and answers; served by
    hypercorn's trio worker (``kind = "hypercorn"``, the baseline of the targets) or by our h11
    loop (``"h11"``: server vs server)."""
    import blake3
    import trio

    from kernel.http.server import ServerLimits, serve_h11
    from services.gateway.server import serve_on_socket

    bodies = {f"/o/{k}": os.urandom(v) for k, v in SIZES.items()}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "PUT":
            hasher = blake3.blake3()
            more = True
            while more:
                message = await receive()
                hasher.update(message.get("body", b""))
                more = message.get("more_body", False)
            body = json.dumps({"id": "b3:" + hasher.hexdigest()}).encode()
            ctype = b"application/json"
        else:
            body = bodies.get(scope["path"], b"")
            ctype = b"application/octet-stream"
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    if kind == "h11":
        trio.run(serve_h11, app, sock, ServerLimits(timeout=5.0))
    else:
        trio.run(serve_on_socket, app, sock, 5.0)


# --- helpers -------------------------------------------------------------------------------------


def wrk(
    url: str,
    method: str,
    size: int,
    seconds: int,
    args: argparse.Namespace,
    script: Path,
    token: str = "",
) -> dict:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        method,
        str(size),
        token,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("JSON"))
    return dict(json.loads(line[4:]))


def combine(parts: list[dict]) -> dict:
    """One cell from its slices: totals for rates and CPU, the median slice for percentiles."""
    requests = sum(p["requests"] for p in parts)
    out: dict = {"requests": requests, "rps": requests / sum(p["seconds"] for p in parts)}
    for key in ("p50", "p95", "p99"):
        if key in parts[0]:
            out[key] = statistics.median(p[key] for p in parts)
    if "errors" in parts[0]:
        out["errors"] = sum(p["errors"] for p in parts)
    for key in parts[0]:
        if key.endswith("_cpu"):  # server CPU per request: robust to other load on the machine
            out[key[:-4] + "_cpu_us"] = sum(p[key] for p in parts) / max(requests, 1) * 1e6
    return out


def http(method: str, url: str, body: bytes | None = None, token: str = "") -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def mint_token(runtime_dir: str, ops: tuple[str, ...] = ("put",)) -> str:
    """A write token for the benchmark, from the node's control socket (we are its user)."""
    from kernel.cli.client import ControlClient

    resp = ControlClient(Path(runtime_dir) / "ctl.sock").post(
        "/token/mint", {"ops": list(ops), "ttl": 7200}
    )
    if resp.status != 200:
        raise SystemExit(f"could not mint a token: {resp.error_text()}")
    return str(resp.json()["token"])


def fsync_loop(directory: Path, size: int, seconds: float) -> tuple[int, float]:
    """(objects, seconds) of one fsync per object: temp, write, fsync, rename, fsync(dir)."""
    directory.mkdir(parents=True, exist_ok=True)
    n = len(os.listdir(directory))  # names stay unique across slices
    first = n
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        write_durably(directory / f".tmp{n}", directory / f"obj{n}", os.urandom(size))
        n += 1
    return n - first, time.perf_counter() - start


def node_profile(workdir: Path, server: str, settings: Sequence[str] = ()) -> Path:
    """The shipped macronode profile with svc-gateway's ``server`` setting made explicit, and
    ``settings`` (TOML ``key = value`` lines) overriding the profile's gateway settings."""
    text = (REPO / "profiles" / "macronode.toml").read_text()
    head, sep, tail = text.partition('name = "svc-gateway"')
    section, rest_sep, rest = tail.partition("\n[[services]]")
    for line in settings:  # a key set here replaces the profile's line (TOML forbids twice)
        key = line.split("=", 1)[0].strip()
        section = re.sub(rf"(?m)^{re.escape(key)}\s*=.*$", "", section)
    extra = "".join(f"{line}\n" for line in (f'server = "{server}"', *settings))
    tail = section.replace("[services.settings]\n", f"[services.settings]\n{extra}", 1)
    tail += rest_sep + rest
    path = workdir / "macronode-bench.toml"
    path.write_text(head + sep + tail)
    return path


def start_node(
    workdir: Path,
    data_dir: Path,
    server: str,
    env_extra: dict[str, str] | None = None,
    settings: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], dict]:
    runtime_dir = Path(
        tempfile.mkdtemp(prefix="ronb-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    )
    cmd = [
        sys.executable,
        "-m",
        "kernel",
        "run",
        str(node_profile(workdir, server, settings)),
        "--admin-addr",
        "127.0.0.1:0",
        "--gateway-addr",
        "127.0.0.1:0",
        "--overlay-addr",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        "--runtime-dir",
        str(runtime_dir),
    ]
    log = open(workdir / f"node-{data_dir.name}.log", "wb")  # noqa: SIM115 - lives with the node
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        shutil.rmtree(runtime_dir, ignore_errors=True)
        raise SystemExit(f"the node did not start; see {workdir / f'node-{data_dir.name}.log'}")
    # the caller removes runtime_dir once the node has stopped
    return proc, {**json.loads(line), "runtime_dir": str(runtime_dir)}


def start_bare(workdir: Path, kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = workdir / f"bare-{kind}.port"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--bare-server", str(port_file), "--bare-kind", kind],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"the bare {kind} server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (if installed) recording ``pid`` for ``seconds``, native frames off."""
    exe = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if exe is None:
        print("# --profile-gateway: py-spy not found, not profiling", file=sys.stderr)
        return None
    cmd = [exe, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-d", str(seconds)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def top_functions(raw: Path, n: int = 25) -> list[str]:
    """The functions with the most samples in py-spy's raw (collapsed stacks) output: self time
    and total (inclusive) time, as a share of all samples."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    rows = sorted(own.items(), key=lambda kv: -kv[1])[:n]
    return [
        f"{100 * c / samples:5.1f}% self {100 * total[f] / samples:5.1f}% total  {f}"
        for f, c in rows
    ]


def capacity_settings(user: Sequence[str]) -> list[str]:
    """``max_writes = 64`` unless the user set it (a user's line wins)."""
    if any(line.split("=", 1)[0].strip() == "max_writes" for line in user):
        return list(user)
    return ["max_writes = 64", *user]


def overload_cell(
    workdir: Path,
    disk: Path,
    args: argparse.Namespace,
    load_sizes: tuple[int, int],
    run_overload: Any,
    profiles: list[tuple[str, Path]],
) -> dict[str, float]:
    """The c = 512 cell on a node of its own, with the shipped gateway settings."""
    node, ready = start_node(
        workdir, disk / "node-overload", args.server, settings=args.gateway_setting
    )
    try:
        token = mint_token(ready["runtime_dir"])
        gw = ready["gateway"]
        rng = random.Random(7)
        load_ids = [
            json.loads(http("PUT", gw + "/o", os.urandom(rng.randint(*load_sizes)), token))["id"]
            for _ in range(16)
        ]
        spy = None
        raw = workdir / "overload-gateway.pyspy"
        if args.profile_gateway:
            spy = profile(
                service_pid(ready["admin"], "svc-gateway"), max(1, int(args.overload_seconds)), raw
            )
        result: dict[str, float] = run_overload(
            gw,
            token,
            load_ids,
            connections=args.overload_connections,
            seconds=args.overload_seconds,
        )
        if spy is not None:
            spy.wait()
            if raw.exists():
                profiles.append(("overload (gateway)", raw))
        return result
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
        shutil.rmtree(ready["runtime_dir"], ignore_errors=True)
        shutil.rmtree(disk / "node-overload", ignore_errors=True)


def service_pid(admin: str, name: str) -> int:
    version = json.loads(http("GET", admin + "/version"))
    return next(s["pid"] for s in version["services"] if s["name"] == name)


def fmt(r: dict) -> str:
    return (
        f"{r['rps']:9.0f} req/s  p50 {r['p50']:7.2f} ms  p95 {r['p95']:7.2f} ms  "
        f"p99 {r['p99']:7.2f} ms  {r['server_cpu_us']:5.0f} µs CPU/req  errors {r['errors']}"
        + (
            f"  (+ svc-storage {r['storage_cpu_us']:.0f} µs CPU/req)"
            if "storage_cpu_us" in r
            else ""
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="per cell, over all rounds")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved slices per cell")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", help="on-disk dir for the node's store and the fsync loop")
    parser.add_argument(
        "--server",
        choices=("h11", "hypercorn"),
        default="h11",
        help="svc-gateway's HTTP server (its `server` setting)",
    )
    parser.add_argument(
        "--only", choices=("get", "put", "overload"), help="run only GETs, PUTs or the c=512 cell"
    )
    parser.add_argument("--overload-seconds", type=float, default=20.0, help="(20)")
    parser.add_argument("--overload-connections", type=int, default=512, help="(512)")
    parser.add_argument(
        "--gateway-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a svc-gateway setting in both nodes (a TOML value), e.g. max_writes=64",
    )
    parser.add_argument("--profile-gateway", action="store_true")
    parser.add_argument("--bare-server", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--bare-kind", default="hypercorn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server, args.bare_kind)
        return 0
    if shutil.which("wrk") is None:
        print("bench/gateway.py needs wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="gwbench-"))
    disk = Path(args.data_dir) if args.data_dir else workdir
    script = workdir / "bench.lua"
    script.write_text(LUA)
    results: dict[str, dict] = {}
    overload: dict[str, float] | None = None
    # The throughput cells measure capacity at c = 64, not admission: their nodes serve as many
    # PUTs at once as requests (the shipped max_writes sheds writes first, which the overload
    # cell measures on a node of its own with the shipped settings).
    capacity = capacity_settings(args.gateway_setting)
    node, ready = start_node(workdir, disk / "node-data", args.server, settings=capacity)
    try:
        # The same node with auth.writes = "open": the cost of verifying a token on every PUT.
        open_node, open_ready = start_node(
            workdir,
            disk / "node-open-data",
            args.server,
            {"RONK_AUTH_WRITES": "open"},
            settings=capacity,
        )
        token = mint_token(ready["runtime_dir"])
    except BaseException:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
        shutil.rmtree(ready["runtime_dir"], ignore_errors=True)
        raise
    bares: dict[str, subprocess.Popen[bytes]] = {}
    profiles: list[tuple[str, Path]] = []
    try:
        urls = {}
        for kind in ("hypercorn", "h11"):
            bares["bare" if kind == "hypercorn" else "bare(h11)"], urls[kind] = start_bare(
                workdir, kind
            )
        gw = ready["gateway"]
        gw_pid = service_pid(ready["admin"], "svc-gateway")
        st_pid = service_pid(ready["admin"], "svc-storage")
        ids = {}
        for label, size in SIZES.items():
            stored = json.loads(http("PUT", gw + "/o", os.urandom(size), token))
            ids[label] = stored["id"]

        if args.only in (None, "overload"):
            from bench._overload import SIZES as LOAD_SIZES
            from bench._overload import run_overload

            overload = overload_cell(workdir, disk, args, LOAD_SIZES, run_overload, profiles)
        slice_s = max(1, round(args.seconds / args.rounds))
        runs: dict[str, list[dict]] = {}

        open_gw = open_ready["gateway"]
        open_pid = service_pid(open_ready["admin"], "svc-gateway")

        def measure(key: str, url: str, method: str, size: int, label: str, auth: str = "") -> None:
            """One slice of ``key``; CPU per request of the server process(es) alongside."""
            profilers = []
            if key.startswith("gateway(open)"):
                watched = {"": open_pid}
            elif key.startswith("gateway"):
                watched = {"": gw_pid}
            else:
                watched = {"": bares[key.split()[0]].pid}
            if key == f"gateway PUT {label}":
                watched["storage"] = st_pid  # the commit path runs there
            if args.profile_gateway and key.startswith("gateway") and key not in runs:
                for name, pid in watched.items():
                    raw = workdir / f"{key.replace(' ', '-')}{'-' + name if name else ''}.pyspy"
                    proc = profile(pid, slice_s, raw)
                    if proc is not None:
                        profilers.append((f"{key}{' (' + name + ')' if name else ''}", raw, proc))
            cpu = {name: cpu_seconds(pid) for name, pid in watched.items()}
            result = wrk(url, method, size, slice_s, args, script, auth)
            for name, pid in watched.items():
                result[f"{name or 'server'}_cpu"] = cpu_seconds(pid) - cpu[name]
            runs.setdefault(key, []).append(result)
            for title, raw, proc in profilers:
                proc.wait()
                if raw.exists():
                    profiles.append((title, raw))

        def fsync_slice(label: str, size: int) -> None:
            n, elapsed = fsync_loop(disk / f"fsync-{label}", size, slice_s)
            runs.setdefault(f"fsync loop {label}", []).append({"requests": n, "seconds": elapsed})

        # Interleaved slices: every cell alternates with the others in each round, so a busy
        # disk or CPU (other work on the machine) slows both sides of a ratio alike.
        for _round in range(args.rounds if args.only != "overload" else 0):
            for label, size in SIZES.items():
                if args.only == "put":
                    break
                measure(f"bare GET {label}", f"{urls['hypercorn']}/o/{label}", "GET", size, label)
                measure(f"bare(h11) GET {label}", f"{urls['h11']}/o/{label}", "GET", size, label)
                measure(f"gateway GET {label}", f"{gw}/o/{ids[label]}", "GET", size, label)
            for label, size in SIZES.items():
                if args.only == "get":
                    break
                measure(f"bare PUT {label}", f"{urls['hypercorn']}/o", "PUT", size, label)
                measure(f"bare(h11) PUT {label}", f"{urls['h11']}/o", "PUT", size, label)
                measure(f"gateway PUT {label}", f"{gw}/o", "PUT", size, label, token)
                measure(f"gateway(open) PUT {label}", f"{open_gw}/o", "PUT", size, label)
                fsync_slice(label, size)
        results.update({key: combine(parts) for key, parts in runs.items()})
    finally:
        for each in (node, open_node):
            each.send_signal(signal.SIGTERM)
            each.wait(timeout=30)
        for proc in bares.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        # a macronode keeps its runtime dir for the next start; this one was ours alone
        shutil.rmtree(ready["runtime_dir"], ignore_errors=True)
        shutil.rmtree(open_ready["runtime_dir"], ignore_errors=True)

    print(
        f"# {args.connections} connections, {args.threads} wrk thread(s), {args.seconds} s per "
        f"cell in {args.rounds} interleaved slices (percentiles: median slice); "
        f"gateway server {args.server}; store on {disk}"
    )
    print("# bare = a bare ASGI app on hypercorn's trio worker; bare(h11) = it on our h11 loop")
    for key, r in results.items():
        line = f"{r['rps']:9.0f} obj/s" if "fsync" in key else fmt(r)
        print(f"{key:<22} {line}")
    print("# ratios")
    for label in SIZES:
        if f"gateway GET {label}" in results:
            get = results[f"gateway GET {label}"]["rps"]
            bare = results[f"bare GET {label}"]["rps"]
            bare_h11 = results[f"bare(h11) GET {label}"]["rps"]
            print(
                f"GET {label}: gateway/bare {get / bare:.2f} (target >= 0.8); "
                f"gateway/bare(h11) {get / bare_h11:.2f}; bare(h11)/bare {bare_h11 / bare:.2f}"
            )
    for label in SIZES:
        if f"gateway PUT {label}" in results:
            put = results[f"gateway PUT {label}"]["rps"]
            print(
                f"PUT {label}: gateway durable/fsync loop "
                f"{put / results[f'fsync loop {label}']['rps']:.2f} (target >= 1.0); "
                f"gateway/bare {put / results[f'bare PUT {label}']['rps']:.2f}; "
                f"gateway/bare(h11) {put / results[f'bare(h11) PUT {label}']['rps']:.2f}"
            )
            open_put = results[f"gateway(open) PUT {label}"]["rps"]
            print(
                f"PUT {label}: authenticated (token verified per request)/open "
                f"{put / open_put:.2f} (target >= 0.9)"
            )
    if "gateway GET 64KiB" in results:
        p95 = results["gateway GET 64KiB"]["p95"]
        print(f"GET 64KiB p95 through the gateway: {p95:.1f} ms (target < 50 ms)")
    if overload is not None:
        o = overload
        timeout_ms = 5000.0 + 1000.0  # svc-gateway's timeout (profile default) + 1 s
        print(
            f"# overload: {args.overload_connections} keep-alive connections, mixed PUT/GET "
            f"4 KiB-1 MiB (every PUT unique), {args.overload_seconds:g} s, timed by the client"
        )
        print(
            f"admitted   {o['rps_admitted']:7.0f} req/s  p50 {o['admitted_p50_ms']:7.1f} ms  "
            f"p99 {o['admitted_p99_ms']:7.1f} ms  slowest answer {o['max_answer_ms']:7.1f} ms"
        )
        print(
            f"shed (429) {o['shed_share'] * 100:6.1f} % of {o['requests']:.0f}  "
            f"p99 {o['shed_p99_ms']:6.1f} ms;  503: {o['unavailable']:.0f};  "
            f"other statuses: {o['other_status']:.0f};  no answer in 10 s: {o['no_answer']:.0f}"
        )

        def verdict(ok: bool) -> str:
            return "met" if ok else "MISSED"

        print("  " + "; ".join(f"{k} {v:.0f}" for k, v in o.items() if k.startswith("p99 ")))
        slow_ok = o["max_answer_ms"] <= timeout_ms
        print(
            f"targets: slowest answer <= {timeout_ms:.0f} ms {verdict(slow_ok)}; "
            f"admitted p99 <= 2000 ms {verdict(o['admitted_p99_ms'] <= 2000)}; "
            f"429 p99 <= 50 ms {verdict(o['shed_p99_ms'] <= 50)}; "
            f"0 errors besides 429/503 {verdict(o['other_status'] + o['no_answer'] == 0)}"
        )
    for key, raw in profiles:
        print(f"# py-spy: {key} (self / total share of samples; {raw})")
        for row in top_functions(raw):
            print("  " + row)
    for leftover in ("node-data", "node-open-data", "fsync-4KiB", "fsync-64KiB"):
        shutil.rmtree(disk / leftover, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
