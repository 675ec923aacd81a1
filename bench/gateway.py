"""Gateway benchmark: our gateway in a real macronode vs a bare hypercorn app, and durable PUTs
vs a plain temp -> fsync -> rename loop, all in one run.

Load: ``wrk`` (Debian package ``wrk``) with 64 connections; a Lua script gives every PUT a unique
body (so each one is a real durable write, not an idempotent hit) and prints p50/p95/p99.

- GET 4 KiB / 64 KiB: the gateway (verify-before-serve from the store on disk) vs a bare
  hypercorn trio app serving the same bytes from memory (the "0.8x" target).
- PUT 4 KiB / 64 KiB: the gateway (answered after svc-storage made the object durable) vs the
  bare app (hash only, nothing stored) for reference, and vs a single-threaded
  temp -> write -> fsync -> rename -> fsync(dir) loop on the same disk (the "1x" target).

    python bench/gateway.py [--seconds 10] [--connections 64] [--threads 1] [--data-dir DIR]

``--profile-gateway`` also records the gateway under py-spy during the 64 KiB GET run (top
functions printed; needs ``py-spy`` on PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

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
  pad = string.rep("x", size)
end
function request()
  if method == "PUT" then
    counter = counter + 1
    local tag = string.format("%d-%d-%d-", tid, counter, os.time())
    local body = tag .. string.sub(pad, #tag + 1)
    return wrk.format("PUT", nil, {["Content-Type"] = "application/octet-stream"}, body)
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


def bare_server(port_file: str) -> None:
    """A bare hypercorn trio app: GET /o/4KiB|64KiB from memory, PUT hashes and answers."""
    import blake3
    import trio

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
    trio.run(serve_on_socket, app, sock, 5.0)


# --- helpers -------------------------------------------------------------------------------------


def wrk(url: str, method: str, size: int, args: argparse.Namespace, script: Path) -> dict:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        method,
        str(size),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("JSON"))
    result = json.loads(line[4:])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def http(method: str, url: str, body: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def fsync_loop(directory: Path, size: int, seconds: float) -> float:
    """Objects/s of one fsync per object: temp, write, fsync, rename, fsync(dir)."""
    directory.mkdir(parents=True, exist_ok=True)
    dfd = os.open(directory, os.O_RDONLY)
    n = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            data = os.urandom(size)
            tmp = directory / f".tmp{n}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, directory / f"obj{n}")
            os.fsync(dfd)
            n += 1
    finally:
        os.close(dfd)
    return n / (time.perf_counter() - start)


def start_node(workdir: Path, data_dir: Path) -> tuple[subprocess.Popen[bytes], dict]:
    runtime_dir = Path(
        tempfile.mkdtemp(prefix="ronb-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    )
    cmd = [
        sys.executable,
        "-m",
        "kernel",
        "run",
        "macronode",
        "--admin-addr",
        "127.0.0.1:0",
        "--gateway-addr",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        "--runtime-dir",
        str(runtime_dir),
    ]
    log = open(workdir / "node.log", "wb")  # noqa: SIM115 - lives as long as the node
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the node did not start; see {workdir / 'node.log'}")
    return proc, json.loads(line)


def gateway_pid(admin: str) -> int:
    version = json.loads(http("GET", admin + "/version"))
    return next(s["pid"] for s in version["services"] if s["name"] == "svc-gateway")


def fmt(r: dict) -> str:
    return (
        f"{r['rps']:9.0f} req/s  p50 {r['p50']:7.2f} ms  p95 {r['p95']:7.2f} ms  "
        f"p99 {r['p99']:7.2f} ms  errors {r['errors']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", help="on-disk dir for the node's store and the fsync loop")
    parser.add_argument("--profile-gateway", action="store_true")
    parser.add_argument("--bare-server", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    if shutil.which("wrk") is None:
        print("bench/gateway.py needs wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="gwbench-"))
    disk = Path(args.data_dir) if args.data_dir else workdir
    script = workdir / "bench.lua"
    script.write_text(LUA)
    results: dict[str, dict] = {}
    node, ready = start_node(workdir, disk / "node-data")
    bare = None
    try:
        port_file = workdir / "bare.port"
        bare = subprocess.Popen(
            [sys.executable, __file__, "--bare-server", str(port_file)],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise SystemExit("the bare server did not start")
            time.sleep(0.05)
        bare_url = f"http://127.0.0.1:{port_file.read_text()}"
        gw = ready["gateway"]
        ids = {}
        for label, size in SIZES.items():
            stored = json.loads(http("PUT", gw + "/o", os.urandom(size)))
            ids[label] = stored["id"]

        profiler = None
        for label, size in SIZES.items():
            results[f"bare GET {label}"] = wrk(f"{bare_url}/o/{label}", "GET", size, args, script)
            if args.profile_gateway and label == "64KiB":
                profiler = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "-p",
                        str(gateway_pid(ready["admin"])),
                        "-o",
                        str(workdir / "gateway.speedscope"),
                        "-f",
                        "raw",
                        "-d",
                        str(args.seconds),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            results[f"gateway GET {label}"] = wrk(f"{gw}/o/{ids[label]}", "GET", size, args, script)
            if profiler is not None:
                profiler.wait()
                profiler = None
        for label, size in SIZES.items():
            results[f"bare PUT {label}"] = wrk(f"{bare_url}/o", "PUT", size, args, script)
            results[f"gateway PUT {label}"] = wrk(f"{gw}/o", "PUT", size, args, script)
            results[f"fsync loop {label}"] = {
                "rps": fsync_loop(disk / f"fsync-{label}", size, args.seconds)
            }
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
        if bare is not None:
            bare.send_signal(signal.SIGTERM)
            bare.wait(timeout=10)

    print(
        f"# {args.connections} connections, {args.threads} wrk thread(s), {args.seconds} s each; "
        f"store on {disk}"
    )
    for key, r in results.items():
        line = f"{r['rps']:9.0f} obj/s" if "fsync" in key else fmt(r)
        print(f"{key:<22} {line}")
    print("# ratios")
    for label in SIZES:
        get = results[f"gateway GET {label}"]["rps"] / results[f"bare GET {label}"]["rps"]
        put = results[f"gateway PUT {label}"]["rps"] / results[f"fsync loop {label}"]["rps"]
        put_bare = results[f"gateway PUT {label}"]["rps"] / results[f"bare PUT {label}"]["rps"]
        print(f"GET {label}: gateway/bare {get:.2f} (target >= 0.8)")
        print(
            f"PUT {label}: gateway durable/fsync loop {put:.2f} (target >= 1.0); "
            f"gateway/bare app {put_bare:.2f}"
        )
    p95 = results["gateway GET 64KiB"]["p95"]
    print(f"GET 64KiB p95 through the gateway: {p95:.1f} ms (target < 50 ms)")
    raw = workdir / "gateway.speedscope"
    if raw.exists():
        print(f"# py-spy samples of the gateway (GET 64KiB) in {raw}")
    for leftover in ("node-data", "fsync-4KiB", "fsync-64KiB"):
        shutil.rmtree(disk / leftover, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
