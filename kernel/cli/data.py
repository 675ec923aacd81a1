"""``ronctl put`` / ``ronctl get``: objects through the node's gateway (DESIGN.md §8).

Blocking stdlib HTTP (``http.client``), like the rest of ``ronctl``. Guarantees:

- ``put`` streams the file with its Content-Length (stdin: ``Transfer-Encoding: chunked``) in
  ``PIECE`` pieces; memory stays flat whatever the size. It prints the id once the node
  acknowledged the object as durable. ``put DIR`` does so for every file under DIR
  (``kernel.cli.put``); ``get NAME`` fetches what a name of this node points at.
- ``get -o FILE`` writes to a temp file beside FILE, checks BLAKE3 of what arrived against the id,
  and only then renames it into place: FILE is never left half-written or wrong. To stdout, the
  bytes stream as they arrive and a mismatch is reported (exit 1) at the end.
- 503/429 (with ``Retry-After``) and a reset connection (the gateway restarting) are retried for
  up to ``--retry-for`` seconds, announced once on stderr; a refused connection (no node holds
  that port) and everything else fail at once with one line.
- ``get -o FILE`` checks FILE's directory before downloading anything; ``get`` into a closed
  pipe (``| head``) exits quietly, like ``cat``.
- A progress bar goes to stderr for transfers over ``PROGRESS_MIN`` when stderr is a terminal.

The gateway URL: ``--gateway URL`` > ``$RON_GATEWAY`` > the admin plane's ``/version`` when
``--admin``/``$RON_ADMIN`` is given > ``node.json`` of the node in the runtime dir. ``put`` sends
``--token`` / ``$RON_TOKEN``, else a short-lived token it mints through the control socket (when
run as the node's user); the token never reaches stderr or a log.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from ipc import ids
from ipc.oap import OapError
from ipc.plain import JsonObject
from ipc.proto import index as index_proto
from kernel import childenv, runtime
from kernel.cli.client import AdminClient
from kernel.cli.common import (
    ADMIN_ENV,
    AdminArg,
    CliError,
    emit,
    resolve_admin_url,
    runtime_dir_of,
)
from kernel.cli.terminate import sigterm_raises
from kernel.cli.tokens import TOKEN_ENV, write_token

Verb = Callable[..., argparse.ArgumentParser]

GATEWAY_ENV = childenv.GATEWAY
PIECE = 1 << 18  # bytes per read from disk / per HTTP chunk
PROGRESS_MIN = 8 << 20
RETRY_STATUS = (429, 503)


def register(verb: Verb, admin_arg: AdminArg) -> None:
    p = verb(
        "get",
        "fetch an object by id or name through the gateway",
        cmd_get,
        description="Download an object (by its id, or by a name of this node), verify its "
        "BLAKE3 id, write it to FILE or stdout.",
    )
    p.add_argument("id", metavar="ID|NAME", help="object id, b3:<hex>, or a name (site/index.html)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument(
        "--peer",
        metavar="ADDR",
        help="fetch straight from a node's overlay, <node id>@host:port (TLS, pinned by node id), "
        "not through a gateway",
    )
    common_args(p, admin_arg)


def common_args(p: argparse.ArgumentParser, admin_arg: AdminArg) -> None:
    p.add_argument("--gateway", metavar="URL", help=f"gateway URL (default: ${GATEWAY_ENV}, ...)")
    admin_arg(p)
    p.add_argument(
        "--retry-for",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="keep retrying 503/429/connection errors this long (30)",
    )
    p.add_argument("--no-progress", action="store_true", help="never draw a progress bar")


# --- where the gateway is ----------------------------------------------------------------------


def resolve_gateway_url(args: argparse.Namespace) -> str:
    if args.gateway:
        return str(args.gateway)
    env = os.environ.get(GATEWAY_ENV)
    if env:
        return env
    if args.admin or os.environ.get(ADMIN_ENV):
        version = AdminClient(resolve_admin_url(args.admin, runtime_dir_of(args))).get("/version")
        urls = version.json().get("urls") if version.status == 200 else None
        url = urls.get("gateway") if isinstance(urls, dict) else None
        if not isinstance(url, str):
            raise CliError("the node does not run a gateway (no gateway URL); pass --gateway URL")
        return url
    info = runtime.read_node_info(runtime_dir_of(args))
    url = info.get("gateway")
    if not isinstance(url, str) or not url:
        raise CliError("the running node has no gateway; pass --gateway URL")
    return url


def _split(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise CliError(f"invalid gateway URL {url!r}: expected http://HOST:PORT")
    return parts.hostname, port


# --- HTTP with retries ---------------------------------------------------------------------------


class Retry(Exception):
    def __init__(self, why: str, after: float) -> None:
        super().__init__(why)
        self.after = after


def error_line(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("error"):
        detail = f": {doc['detail']}" if doc.get("detail") else ""
        return " ".join(f"HTTP {status} {doc['error']}{detail}".split())
    return " ".join(f"HTTP {status} {body[:200].decode('utf-8', 'replace')}".split())


def retry_after_of(resp: http.client.HTTPResponse) -> float:
    try:
        return min(5.0, max(0.1, float(resp.getheader("retry-after") or 1)))
    except ValueError:
        return 1.0


def with_retries(
    url: str, retry_for: float, attempt: Callable[[http.client.HTTPConnection], Any]
) -> Any:
    """Run ``attempt`` on a fresh connection until it succeeds or ``retry_for`` runs out."""
    host, port = _split(url)
    deadline = time.monotonic() + retry_for
    said = False  # a retry is announced once on stderr (the final failure is its own line)
    while True:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            return attempt(conn)
        except Retry as again:
            why, wait = str(again), again.after
        except ConnectionRefusedError:
            # The node holds its gateway's port for its whole life (socket activation), so a
            # refusal means no node listens there: no retry can help.
            raise CliError(
                f"cannot reach the gateway at {url}: connection refused (is the node running?)"
            ) from None
        except (ConnectionError, http.client.RemoteDisconnected) as exc:
            why, wait = f"cannot reach the gateway at {url}: {exc.strerror or exc}", 0.2
        except (OSError, http.client.HTTPException) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else exc
            raise CliError(f"talking to the gateway at {url} failed: {reason}") from None
        finally:
            conn.close()
        if time.monotonic() + wait > deadline:
            raise CliError(why)
        if not said:
            print(f"ronctl: {why}; retrying for up to {retry_for:g} s", file=sys.stderr)
            said = True
        time.sleep(wait)  # a remote process is restarting: there is no event to wait on


def gateway_call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    ok: tuple[int, ...] = (200, 201),
) -> tuple[int, Any]:
    """One request to the gateway with a JSON answer, retried like ``put`` (503/429 and
    connection errors, for ``--retry-for``): ``(status, document)`` for a status in ``ok``,
    else ``CliError`` with the gateway's one-line reason."""
    url = resolve_gateway_url(args)

    def attempt(conn: http.client.HTTPConnection) -> tuple[int, Any]:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status in ok:
            return resp.status, json.loads(data)
        if resp.status in RETRY_STATUS:
            raise Retry(error_line(resp.status, data), retry_after_of(resp))
        raise CliError(error_line(resp.status, data))

    result: tuple[int, Any] = with_retries(url, args.retry_for, attempt)
    return result


# --- progress ------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, total: int | None, enabled: bool, verb: str) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled and (total is None or total >= PROGRESS_MIN)
        self.verb = verb
        self._last = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.1:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        mib = self.done / (1 << 20)
        if self.total:
            frac = self.done / self.total
            bar = "#" * int(frac * 30)
            text = f"\r{self.verb} [{bar:<30}] {mib:8.1f} / {self.total / (1 << 20):.1f} MiB"
        else:
            text = f"\r{self.verb} {mib:8.1f} MiB"
        sys.stderr.write(text)
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


def show_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


# --- put -----------------------------------------------------------------------------------------


def _pieces(f: IO[bytes], progress: Meter) -> Iterator[bytes]:
    while piece := f.read(PIECE):
        progress.add(len(piece))
        yield piece


class Meter(Protocol):
    """Where an upload reports its bytes (a ``_Progress``, or ``put DIR``'s whole-tree bar)."""

    def add(self, n: int) -> None: ...

    def finish(self) -> None: ...


def upload(
    args: argparse.Namespace,
    url: str,
    source: IO[bytes],
    headers: dict[str, str],
    meter: Callable[[int | None], Meter],
) -> JsonObject:
    """PUT ``source`` to ``/o`` and return the gateway's answer (``{"id", "size"[, "type"]}``)
    once the object is durable. A file goes with its Content-Length and streams (the gateway
    takes any size up to its max_object_size that way, like curl -T); a pipe goes chunked (its
    size is unknown, and it cannot be sent twice: no retry). ``meter(size)`` gives each
    attempt its progress."""
    seekable = source.seekable()
    size = os.fstat(source.fileno()).st_size if seekable else None
    retry_for = args.retry_for if seekable else 0.0

    def attempt(conn: http.client.HTTPConnection) -> JsonObject:
        if seekable:
            source.seek(0)
        progress = meter(size)
        conn.putrequest("PUT", "/o")
        if size is None:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(size))
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        try:
            for piece in _pieces(source, progress):
                conn.send(piece if size is not None else b"%x\r\n%s\r\n" % (len(piece), piece))
            if size is None:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway answered early (e.g. 413): read why below
        resp = conn.getresponse()
        body = resp.read()
        progress.finish()
        if resp.status in (200, 201):
            return dict(json.loads(body))
        if resp.status in RETRY_STATUS:
            raise Retry(error_line(resp.status, body), retry_after_of(resp))
        if resp.status == 401 and "Authorization" not in headers:
            raise CliError(
                f"{error_line(resp.status, body)}: pass --token (or ${TOKEN_ENV}), or run "
                "as the node's user so ronctl can mint one"
            )
        raise CliError(error_line(resp.status, body))

    stored: JsonObject = with_retries(url, retry_for, attempt)
    return stored


def put_file(args: argparse.Namespace) -> int:
    """``ronctl put FILE`` (``-``: stdin): print its id once the node holds it durably."""
    url = resolve_gateway_url(args)
    try:
        source: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    token = write_token(args, "put")
    headers = {"Content-Type": args.type or "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with source:
        stored = upload(
            args, url, source, headers, lambda size: _Progress(size, show_progress(args), "put")
        )
    emit(args, stored, stored["id"])
    return 0


# --- get -----------------------------------------------------------------------------------------


def cmd_get(args: argparse.Namespace) -> int:
    if not ids.is_id(args.id):
        if args.peer:
            raise CliError(f"--peer fetches by id: {args.id!r} is not b3:<64 lowercase hex>")
        args.id = _id_of_name(args, args.id)
    if args.peer:
        return _get_from_peer(args)
    url = resolve_gateway_url(args)
    out_path = _output_target(args.output) if args.output else None

    def attempt(conn: http.client.HTTPConnection) -> None:
        conn.request("GET", f"/o/{args.id}")
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read()
            if resp.status in RETRY_STATUS:
                raise Retry(error_line(resp.status, body), retry_after_of(resp))
            raise CliError(error_line(resp.status, body))
        length = resp.getheader("content-length")
        progress = _Progress(int(length) if length else None, show_progress(args), "get")
        if out_path is None:
            try:
                _receive(resp, _StdoutWriter(), progress, args.id)
            except _ReaderGone:
                raise
            except (OSError, http.client.HTTPException) as exc:  # bytes already out: no retry
                raise CliError(f"the download of {args.id} broke off: {exc}") from None
            return
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                _receive(resp, f, progress, args.id)
            os.replace(tmp, out_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    try:
        with sigterm_raises():  # a download stopped by SIGTERM removes its .part too
            with_retries(url, args.retry_for, attempt)
    except _ReaderGone:
        raise BrokenPipeError from None  # `ronctl get ID | head`: quiet, like cat (main)
    except OSError as exc:  # the output file, not the network (those are handled inside)
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    return 0


def _id_of_name(args: argparse.Namespace, name: str) -> str:
    """The id a name of this node points at (``GET /names/{name}``); one line if none."""
    if name.startswith("b3:"):  # meant as an id (":" is never in a name)
        raise CliError(
            f"{name[:80]!r} is not an object id (b3: followed by 64 lowercase hex digits)"
        )
    try:
        index_proto.check_name(name)
    except OapError:
        raise CliError(
            f"{name[:80]!r} is neither an object id (b3:<64 lowercase hex>) nor a name: "
            f"{index_proto.NAME_RULE}"
        ) from None
    path = "/names/" + urllib.parse.quote(name, safe="/")
    try:
        _, record = gateway_call(args, "GET", path)
    except CliError as exc:
        if "404" in str(exc):
            raise CliError(f"no name {name!r} on this node (names are per node)") from None
        raise
    return str(record["id"])


def _get_from_peer(args: argparse.Namespace) -> int:
    """``ronctl get ID --peer ADDR``: the SDK's client, verified; a file appears only whole."""
    from ipc.sdk import Client, SdkError
    from ipc.transport import BadPeerAddr, DialError

    out_path = _output_target(args.output) if args.output else None
    try:
        with Client(args.peer, timeout=min(args.retry_for, 30.0) or 10.0) as peer:
            if out_path is None:
                writer = _StdoutWriter()
                peer.get_to(args.id, writer.write)
                writer.flush()
                return 0
            fd, tmp = tempfile.mkstemp(
                dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".part"
            )
            try:
                with os.fdopen(fd, "wb") as f:
                    peer.get_to(args.id, f.write)
                os.replace(tmp, out_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return 0
    except BadPeerAddr as exc:
        raise CliError(f"--peer: {exc}") from None
    except DialError as exc:
        raise CliError(f"cannot reach peer: {exc}") from None
    except SdkError as exc:
        raise CliError(f"peer {args.peer.split('@')[0][:17]}...: {exc}") from None
    except _ReaderGone:
        raise BrokenPipeError from None


class _ReaderGone(Exception):
    """Whoever reads our stdout closed it (not an OSError: never retried as a network error)."""


class _StdoutWriter:
    def write(self, data: bytes) -> None:
        try:
            sys.stdout.buffer.write(data)
        except BrokenPipeError:
            raise _ReaderGone from None

    def flush(self) -> None:
        try:
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise _ReaderGone from None


def _output_target(text: str) -> Path:
    """``-o FILE`` checked before any byte is fetched: the file goes into an existing, writable
    dir (its temp file beside it, nothing written anywhere else); ``CliError`` says why not."""
    path = Path(text)
    if path.is_dir():
        raise CliError(f"-o {text}: {text} is a directory; give a file path, e.g. {path / 'obj'}")
    parent = path.parent
    if not parent.is_dir():
        raise CliError(f"-o {text}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"-o {text}: cannot write in {parent} (permission denied)")
    return path


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


def _receive(resp: http.client.HTTPResponse, out: _Sink, progress: _Progress, obj_id: str) -> None:
    """Pass the body on, checking it against ``obj_id`` whatever the object's kind (its own
    BLAKE3, or its chunks' manifest: ``ipc.manifest.StreamId``); a mismatch is an error."""
    from ipc.manifest import StreamId

    hasher = StreamId()
    while piece := resp.read(PIECE):
        hasher.update(piece)
        out.write(piece)
        progress.add(len(piece))
    out.flush()
    progress.finish()
    got = hasher.id()
    if got != obj_id:
        raise CliError(f"the bytes received hash to {got}, not {obj_id}: discarded")
