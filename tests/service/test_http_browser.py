"""The console in a real browser: headless Chromium, driven over the WebDriver protocol.

A live server and a live worker (both subprocesses), Debian's chromedriver on loopback, and
httpx speaking WebDriver to it (no client library needed). The browser signs in with an admin
token through the login form, a deletion is submitted through the API, and the browser watches
the console until the request shows COMPLETED, opens its page (receipt verified) and saves a
screenshot (in the test's tmp dir, and in ``$RECFORGET_TEST_ARTIFACTS`` when set).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _http_live import CLI, GROUND, free_port, httpx, make_home, start_server, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="Debian's chromium and chromium-driver are not installed "
    "(`bash .ci/chromium.sh` installs them as root; .ci/run does)",
)


class WebDriver:
    """The few WebDriver commands the test needs, over HTTP."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=60)
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",  # CI runs as root
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1400",
                ],
            },
        }
        r = self.http.post("/session", json={"capabilities": {"alwaysMatch": caps}})
        assert r.status_code == 200, r.text
        self.sid = r.json()["value"]["sessionId"]

    def cmd(self, method: str, path: str, body: dict | None = None):
        r = self.http.request(method, f"/session/{self.sid}{path}", json=body)
        assert r.status_code == 200, (path, r.text)
        return r.json()["value"]

    def go(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def wait_url(self, ok, timeout: float = 30.0) -> str:
        """The page's URL once ``ok(url)`` holds: a click returns before the navigation it
        starts has finished, so the URL is polled rather than read once."""
        deadline = time.time() + timeout
        while True:
            url = self.cmd("GET", "/url")
            if ok(url):
                return url
            assert time.time() < deadline, f"still at {url} after {timeout:.0f} s"
            time.sleep(0.1)

    def find(self, css: str) -> str | None:
        r = self.http.post(
            f"/session/{self.sid}/element", json={"using": "css selector", "value": css}
        )
        return r.json()["value"][ELEMENT] if r.status_code == 200 else None

    def text(self, css: str) -> str | None:
        el = self.find(css)
        return None if el is None else self.cmd("GET", f"/element/{el}/text")

    def close(self) -> None:
        self.http.delete(f"/session/{self.sid}")
        self.http.close()


def test_console_shows_a_deletion_move_to_completed(tmp_path, tiny_model):
    home, url, _ = make_home(tmp_path, "sqlite", tiny_model)
    live = start_server(home, url)
    procs = []
    try:
        wlog = open(tmp_path / "worker.log", "wb")
        procs.append(
            subprocess.Popen(
                [*CLI, "service", "worker", "--home", str(home), "--window", "0"],
                stdout=wlog,
                stderr=subprocess.STDOUT,
            )
        )
        port = free_port()
        procs.append(
            subprocess.Popen(
                [DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        wd_base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(wd_base + "/status", timeout=1).json()["value"]["ready"]:
                    break
            except (httpx.TransportError, ValueError, KeyError):
                pass
            assert time.time() < deadline, "chromedriver did not start"
            time.sleep(0.1)
        wd = WebDriver(wd_base)
        try:
            wd.go(live.base + "/console")  # not signed in: sent to the login form
            assert wd.cmd("GET", "/url").endswith("/console/login")
            field = wd.find("#token")
            wd.cmd("POST", f"/element/{field}/value", {"text": live.tokens["admin"]})
            wd.cmd("POST", f"/element/{wd.find('#signin')}/click", {})
            wd.wait_url(lambda u: u == live.base + "/console")
            with live.client("crm") as api:
                r = api.post(
                    "/v1/deletions",
                    json={"users": ["u15"], "legal_ground": GROUND},
                    headers={"Idempotency-Key": "browser-1"},
                )
                assert r.status_code == 202, r.text
                rid = r.json()["request_id"]
            seen = []
            deadline = time.time() + 90
            while True:
                wd.go(live.base + "/console")
                state = wd.text(f"#open #req-{rid} .state") or wd.text(f"#req-{rid} .state")
                if not seen or seen[-1] != state:
                    seen.append(state)
                if state == "COMPLETED":
                    break
                assert time.time() < deadline, f"request stuck; states seen {seen}"
                time.sleep(0.3)
            assert set(seen) <= {"DATA_DELETED", "BUILDING", "STAGED", "COMPLETED"}, seen
            assert wd.find("#latency-chart") is not None
            wd.cmd("POST", f"/element/{wd.find(f'#req-{rid} a')}/click", {})
            wd.wait_url(lambda u: u.endswith(f"/console/requests/{rid}"))
            assert "Receipt verified" in wd.text("#receipt-status")
            assert "completed" in wd.text("#timeline")
            png = base64.b64decode(wd.cmd("GET", "/screenshot"))
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
            (tmp_path / "console-completed.png").write_bytes(png)
            if os.environ.get("RECFORGET_TEST_ARTIFACTS"):
                out = Path(os.environ["RECFORGET_TEST_ARTIFACTS"])
                out.mkdir(parents=True, exist_ok=True)
                (out / "console-completed.png").write_bytes(png)
        finally:
            wd.close()
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        stop_server(live)
