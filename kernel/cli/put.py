"""``ronctl put FILE|DIR``: a file stored (``kernel.cli.data.put_file``), or with a DIR every
file under it stored, and named with ``--name PREFIX/``, in one command.

How a static site gets onto a node: ``ronctl put examples/site --name site/`` stores each file
(recursively, in path order) with its extension's media type, then points
``site/<relative path>`` at it; ``http://GATEWAY/n/site/`` serves ``site/index.html``.

Guarantees:

- nothing is uploaded unless every file's name is valid (the names rule, checked first: a path
  that cannot be a name is reported with the rule, before any byte moves);
- a name is set only after its file is durable; a failure stops at that file with one line
  saying how many were done (running the same command again is safe: PUTs are idempotent and
  a name set again to the same id only gains a version);
- symlinks are not followed (a link out of DIR cannot leak files), only regular files are taken;
- one progress bar for the whole tree on a terminal (files, bytes, rate, ETA).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import time
import urllib.parse
from pathlib import Path

import attrs

from ipc.oap import OapError
from ipc.plain import JsonObject
from ipc.proto import index as index_proto
from kernel.cli.common import AdminArg, CliError, add_json_arg, human_size
from kernel.cli.data import (
    Verb,
    common_args,
    gateway_call,
    put_file,
    resolve_gateway_url,
    show_progress,
    upload,
)
from kernel.cli.tokens import TOKEN_ENV, write_token

__all__ = ["cmd_put", "put_dir", "register"]

OCTETS = "application/octet-stream"
MAX_FILES = 100_000  # a typo'd DIR (/, ~) stops before walking the whole disk


def register(verb: Verb, admin_arg: AdminArg) -> None:
    p = verb(
        "put",
        "store a file through the gateway, print its id",
        cmd_put,
        description="Upload FILE ('-' = stdin) to the node's gateway and print its id "
        "(b3:<hex>) once the node holds it durably. With a DIR, upload every file under it "
        "(recursively) and, with --name PREFIX/, name each PREFIX/<relative path>; prints a table "
        "(or --json).",
    )
    p.add_argument("file", metavar="FILE|DIR")
    add_json_arg(p, '{"id", "size"} (a DIR: {"files": [...], "bytes"})')
    p.add_argument(
        "--name",
        metavar="PREFIX/",
        help="with a DIR: name every file PREFIX/<its path under DIR> (a site: --name site/, "
        "then open /n/site/ on the gateway)",
    )
    p.add_argument(
        "--type",
        metavar="MEDIA",
        help="the file's media type, e.g. text/html (recorded for names pointed at it); a DIR's "
        "files get their extension's",
    )
    p.add_argument(
        "--token",
        metavar="T",
        help=f"capability token (default: ${TOKEN_ENV}, else one minted through the node's "
        "control socket when run as the node's user)",
    )
    common_args(p, admin_arg)


def cmd_put(args: argparse.Namespace) -> int:
    if args.file != "-" and os.path.isdir(args.file):
        return put_dir(args)
    if args.name:
        raise CliError("--name PREFIX/ names the files of a directory; use `ronctl name set`")
    return put_file(args)


@attrs.frozen
class _File:
    path: Path
    rel: str  # relative to DIR, with "/"
    size: int
    name: str | None  # PREFIX/<rel> with --name


def _walk(root: Path, prefix: str | None) -> list[_File]:
    found: list[_File] = []
    for here, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for entry in sorted(files):
            path = Path(here) / entry
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            found.append(
                _File(path, rel, path.stat().st_size, None if prefix is None else prefix + rel)
            )
            if len(found) > MAX_FILES:
                raise CliError(f"{root} holds more than {MAX_FILES} files: is it the right DIR?")
    return found


def _prefix_of(text: str | None) -> str | None:
    """``site/`` (``site`` too) as the names' prefix; ``/`` for no prefix at all."""
    if text is None:
        return None
    stripped = text.strip("/")
    if not stripped:
        return ""
    try:
        index_proto.check_name(stripped)
    except OapError:
        raise CliError(f"--name {text!r}: {index_proto.NAME_RULE}") from None
    return stripped + "/"


def _check_names(files: list[_File]) -> None:
    bad = []
    for f in files:
        try:
            index_proto.check_name(f.name)
        except OapError:
            bad.append(f.rel)
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (
            f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        )
        raise CliError(
            f"{len(bad)} file(s) cannot be named (nothing was uploaded): {shown}; "
            f"{index_proto.NAME_RULE}"
        )


class _TreeProgress:
    """One line on stderr for the whole tree: files, bytes, rate and ETA (a terminal only)."""

    def __init__(self, files: int, total: int, enabled: bool) -> None:
        self.files, self.total, self.enabled = files, total, enabled
        self.done_files = 0
        self.done = 0
        self._file_bytes = 0
        self._started = time.monotonic()
        self._drawn = 0.0

    def __call__(self, size: int | None) -> _TreeProgress:
        self.done -= self._file_bytes  # a retried file starts over
        self._file_bytes = 0
        return self

    def add(self, n: int) -> None:
        self.done += n
        self._file_bytes += n
        now = time.monotonic()
        if self.enabled and now - self._drawn >= 0.1:
            self._drawn = now
            self.draw()

    def finish(self) -> None:
        pass  # a file's end is not the tree's

    def file_done(self) -> None:
        self.done_files += 1
        self._file_bytes = 0
        if self.enabled:
            self.draw()

    def draw(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        sys.stderr.write(
            f"\rput {self.done_files}/{self.files} files  {human_size(self.done)} / "
            f"{human_size(self.total)}  {human_size(rate)}/s  ETA {eta:.0f} s   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self.draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


def put_dir(args: argparse.Namespace) -> int:
    root = Path(args.file)
    prefix = _prefix_of(args.name)
    files = _walk(root, prefix)
    if not files:
        raise CliError(f"{root} holds no regular file to put")
    if prefix is not None:
        _check_names(files)
    url = resolve_gateway_url(args)
    put_token = write_token(args, "put")
    name_token = write_token(args, "name") if prefix is not None else None
    progress = _TreeProgress(len(files), sum(f.size for f in files), show_progress(args))
    rows: list[JsonObject] = []
    try:
        for f in files:
            rows.append(_put_one(args, url, f, put_token, name_token, progress))
            progress.file_done()
    except CliError as exc:
        progress.close()
        raise CliError(f"{f.rel}: {exc} ({len(rows)} of {len(files)} files done)") from None
    progress.close()
    _report(args, rows)
    return 0


def _put_one(
    args: argparse.Namespace,
    url: str,
    f: _File,
    put_token: str | None,
    name_token: str | None,
    progress: _TreeProgress,
) -> JsonObject:
    kind = args.type or mimetypes.guess_type(f.rel, strict=False)[0] or OCTETS
    headers = {"Content-Type": kind}
    if put_token:
        headers["Authorization"] = f"Bearer {put_token}"
    try:
        source = open(f.path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise CliError(f"cannot read it: {exc.strerror or exc}") from None
    with source:
        stored = upload(args, url, source, headers, progress)
    row: JsonObject = {"path": f.rel, "id": stored["id"], "size": stored["size"], "type": kind}
    if f.name is not None:
        auth = {"Authorization": f"Bearer {name_token}"} if name_token else {}
        body = json.dumps({"id": stored["id"]}).encode()
        path = "/names/" + urllib.parse.quote(f.name, safe="/")
        headers = {"Content-Type": "application/json", **auth}
        _, record = gateway_call(args, "PUT", path, body, headers, ok=(200,))
        row["name"], row["version"] = record["name"], record["version"]
    return row


def _report(args: argparse.Namespace, rows: list[JsonObject]) -> None:
    total = sum(int(str(r["size"])) for r in rows)
    if args.json:
        print(json.dumps({"files": rows, "bytes": total}, sort_keys=True))
        return
    named = any("name" in r for r in rows)
    header = ("NAME" if named else "PATH", "SIZE", "TYPE", "ID")
    table = [
        (
            str(r.get("name", r["path"])),
            human_size(int(str(r["size"]))),
            str(r["type"]),
            str(r["id"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(3)]
    for row in [header, *table]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    print(f"{len(rows)} files, {human_size(total)}")
