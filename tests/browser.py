"""Drive the system's headless Chromium over the DevTools protocol: open a page, record what it did.

No Playwright: Debian's Chromium and the `websockets` client (already a Prefect dependency) are enough, and
nothing is downloaded. `open_page` reports console errors, uncaught exceptions, JavaScript dialogs (opened,
then dismissed), every request but inline data (a self-contained page makes one: itself), each image's decoded
width, the page's visible text, and saves a screenshot under test-output/screenshots/.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "screenshots"


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


@dataclass
class PageVisit:
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL requested but inline data: the page's own first
    images: list[dict] = field(default_factory=list)  # {"src": ..., "complete": bool, "width": naturalWidth}
    text: str = ""
    overflow: int = 0  # how many pixels the page is wider than the window (0: no sideways scrolling)
    screenshot: Path | None = None


def open_page(page: Path, screenshot_name: str, width: int = 1100, height: int = 1400) -> PageVisit:
    """Load ``page`` (a local HTML file) in headless Chromium and report what happened."""
    binary = chromium()
    if binary is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    # Chromium's helper processes may still write to the profile for a moment after the browser dies.
    with tempfile.TemporaryDirectory(prefix="ablation-chromium-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # its own process group: the browser and every helper it starts
        try:
            return _visit(_devtools_url(process), page.resolve().as_uri(), screenshot_name, width, height)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _devtools_url(process: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    for line in process.stderr:
        if match := re.search(r"DevTools listening on (ws://\S+)", line):
            return match.group(1)
        if time.monotonic() > deadline:
            break
    raise RuntimeError("Chromium did not open its DevTools port")


class _Session:
    """One DevTools session on one page target, synchronous: send a command, wait for its answer, keep events."""

    def __init__(self, socket, session_id: str):
        self.socket, self.session_id, self.ids, self.events = socket, session_id, itertools.count(1), []

    def send(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params,
                                     "sessionId": self.session_id}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event["method"] == method:
                    return event
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            self._event(message)
        raise TimeoutError(method)

    def _event(self, message: dict) -> None:
        if "method" not in message:
            return
        self.events.append(message)
        if message["method"] == "Page.javascriptDialogOpening":  # answer it, or the page blocks
            self.socket.send(json.dumps({"id": next(self.ids), "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": False}, "sessionId": self.session_id}))


def _visit(devtools: str, url: str, screenshot_name: str, width: int, height: int) -> PageVisit:
    from websockets.sync.client import connect

    with connect(devtools, max_size=None) as socket:
        socket.send(json.dumps({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}))
        target = _answer(socket, 1)["targetId"]
        socket.send(json.dumps({"id": 2, "method": "Target.attachToTarget",
                                "params": {"targetId": target, "flatten": True}}))
        session = _Session(socket, _answer(socket, 2)["sessionId"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            session.send(f"{domain}.enable")
        session.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                     mobile=False)
        session.send("Page.navigate", url=url)
        session.wait_for("Page.loadEventFired")
        time.sleep(0.3)  # late console messages
        images = session.send("Runtime.evaluate", returnByValue=True, expression=(
            "Array.from(document.images).map(i => ({src: i.src.slice(0, 60), complete: i.complete, "
            "width: i.naturalWidth}))"))["result"]["value"]
        text = session.send("Runtime.evaluate", returnByValue=True,
                            expression="document.body.innerText")["result"]["value"]
        overflow = session.send("Runtime.evaluate", returnByValue=True, expression=(
            "document.documentElement.scrollWidth - window.innerWidth"))["result"]["value"]
        shot = base64.b64decode(session.send("Page.captureScreenshot", format="png")["data"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{screenshot_name}.png"
    path.write_bytes(shot)
    return replace(_summarise(session.events, images, text, path), overflow=max(0, overflow))


def _answer(socket, message_id: int) -> dict:
    while True:
        message = json.loads(socket.recv(timeout=60))
        if message.get("id") == message_id:
            return message["result"]


def _summarise(events: list[dict], images: list[dict], text: str, screenshot: Path) -> PageVisit:
    visit = PageVisit(images=images, text=text, screenshot=screenshot)
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            visit.console_errors.append(" ".join(str(a.get("value", "")) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            visit.console_errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            visit.console_errors.append(params["entry"].get("text", ""))
        elif method == "Page.javascriptDialogOpening":
            visit.dialogs.append(params.get("message", ""))
        elif method == "Network.requestWillBeSent":
            if not params["request"]["url"].startswith("data:"):
                visit.requests.append(params["request"]["url"])
    return visit


def required() -> bool:
    """CI sets ABLATE_REQUIRE_BROWSER=1 (after installing Chromium): there a missing browser fails the tests."""
    return os.environ.get("ABLATE_REQUIRE_BROWSER") == "1"
