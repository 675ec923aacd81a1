"""``ronctl put`` / ``ronctl get`` against a real micronode, and their failure modes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from ipc.manifest import StreamId
from services.gateway.server import serve_on_socket
from tests.support.node_harness import child_env, poll_until, start_node

BIG = 50 * 1000 * 1000


async def ronctl(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    # ``python -m kernel`` is ronctl (the console script's module, so its error types are the
    # ones ``main`` catches).
    return await trio.run_process(
        [sys.executable, "-m", "kernel", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=child_env(env),
    )


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def _reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _write_random(path: Path, size: int) -> str:
    """Random bytes into ``path``; their object id (over 1 MiB: their manifest's)."""
    hasher = StreamId()
    with path.open("wb") as f:
        left = size
        while left:
            piece = os.urandom(min(left, 1 << 20))
            hasher.update(piece)
            f.write(piece)
            left -= len(piece)
    return hasher.id()


@pytest.mark.slow
async def test_put_then_get_50mb_byte_identical_with_flat_gateway_memory(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    expected = _write_random(src, BIG)
    with trio.fail_after(120):
        async with start_node(tmp_path, extra_args=["--gateway-addr", "127.0.0.1:0"]) as node:
            gateway, rt = node.ready_line["gateway"], str(node.runtime_dir)
            pid = (await node.wait_service("svc-gateway", state="ready"))["pid"]
            _reset_peak_rss(pid)
            before = _rss_kib(pid, "VmRSS")
            put = await ronctl("put", str(src), "--gateway", gateway, "--runtime-dir", rt)
            assert put.returncode == 0, put.stderr
            assert put.stdout.decode().strip() == expected  # the id computed on this side
            out = tmp_path / "back.bin"
            got = await ronctl("get", expected, "-o", str(out), "--gateway", gateway)
            assert got.returncode == 0, got.stderr
            growth_mib = (_rss_kib(pid, "VmHWM") - before) / 1024
            # Found through the admin plane instead of --gateway: the same object to stdout.
            again = await node.ronctl("get", expected)
            assert again.returncode == 0 and len(again.stdout) == BIG
    assert out.read_bytes() == src.read_bytes()
    assert growth_mib < 16, f"gateway peak RSS grew by {growth_mib:.1f} MiB for a 50 MB object"


async def test_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{free.getsockname()[1]}"
    free.close()
    cases: list[tuple[tuple[str, ...], bytes]] = [
        (("get", "b3:nothex", "--gateway", dead), b"is not an object id"),
        (("put", str(tmp_path / "missing.bin"), "--gateway", dead), b"cannot read"),
        (("get", "b3:" + "a" * 64, "--gateway", dead, "--retry-for", "0.3"), b"cannot reach"),
        (("get", "b3:" + "a" * 64, "--gateway", "ftp://x"), b"invalid gateway URL"),
    ]
    with trio.fail_after(60):
        for args, message in cases:
            result = await ronctl(*args)
            assert result.returncode == 1, (args, result.stderr)
            lines = result.stderr.decode().strip().splitlines()
            assert len(lines) == 1 and message.decode() in lines[0], lines


async def _lying_gateway(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every GET with bytes that do not match the id asked for, or a 404."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"].endswith("0" * 64):
        body = b'{"error":"not_found","detail":"no object"}'
        await send({"type": "http.response.start", "status": 404, "headers": []})
    else:
        body = b"not what you asked for"
        await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_get_never_leaves_a_wrong_or_partial_file(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "out.bin"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_on_socket, _lying_gateway, sock, 5.0)
            wrong = await ronctl("get", "b3:" + "1" * 64, "-o", str(out), "--gateway", url)
            missing = await ronctl("get", "b3:" + "0" * 64, "-o", str(out), "--gateway", url)
            nursery.cancel_scope.cancel()
    sock.close()
    assert wrong.returncode == 1 and b"hash to" in wrong.stderr
    assert missing.returncode == 1 and b"HTTP 404 not_found: no object" in missing.stderr
    assert os.listdir(tmp_path) == []  # no out.bin, no temp file


async def _stalling_gateway(scope: Any, receive: Any, send: Any) -> None:
    """Half an object, then nothing more: a download that hangs mid-way."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = [(b"content-length", str(1 << 20).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    await trio.sleep_forever()


async def test_a_get_stopped_by_sigterm_leaves_no_partial_file(tmp_path: Path) -> None:
    """``timeout 30 ronctl get ID -o FILE`` ending mid-download: one line, exit 143, and no
    ``.part`` left (Ctrl-C already removed it; SIGTERM used to end the process on the spot)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "out" / "obj.bin"
    out.parent.mkdir()
    cmd = [sys.executable, "-m", "kernel", "get", "b3:" + "1" * 64, "-o", str(out)]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_on_socket, _stalling_gateway, sock, 30.0)
            get = await trio.lowlevel.open_process(
                [*cmd, "--gateway", url, "--no-progress"],
                stderr=subprocess.PIPE,
                env=child_env(),
            )
            await poll_until(
                lambda: any(p.name.endswith(".part") for p in out.parent.iterdir()),
                30,
                "the download under way",
            )
            get.send_signal(signal.SIGTERM)
            assert await get.wait() == 128 + signal.SIGTERM
            assert get.stderr is not None
            err = (await get.stderr.receive_some(65536)).decode()
            nursery.cancel_scope.cancel()
    sock.close()
    assert err.startswith("ronctl: terminated") and err.count("\n") == 1, err
    assert os.listdir(out.parent) == []  # no obj.bin, no .obj.bin.*.part


async def test_get_output_mistakes_are_one_line_before_any_download(tmp_path: Path) -> None:
    """``-o`` an existing dir, or in a dir that does not exist: one line, nothing downloaded and
    nothing written anywhere (issue 12 defect 9)."""
    src = tmp_path / "obj.bin"
    expected = _write_random(src, 3_000_000)
    target_dir = tmp_path / "out"
    target_dir.mkdir()
    async with start_node(tmp_path, extra_args=["--gateway-addr", "127.0.0.1:0"]) as node:
        rt = ["--runtime-dir", str(node.runtime_dir)]
        assert (await ronctl("put", str(src), *rt)).returncode == 0
        before = await node.metric(
            "http_requests_total", route="/o/{id}", method="GET", status="200"
        )
        for output, fragment in (
            (target_dir, "is a directory"),
            (tmp_path / "missing" / "dir" / "x", "does not exist"),
        ):
            done = await ronctl("get", expected, "-o", str(output), *rt)
            lines = done.stderr.decode().strip().splitlines()
            assert done.returncode == 1 and len(lines) == 1, done.stderr
            assert fragment in lines[0] and ".part" not in lines[0]
        after = await node.metric(
            "http_requests_total", route="/o/{id}", method="GET", status="200"
        )
    assert after == before  # refused before any download
    assert names(target_dir) == []
    assert names(tmp_path) == sorted(["obj.bin", "out", "node.log", "node.toml"])


async def test_get_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    src = tmp_path / "obj.bin"
    expected = _write_random(src, 8_000_000)
    async with start_node(tmp_path, extra_args=["--gateway-addr", "127.0.0.1:0"]) as node:
        rt = f"--runtime-dir {node.runtime_dir}"
        assert (await ronctl("put", str(src), *rt.split())).returncode == 0
        cmd = f"{sys.executable} -m kernel get {expected} {rt} | head -c 10 > /dev/null"
        done = await trio.run_process(
            ["bash", "-o", "pipefail", "-c", cmd], capture_stderr=True, check=False, env=child_env()
        )
    assert done.stderr == b"", done.stderr
    assert done.returncode in (0, 141)  # like cat: quiet (SIGPIPE's 141 or 0)


async def test_put_to_a_gateway_that_refuses_fails_fast_with_one_line(tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"hello")
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{free.getsockname()[1]}"
    free.close()
    with trio.fail_after(10):  # the default --retry-for is 30 s: refused must not wait for it
        done = await ronctl("put", str(src), "--gateway", dead, "--token", "ron1.x")
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "cannot reach the gateway" in lines[0] and "refused" in lines[0].lower()
