"""A website on a node, the way README's demo publishes it (issue 30), in a real browser
(headless Chromium through chromium-driver and selenium, like the dashboard's test).

- ``ronctl put examples/site --name site/`` on a real micronode; ``/n/site/`` renders with its
  stylesheet and its picture, its link leads to the next page; the screenshot is saved as
  ``build/site-demo.png`` (for the README);
- a stored page cannot act on the gateway's origin: with the default ``html_csp`` its script
  never runs (no cookie read, no write with the token written into it); the same page on a
  node with ``html_csp = ""`` does both, so the test can tell.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.integration.test_dashboard import _browser, _until
from tests.integration.test_gateway_node import profile_with
from tests.support.gateway_fakes import b3
from tests.support.node_harness import REPO, http_request, start_node
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration

SITE = REPO / "examples" / "site"
SCREENSHOT = REPO / "build" / "site-demo.png"

_LOOK = """
const logo = document.getElementById('logo');
return [document.title, logo ? logo.naturalWidth : -1,
        getComputedStyle(document.querySelector('h1')).color];
"""


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def test_the_site_demo_publishes_and_renders(tmp_path: Path) -> None:
    need_tool("chromium", "chromium")
    with trio.fail_after(120):
        async with start_node(tmp_path) as node:
            done = await node.ronctl("put", str(SITE), "--name", "site/", "--json")
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            names = {row["name"]: row for row in report["files"]}
            assert set(names) == {
                "site/index.html",
                "site/about.html",
                "site/style.css",
                "site/img/onion.png",
            }
            assert names["site/img/onion.png"]["type"] == "image/png"
            png = (SITE / "img" / "onion.png").read_bytes()
            assert names["site/img/onion.png"]["id"] == b3(png)

            gateway = node.ready_line["gateway"]
            driver = await trio.to_thread.run_sync(_browser, gateway + "/n/site/")
            try:

                def rendered(d: object) -> list[object] | None:
                    look = d.execute_script(_LOOK)  # type: ignore[attr-defined]
                    return look if look[1] == 96 else None

                title, width, color = await _until(driver, rendered, "the page and its picture")  # type: ignore[misc]
                assert title == "Hello from a RustyOnions node" and width == 96
                assert color == "rgb(108, 52, 131)"  # style.css applied
                shot = tmp_path / "site.png"
                assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
                assert shot.stat().st_size > 10_000
                SCREENSHOT.parent.mkdir(exist_ok=True)
                shutil.copyfile(shot, SCREENSHOT)
                link = driver.find_element("link text", "About this page")  # type: ignore[attr-defined]
                await trio.to_thread.run_sync(link.click)

                def about(d: object) -> bool:
                    return d.title == "About"  # type: ignore[attr-defined, no-any-return]

                await _until(driver, about, "the linked page")
                logs = driver.get_log("browser")  # type: ignore[attr-defined]
                assert not [e for e in logs if e["level"] == "SEVERE"], logs
            finally:
                await trio.to_thread.run_sync(driver.quit)  # type: ignore[attr-defined]


def _evil_page(token: str) -> bytes:
    """A page that, if its script ran, would show the gateway's cookies in its title and store
    an object (and a name) with the token written into it."""
    return f"""<!doctype html><html><head><title>evil</title></head><body>
<img src="data:," onerror="document.title += ' inline ran'">
<script>
let seen = 'none';
try {{ seen = document.cookie; }} catch (e) {{ seen = 'blocked'; }}
document.title = 'ran, cookies: ' + seen;
const auth = {{'Authorization': 'Bearer {token}'}};
fetch('/o', {{method: 'PUT', body: 'written by a stored page', headers: auth}})
  .then(r => {{ document.title += ' put ' + r.status; }})
  .catch(e => {{ document.title += ' put failed'; }});
</script></body></html>""".encode()


async def _visit_evil_page(gateway: str, token: str, settled: Callable[[str], bool]) -> str:
    """Store the page under the name ``evil.html``, give the gateway's origin a cookie, open
    the page; returns its title once ``settled`` accepts it (the page loaded: an inline script
    would have run by then; its fetch's answer comes later)."""
    host, port = _host_port(gateway)
    auth = {"Authorization": f"Bearer {token}"}
    page = _evil_page(token)
    put = await trio.to_thread.run_sync(http_request, host, port, "PUT", "/o", page, auth)
    assert put.status == 201, put.body
    body = json.dumps({"id": b3(page)}).encode()
    named = await trio.to_thread.run_sync(
        http_request, host, port, "PUT", "/names/evil.html", body, auth
    )
    assert named.status == 200, named.body
    driver = await trio.to_thread.run_sync(_browser, gateway + "/names")
    try:
        driver.add_cookie({"name": "session", "value": "secret-session"})  # type: ignore[attr-defined]
        await trio.to_thread.run_sync(driver.get, gateway + "/n/evil.html")  # type: ignore[attr-defined]

        def title(d: object) -> str | None:
            text = str(d.title)  # type: ignore[attr-defined]
            return text if settled(text) else None

        return str(await _until(driver, title, "the stored page to settle"))
    finally:
        await trio.to_thread.run_sync(driver.quit)  # type: ignore[attr-defined]


def _without_csp(tmp_path: Path) -> Path:
    path = profile_with(tmp_path, "micronode")
    text = path.read_text()
    head, sep, tail = text.partition('name = "svc-gateway"')
    tail = tail.replace("[services.settings]\n", '[services.settings]\nhtml_csp = ""\n', 1)
    path.write_text(head + sep + tail)
    return path


async def test_a_stored_page_cannot_read_cookies_or_write_through_the_gateway(
    tmp_path: Path,
) -> None:
    need_tool("chromium", "chromium")
    written = b3(b"written by a stored page")
    with trio.fail_after(150):
        async with start_node(tmp_path) as node:
            token = await node.mint(ops=["put", "name"], ttl=600)
            gateway = node.ready_line["gateway"]
            title = await _visit_evil_page(gateway, token, lambda t: t != "")
            assert title == "evil"  # no script, no inline handler ran
            host, port = _host_port(gateway)
            probe = await trio.to_thread.run_sync(http_request, host, port, "GET", f"/o/{written}")
            assert probe.status == 404  # and nothing was written

        # the control: the same page where the gateway sends no CSP does both
        control = tmp_path / "control"
        control.mkdir()
        async with start_node(control, str(_without_csp(control))) as node:
            token = await node.mint(ops=["put", "name"], ttl=600)
            title = await _visit_evil_page(
                node.ready_line["gateway"], token, lambda t: " put " in t and "inline ran" in t
            )
            assert "secret-session" in title and "put 201" in title and "inline ran" in title, title
