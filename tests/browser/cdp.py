"""A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (stdlib only).

Enough to open a page in a fresh tab, record the page's own network requests
(Network.requestWillBeSent on that tab: browser-internal traffic such as the
component updater is not the page's and does not appear there), read the DOM
and take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path


def _install_pipe_fds(r_in: int, w_out: int) -> None:
    """In the child: Chromium reads commands on fd 3 and writes on fd 4."""
    import fcntl

    a = fcntl.fcntl(r_in, fcntl.F_DUPFD, 10)  # move out of the way first: r_in/w_out may be 3 or 4
    b = fcntl.fcntl(w_out, fcntl.F_DUPFD, 10)
    os.dup2(a, 3)
    os.dup2(b, 4)


class Chrome:
    def __init__(self, binary: str, flags: list[str], profile: Path):
        r_in, w_in = os.pipe()  # we write commands -> chrome reads fd 3
        r_out, w_out = os.pipe()  # chrome writes fd 4 -> we read
        self.proc = subprocess.Popen(
            [binary, *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(r_in, w_out, 3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _install_pipe_fds(r_in, w_out),
        )
        os.close(r_in)
        os.close(w_out)
        self._w = os.fdopen(w_in, "wb", buffering=0)
        self._r = os.fdopen(r_out, "rb", buffering=0)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = self._r.read(65536)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read_message(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def open_page(self, url: str, width: int = 1280, height: int = 2000, init_script: str | None = None) -> str:
        """Load ``url`` in a new tab with its Network domain recording; return the tab's session id.

        ``init_script`` runs in the page before any of its own content (it is not subject to the page's CSP)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Network.enable", session=session)
        self.send("Page.enable", session=session)
        if init_script:
            self.send("Page.addScriptToEvaluateOnNewDocument", {"source": init_script}, session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired")
        time.sleep(0.5)  # let any late request surface
        return session

    def requests(self, session: str) -> list[str]:
        """URLs the tab asked for (Network.requestWillBeSent on that tab)."""
        return [m["params"]["request"]["url"] for m in self.events
                if m.get("method") == "Network.requestWillBeSent" and m.get("sessionId") == session]

    def evaluate(self, session: str, expression: str):
        """Run JavaScript in the page and return its (JSON-able) value."""
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, session: str, full_page: bool = False, max_height: int = 16000) -> bytes:
        params: dict = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height),
                                "scale": 1})
        return base64.b64decode(self.send("Page.captureScreenshot", params, session=session)["data"])

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
