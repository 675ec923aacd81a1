"""The node under test: one the drill starts itself (``--profile``) or a running one (``--admin``).

A node the drill starts is a real ``ronctl run`` child process with its own private runtime dir
(tmpfs), data dir (macronode: a temp dir on disk, deleted afterwards) and free ports; its log goes
to a file, never into memory. Stopping it is SIGTERM, then SIGKILL after a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

import kernel
from ipc.plain import JsonObject
from kernel.cli.chaos.http import HttpError, request
from kernel.cli.common import CTL_SOCKET

__all__ = ["AdminView", "NodeHandle", "StartError", "start_node"]

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
ADMIN_TIMEOUT = 5.0


class StartError(Exception):
    """The node could not be started or reached; ``str()`` is one line."""


@attrs.define
class NodeHandle:
    admin: str
    pid: int
    profile: str
    urls: dict[str, str]
    proc: trio.Process | None = None  # set when the drill started the node
    log_path: Path | None = None
    returncode: int | None = None
    control: Path | None = None  # the node's ctl.sock: acts (faults, releases) go there
    data_dir: Path | None = None  # --data-dir when the drill started the node (macronode's)

    @property
    def gateway(self) -> str | None:
        return self.urls.get("gateway")


class AdminView:
    """The calls the drills make (async; every call bounded): reads on the admin plane, acts
    (``post``) on the control socket."""

    def __init__(self, admin: str, control: Path | None = None) -> None:
        self.base = admin.rstrip("/")
        self.control = control

    async def get(self, path: str, timeout: float = ADMIN_TIMEOUT) -> Any:
        resp = await request("GET", self.base + path, timeout=timeout)
        if resp.status not in (200, 503):
            raise HttpError(f"GET {path}: HTTP {resp.status}")
        return json.loads(resp.body)

    async def version(self) -> JsonObject:
        return await self.get("/version")

    async def ready(self) -> bool:
        resp = await request("GET", self.base + "/readyz", timeout=ADMIN_TIMEOUT)
        return resp.status == 200

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The scrape as {(name, sorted labels without amnesia): value}."""
        resp = await request("GET", self.base + "/metrics", timeout=ADMIN_TIMEOUT)
        return parse_scrape(resp.body.decode())

    async def post(self, path: str) -> tuple[int, JsonObject]:
        """An act on the control socket (``/fault/...``, ``/release/...``, ``/reload``)."""
        if self.control is None:
            raise HttpError("acting on the node needs its control socket: pass --runtime-dir DIR")
        resp = await request("POST", path, timeout=ADMIN_TIMEOUT, unix=str(self.control))
        try:
            body = json.loads(resp.body)
        except ValueError:
            body = {}
        return resp.status, body if isinstance(body, dict) else {}

    async def mint_token(self, *, ttl: float, ops: tuple[str, ...]) -> str | None:
        """A write token from the node's control socket; None when the node needs none (it
        runs no svc-passport, or writes are open) or there is no control socket to ask."""
        if self.control is None:
            return None
        body = json.dumps({"ops": list(ops), "ttl": ttl}).encode()
        resp = await request(
            "POST", "/token/mint", body=body, timeout=ADMIN_TIMEOUT, unix=str(self.control)
        )
        if resp.status != 200:
            return None
        token = json.loads(resp.body).get("token")
        return token if isinstance(token, str) else None


def parse_scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, rest = series.partition("{")
        labels: list[tuple[str, str]] = []
        for part in rest.rstrip("}").split(","):
            key, eq, val = part.partition("=")
            if eq and key != "amnesia":
                labels.append((key.strip(), val.strip().strip('"')))
        try:
            out[(name, tuple(sorted(labels)))] = float(value)
        except ValueError:
            continue
    return out


def restarts_by_service(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict:
    return {
        dict(labels).get("service", "?"): value
        for (name, labels), value in scrape.items()
        if name == "service_restarts_total"
    }


async def read_ready_line(stdout: trio.abc.ReceiveStream, timeout: float) -> bytes:
    """What ``ronctl run`` printed up to its first newline (``node_ready``), within ``timeout``;
    without the newline if the node exited or the time ran out."""
    line = b""
    with trio.move_on_after(timeout):
        while not line.endswith(b"\n"):
            chunk = await stdout.receive_some(4096)
            if not chunk:
                break
            line += chunk
    return line


async def attach(admin: str, runtime_dir: Path | None = None) -> NodeHandle:
    """A handle on a running node from its admin plane's /version; its acts go to
    ``runtime_dir/ctl.sock``."""
    try:
        info = await AdminView(admin).version()
    except (HttpError, ValueError) as exc:
        raise StartError(f"cannot reach the node's admin plane at {admin}: {exc}") from None
    urls = dict(info.get("urls") or {})
    urls.setdefault("admin", admin)
    return NodeHandle(
        admin=admin,
        pid=int(info.get("pid") or 0),
        profile=info["profile"],
        urls=urls,
        control=runtime_dir / CTL_SOCKET if runtime_dir else None,
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(kernel.__file__).resolve().parent.parent)  # works installed or from a checkout
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _make_dirs() -> tuple[Path, Path]:
    """A short private runtime dir on tmpfs (ipc paths are short; amnesia needs RAM) and a data
    dir on disk (macronode)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    runtime_dir = Path(tempfile.mkdtemp(prefix="ronchaos-", dir=base))
    return runtime_dir, Path(tempfile.mkdtemp(prefix="ronchaos-data-"))


@asynccontextmanager
async def start_node(
    profile: str,
    *,
    config: Path | None = None,
    log_path: Path | None = None,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[NodeHandle]:
    """Run ``ronctl run PROFILE [extra_args]`` on free loopback ports until the block ends."""
    runtime_dir, data_dir = _make_dirs()
    if log_path is None:
        log_path = Path(tempfile.gettempdir()) / f"ronchaos-node-{os.getpid()}.log"
    args = [
        sys.executable,
        "-m",
        "kernel.cli",
        "run",
        profile,
        "--admin-addr",
        "127.0.0.1:0",
        "--gateway-addr",
        "127.0.0.1:0",
        "--overlay-addr",
        "127.0.0.1:0",
        "--runtime-dir",
        str(runtime_dir),
        "--data-dir",
        str(data_dir),
    ]
    if config is not None:
        args += ["--config", str(config)]
    args += list(extra_args)
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - opened once, handed to the child
        proc = await trio.lowlevel.open_process(
            args, stdout=subprocess.PIPE, stderr=log, env=_child_env()
        )
    handle: NodeHandle | None = None
    try:
        assert proc.stdout is not None
        line = await read_ready_line(proc.stdout, READY_TIMEOUT)
        if not line.endswith(b"\n"):
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise StartError(
                f"the {profile} node did not become ready in {READY_TIMEOUT:g} s"
                + (f": {tail[0][:300]}" if tail else "")
            )
        ready = json.loads(line)
        urls = {k: v for k, v in ready.items() if k in ("admin", "gateway", "overlay")}
        handle = NodeHandle(
            admin=ready["admin"],
            pid=proc.pid,
            profile=ready.get("profile", profile),
            urls=urls,
            proc=proc,
            log_path=log_path,
            control=runtime_dir / CTL_SOCKET,
            data_dir=data_dir,
        )
        yield handle
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_TIMEOUT):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            if handle is not None:
                handle.returncode = proc.returncode
            if proc.stdout is not None:
                await proc.stdout.aclose()
        shutil.rmtree(runtime_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
