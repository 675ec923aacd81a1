"""Start a real node (``python -m kernel.cli run ...``) for integration tests, and talk to it.

Everything is real: the node's processes, its ipc:// sockets in a private runtime dir on tmpfs, its
admin plane on 127.0.0.1. Every wait is bounded by a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from kernel.cli.chaos.target import read_ready_line
from kernel.cli.client import ControlClient
from services.gateway.errors import REASONS

REPO = Path(__file__).resolve().parents[2]

# Fast supervisor timings so the drills finish in seconds (still the real code paths).
FAST_CONFIG = """
[overlay]
addr = "127.0.0.1:0"  # never the fixed default port: tests run in parallel

[supervisor]
stable_after = 30.0
min_backoff = 0.05
max_backoff = 0.4
heartbeat_interval = 0.1
heartbeat_timeout = 1.0
shutdown_deadline = 3.0
"""


def short_runtime_dir() -> Path:
    """A fresh private dir on tmpfs with a short path (ipc:// paths are limited to ~107 bytes)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return Path(tempfile.mkdtemp(prefix="ront-", dir=base))


def ronctl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kernel.cli", *args]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def children_of(parent: int) -> list[int]:
    """The pids of ``parent``'s child processes (any of its threads may have forked them)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{parent}/task"):
        try:
            found += map(int, Path(f"/proc/{parent}/task/{task}/children").read_text().split())
        except OSError:
            continue
    return found


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


async def poll_until(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any], timeout: float, what: str
) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    try:
        with trio.fail_after(timeout):
            while True:
                result = check()
                if isinstance(result, Awaitable):
                    result = await result
                if result:
                    return result
                await trio.sleep(0.02)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


class WatchedDirs:
    """Empty HOME, TMPDIR, XDG data/cache dirs and cwd for a node: anything it writes outside its
    runtime dir lands in one of them (the amnesia tests assert they stay empty)."""

    NAMES = ("home", "tmp", "xdg_data", "xdg_cache", "cwd")

    def __init__(self, tmp_path: Path) -> None:
        self.dirs = {name: tmp_path / name for name in self.NAMES}
        for path in self.dirs.values():
            path.mkdir()
        self.cwd = self.dirs["cwd"]
        self.env = {
            "HOME": str(self.dirs["home"]),
            "TMPDIR": str(self.dirs["tmp"]),
            "XDG_DATA_HOME": str(self.dirs["xdg_data"]),
            "XDG_CACHE_HOME": str(self.dirs["xdg_cache"]),
        }

    def leftovers(self) -> dict[str, list[str]]:
        """What appeared in each dir (only the non-empty ones)."""
        found = {name: sorted(os.listdir(path)) for name, path in self.dirs.items()}
        return {name: files for name, files in found.items() if files}


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def reason(self) -> str:
        """The stable reason of a gateway error answer, checked against its status."""
        doc = self.json()
        assert set(doc) == {"error", "detail"}, doc
        assert REASONS[doc["error"]] == self.status, doc
        return str(doc["error"])


def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = 10.0,
) -> Response:
    """One blocking request on a fresh connection (an iterable body goes out chunked)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        chunked = body is not None and not isinstance(body, bytes)
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        resp = conn.getresponse()
        return Response(resp.status, _lower(dict(resp.getheaders())), resp.read())
    finally:
        conn.close()


def control_post(runtime_dir: Path, path: str, doc: Any = None) -> Response:
    """POST ``path`` (optional JSON ``doc``) on ``runtime_dir/ctl.sock``, the control plane."""
    answer = ControlClient(runtime_dir / "ctl.sock", timeout=10).post(path, doc)
    return Response(answer.status, {}, answer.body)


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _http(method: str, url: str) -> Response:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Response(resp.status, _lower(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, _lower(err.headers), err.read())


@attrs.define
class RunningNode:
    proc: trio.Process
    runtime_dir: Path
    admin: str
    ready_line: dict[str, Any]
    log_path: Path

    async def get(self, path: str) -> Response:
        return await trio.to_thread.run_sync(_http, "GET", self.admin + path)

    async def post(self, path: str) -> Response:
        """An act on the node's control socket (``/fault/...``, ``/reload``, ``/stop``)."""
        return await trio.to_thread.run_sync(control_post, self.runtime_dir, path)

    async def post_json(self, path: str, doc: Any) -> Response:
        """An act with a JSON body on the control socket (``/token/revoke``)."""
        return await trio.to_thread.run_sync(control_post, self.runtime_dir, path, doc)

    async def mint(self, **doc: Any) -> str:
        """A capability token from the node's control socket (``ops``, ``ttl``, ``prefix``...)."""
        resp = await trio.to_thread.run_sync(control_post, self.runtime_dir, "/token/mint", doc)
        assert resp.status == 200, resp.body
        return str(resp.json()["token"])

    async def service(self, name: str) -> dict[str, Any]:
        version = (await self.get("/version")).json()
        return next(s for s in version["services"] if s["name"] == name)

    async def wait_service(
        self, name: str, *, state: str, not_pid: int | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            svc = await self.service(name)
            if svc["state"] == state and (not_pid is None or svc["pid"] != not_pid):
                return svc
            return None

        return await poll_until(check, timeout, f"{name} to be {state} (not pid {not_pid})")

    async def metric(self, name: str, **labels: str) -> float:
        """The value of one sample in the scrape (0.0 when absent)."""
        text = (await self.get("/metrics")).body.decode()
        for line in text.splitlines():
            named = line.startswith(name + "{") or line.startswith(name + " ")
            if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def ronctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return await trio.run_process(
            ronctl_cmd(*args, "--admin", self.admin, "--runtime-dir", str(self.runtime_dir)),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=child_env(),
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@asynccontextmanager
async def start_node(
    tmp_path: Path,
    profile: str = "micronode",
    *,
    config: str | None = FAST_CONFIG,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout: float = 30,
) -> AsyncIterator[RunningNode]:
    """Run ``ronctl run PROFILE`` until the block ends; yields once it printed ``node_ready``."""
    runtime_dir = short_runtime_dir()
    args = ["run", profile, "--admin-addr", "127.0.0.1:0", "--runtime-dir", str(runtime_dir)]
    # never the fixed default ports: tests run in parallel
    for flag in ("--gateway-addr", "--overlay-addr"):
        if flag not in extra_args:
            args += [flag, "127.0.0.1:0"]
    if config is not None:
        config_path = tmp_path / "node.toml"
        config_path.write_text(config)
        args += ["--config", str(config_path)]
    log_path = tmp_path / "node.log"
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - a local file, opened once
        proc = await trio.lowlevel.open_process(
            ronctl_cmd(*args, *extra_args),
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_env(env),
            cwd=str(cwd) if cwd else None,
        )
    try:
        assert proc.stdout is not None
        line = await read_ready_line(proc.stdout, ready_timeout)
        if not line.endswith(b"\n"):
            raise AssertionError(f"node did not print node_ready; log:\n{log_path.read_text()}")
        ready = json.loads(line)
        yield RunningNode(proc, runtime_dir, ready["admin"], ready, log_path)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(15):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()
        shutil.rmtree(runtime_dir, ignore_errors=True)  # after a kill -9 of the node
