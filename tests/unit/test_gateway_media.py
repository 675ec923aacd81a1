"""Media types and content by name (issue 30): what an upload says it is, ``/n/{name}`` serving a
site with its types, typed downloads of ``/o/{id}``, and hostile names that must never be a 500.

The gateway app over the in-memory backend (``tests.support.gateway_fakes``); the same routes on
a real node: ``tests/integration/test_site_node.py``."""

from __future__ import annotations

import json

import trio

from services.gateway.settings import HTML_CSP
from tests.support.gateway_fakes import b3, serve


def error_of(resp) -> str:  # type: ignore[no-untyped-def]
    return str(resp.json()["error"])


async def test_an_uploaded_type_follows_the_object_into_its_names() -> None:
    page = b"<!doctype html><title>hi</title>"
    with trio.fail_after(20):
        async with serve() as gw:
            put = await gw.req("PUT", "/o", page, Content_Type="Text/HTML; charset=utf-8")
            assert put.status == 201
            assert put.json() == {
                "id": b3(page),
                "size": len(page),
                "type": "text/html; charset=utf-8",
            }
            named = await gw.req(
                "PUT", "/names/site/index.html", json.dumps({"id": b3(page)}).encode()
            )
            assert named.json()["type"] == "text/html; charset=utf-8"
            got = await gw.req("GET", "/n/site/")  # a trailing slash serves index.html
            assert got.status == 200 and got.body == page
            assert got.headers["content-type"] == "text/html; charset=utf-8"
            assert got.headers["x-content-type-options"] == "nosniff"
            assert got.headers["content-security-policy"] == HTML_CSP
            assert got.headers["etag"] == f'"{b3(page)}"'
            assert got.headers["cache-control"] == "public, max-age=60"
            moved = await gw.req("GET", "/n/site")  # so the page's relative links resolve
            assert moved.status == 301 and moved.headers["location"] == "/n/site/"
            head = await gw.req("HEAD", "/n/site/index.html")
            assert head.status == 200 and head.body == b""
            assert head.headers["content-length"] == str(len(page))
            part = await gw.req("GET", "/n/site/index.html", Range="bytes=0-8")
            assert part.status == 206 and part.body == page[:9]
            cached = await gw.req("GET", "/n/site/", If_None_Match=f'"{b3(page)}"')
            assert cached.status == 304


async def test_a_name_without_a_type_is_served_by_its_extension_else_as_bytes() -> None:
    text, blob = b"plain words", b"\x00\x01\x02"
    with trio.fail_after(20):
        async with serve() as gw:
            # curl --data-binary's default form type says nothing about the object: not recorded
            put = await gw.req("PUT", "/o", text, Content_Type="application/x-www-form-urlencoded")
            assert put.status == 201 and "type" not in put.json()
            await gw.put(blob)
            for name, obj in (("docs/readme.txt", text), ("docs/blob", blob)):
                body = json.dumps({"id": b3(obj)}).encode()
                named = await gw.req("PUT", f"/names/{name}", body)
                assert named.json() == {"name": name, "id": b3(obj), "version": 1}  # no "type"
            readme = await gw.req("GET", "/n/docs/readme.txt")
            assert readme.headers["content-type"] == "text/plain; charset=utf-8"
            raw = await gw.req("GET", "/n/docs/blob")
            assert raw.headers["content-type"] == "application/octet-stream"
            assert "content-security-policy" not in raw.headers
            # a name's own type wins over its extension
            body = json.dumps({"id": b3(text), "type": "text/markdown"}).encode()
            await gw.req("PUT", "/names/docs/readme.txt", body)
            again = await gw.req("GET", "/n/docs/readme.txt")
            assert again.headers["content-type"] == "text/markdown"


async def test_objects_by_id_stay_bytes_unless_a_type_or_a_download_is_asked() -> None:
    page = b"<p>x</p>"
    oid = b3(page)
    with trio.fail_after(20):
        async with serve() as gw:
            await gw.req("PUT", "/o", page, Content_Type="text/html")
            plain = await gw.req("GET", f"/o/{oid}")
            assert plain.headers["content-type"] == "application/octet-stream"
            assert plain.headers["x-content-type-options"] == "nosniff"
            typed = await gw.req("GET", f"/o/{oid}?type=text/html")
            assert typed.headers["content-type"] == "text/html"
            assert typed.headers["content-security-policy"] == HTML_CSP
            download = await gw.req("GET", f"/o/{oid}?filename=r%C3%A9sum%C3%A9.pdf")
            assert download.headers["content-type"] == "application/pdf"
            assert download.headers["content-disposition"] == (
                "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
            )
            for query, reason in (
                ("type=text", "bad_type"),
                ("type=text/html%0d%0aSet-Cookie:%20x=1", "bad_type"),
                ("filename=a/b.txt", "bad_filename"),
                ("filename=", "bad_filename"),
                ("filename=" + "a" * 256, "bad_filename"),
            ):
                bad = await gw.req("GET", f"/o/{oid}?{query}")
                assert (bad.status, error_of(bad)) == (400, reason), query


async def test_a_malformed_content_type_is_refused_before_the_body() -> None:
    with trio.fail_after(20):
        async with serve(h11=True) as gw:  # the node's server: 100 Continue only when read
            answer = await gw.raw(
                b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Type: not a type\r\n"
                b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.1 400"), answer
            bad_name_type = await gw.req(
                "PUT", "/names/x", json.dumps({"id": b3(b"x"), "type": "html"}).encode()
            )
            assert (bad_name_type.status, error_of(bad_name_type)) == (400, "bad_type")
            assert gw.backend.objects == {} and gw.backend.names == {}


async def test_hostile_names_are_a_404_with_a_reason_never_a_500() -> None:
    with trio.fail_after(30):
        async with serve() as gw:
            for path in (
                "/n/..",
                "/n/a/../b",
                "/n/a//b",
                "/n/%00",
                "/n/a%00b",
                "/n/" + "a" * 4096,
                "/n/%ff%fe",
                "/n/%2e%2e/%2e%2e/etc/passwd",
                "/n/a\\b",
                "/n/no/such/page.html",
            ):
                resp = await gw.req("GET", path)
                assert resp.status == 404 and error_of(resp) == "no_name", path
                assert "detail" in resp.json()
            empty = await gw.req("GET", "/n/")
            assert empty.status == 404
