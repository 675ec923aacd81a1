"""Media types of what the gateway serves: what an upload says it is, what a name is served as,
and the headers of a typed answer.

Why: an object is bytes under its id, so ``GET /o/{id}`` is ``application/octet-stream`` (with
``nosniff``, so a browser never guesses), unless the client asks for a type (``?type=``) or a
download (``?filename=``). Names are how a site is served (``GET /n/{name}``): a name carries the
type it was given, else the one its object was uploaded with, else its extension's (stdlib
``mimetypes``). Guarantees:

- every type that goes out as a header was checked (``index_proto.check_media_type``), every
  filename too (``filename_of``): no header injection, no path in a filename;
- anything served with a type other than ``application/octet-stream`` carries the configured
  ``Content-Security-Policy`` (``gateway.html_csp``): a stored page runs no script, so it can
  neither read the gateway's cookies nor call its write routes.
"""

from __future__ import annotations

import mimetypes
import urllib.parse

from ipc import oap
from ipc.proto import index as index_proto
from kernel.http.asgi import Scope
from services.gateway.errors import GatewayError
from services.gateway.exchange import header

__all__ = [
    "OCTETS",
    "download_type",
    "filename_of",
    "media_type",
    "name_type",
    "typed_headers",
    "upload_type",
]

OCTETS = "application/octet-stream"
FILENAME_MAX = 255
# What clients send when they did not say what the object is: curl --data-binary sends a form
# type, most libraries octet-stream. Not recorded: the object has no type of its own then.
_UNTYPED = frozenset({OCTETS, "application/x-www-form-urlencoded", "multipart/form-data"})
_TEXT_DEFAULT_CHARSET = ("text/html", "text/css", "text/plain", "text/javascript")


def media_type(text: str, where: str) -> str:
    """``text`` checked as a media type, else 400 ``bad_type`` naming ``where`` it came from."""
    try:
        return index_proto.check_media_type(text)
    except oap.OapError as exc:
        raise GatewayError("bad_type", f"{where}: {exc.detail}") from None


def upload_type(scope: Scope) -> str | None:
    """The type a ``PUT /o`` says its body is (None: none worth recording); 400 if malformed."""
    raw = header(scope, b"content-type")
    if raw is None or not raw.strip():
        return None
    checked = media_type(raw.strip(), "Content-Type")
    return None if checked.partition(";")[0] in _UNTYPED else checked


def name_type(recorded: str | None, name: str) -> str:
    """What a name is served as: its recorded type, else its extension's, else octet-stream."""
    if recorded:
        return recorded
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed is None:
        return OCTETS
    return f"{guessed}; charset=utf-8" if guessed in _TEXT_DEFAULT_CHARSET else guessed


def filename_of(text: str) -> str:
    """A download's filename: 1-255 characters, no control character, slash or backslash."""
    if not 1 <= len(text) <= FILENAME_MAX or any(ord(ch) < 0x20 or ch in '/\\"\x7f' for ch in text):
        raise GatewayError(
            "bad_filename",
            f"filename must be 1-{FILENAME_MAX} characters without a control character, "
            "a quote, a slash or a backslash",
        )
    return text


def download_type(query: dict[str, str]) -> tuple[str, list[tuple[bytes, bytes]]]:
    """``GET /o/{id}``'s type and extra headers from ``?type=`` / ``?filename=`` (neither:
    octet-stream; a filename alone: its extension's type, as an attachment)."""
    extra: list[tuple[bytes, bytes]] = []
    filename = query.get("filename")
    kind = media_type(query["type"], "?type=") if "type" in query else None
    if filename is not None:
        filename = filename_of(filename)
        ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
        quoted = urllib.parse.quote(filename, safe="")
        disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"
        extra.append((b"content-disposition", disposition.encode("ascii")))
        if kind is None:
            kind = name_type("", filename)
    return kind or OCTETS, extra


def typed_headers(kind: str, csp: str) -> list[tuple[bytes, bytes]]:
    """``Content-Type`` (checked), ``nosniff`` always, and the CSP when the type is not bytes."""
    headers = [(b"content-type", kind.encode("ascii")), (b"x-content-type-options", b"nosniff")]
    if csp and kind != OCTETS:
        headers.append((b"content-security-policy", csp.encode("ascii")))
    return headers
