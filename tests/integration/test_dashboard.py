"""The ``/ui`` dashboard in a real browser (headless Chromium through chromium-driver and
selenium): it shows every service, and a service killed through the control plane shows up as a
restart. The test saves a screenshot (``build/ui-dashboard.png``, for the README)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import REPO, http_request, start_node
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration

SCREENSHOT = REPO / "build" / "ui-dashboard.png"


def _browser(url: str) -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = need_tool("chromium", "chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1200,1000")
    service = Service(executable_path=need_tool("chromedriver", "chromium-driver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    driver.get(url)
    return driver


_READ_TABLE = """
const rows = {};
for (const tr of document.querySelectorAll('#services tbody tr')) {
  const cells = {};
  for (const td of tr.querySelectorAll('td')) cells[td.className] = td.textContent;
  rows[cells.name] = cells;
}
return rows;
"""


def _cells(driver: object) -> dict[str, dict[str, str]]:
    """The services table, read in one script run (the page re-renders it every second)."""
    return driver.execute_script(_READ_TABLE)  # type: ignore[attr-defined, no-any-return]


async def _until(driver: object, check: object, what: str, timeout: float = 30) -> object:
    with trio.move_on_after(timeout):
        while True:
            found = await trio.to_thread.run_sync(check, driver)  # type: ignore[arg-type]
            if found:
                return found
            await trio.sleep(0.2)
    raise AssertionError(f"the dashboard did not show {what} within {timeout}s")


async def test_the_dashboard_shows_services_and_a_restart(tmp_path: Path) -> None:
    need_tool("chromium", "chromium")
    with trio.fail_after(120):
        async with start_node(tmp_path) as node:
            host, port = node.admin.removeprefix("http://").rsplit(":", 1)
            page = await trio.to_thread.run_sync(http_request, host, int(port), "GET", "/ui")
            assert page.status == 200
            csp = page.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp and b'<script src="/ui/app.js"' in page.body
            assert b"http" not in page.body.replace(b"http-equiv", b"")  # no CDN, no remote URL

            names = sorted(s["name"] for s in (await node.get("/version")).json()["services"])
            driver = await trio.to_thread.run_sync(_browser, node.admin + "/ui")
            try:

                def all_ready(d: object) -> dict[str, dict[str, str]] | None:
                    rows = _cells(d)
                    ok = sorted(rows) == names and all(r["state"] == "ready" for r in rows.values())
                    return rows if ok else None

                rows = await _until(driver, all_ready, "every service ready")
                old_pid = rows["svc-index"]["pid"]  # type: ignore[index]
                assert (await node.post("/fault/svc-index?fault=kill")).status == 200

                def restarted(d: object) -> dict[str, str] | None:
                    row = _cells(d).get("svc-index", {})
                    done = row.get("restarts") == "1" and row.get("pid") not in ("-", old_pid)
                    return row if done and row.get("state") == "ready" else None

                row = await _until(driver, restarted, "svc-index restarted")
                assert row["crash"] == "signal SIGKILL"  # type: ignore[index]

                def on_timeline(d: object) -> bool:
                    events, dots = d.execute_script(  # type: ignore[attr-defined]
                        "return [document.getElementById('events').textContent,"
                        " document.querySelectorAll('#timeline .dot').length];"
                    )
                    return "ServiceCrashed svc-index" in events and dots >= 1

                await _until(driver, on_timeline, "the crash in the events and on the timeline")
                store = driver.execute_script(  # type: ignore[attr-defined]
                    "return document.getElementById('store-text').textContent;"
                )
                assert "objects" in store

                def dht_panel(d: object) -> str | None:
                    text = d.execute_script(  # type: ignore[attr-defined]
                        "return document.getElementById('dht-text').textContent;"
                    )
                    return text if "contacts" in text and "records held" in text else None

                await _until(driver, dht_panel, "the DHT panel")
                SCREENSHOT.parent.mkdir(exist_ok=True)
                shot = tmp_path / "ui.png"
                assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
                assert shot.stat().st_size > 10_000
                shutil.copyfile(shot, SCREENSHOT)
                logs = driver.get_log("browser")  # type: ignore[attr-defined]
                assert not [e for e in logs if "Content Security Policy" in e["message"]], logs
                # opened after the restart: the timeline still shows it (the node's history)
                head = await trio.to_thread.run_sync(http_request, host, int(port), "HEAD", "/ui")
                assert head.status == 200 and head.body == b""
                await trio.to_thread.run_sync(driver.get, node.admin + "/ui")  # type: ignore[attr-defined]
                await _until(driver, on_timeline, "the earlier crash after a reload of the page")
            finally:
                await trio.to_thread.run_sync(driver.quit)  # type: ignore[attr-defined]
