"""A tiny Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no extra deps).

Chromium reads commands from fd 3 and writes replies and events to fd 4, one
JSON message each, terminated by a NUL byte. A reader thread files replies by
id and keeps every event, so a test can ask afterwards what the page logged or
requested. Used by the browser test of the report; handy for screenshots too.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio"]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Chromium:
    """One headless browser with one page attached (flat session)."""

    def __init__(self, binary: str, width: int = 1400, height: int = 900, timeout: float = 30.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self._replies: dict[int, "queue.Queue[dict]"] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._profile = tempfile.mkdtemp(prefix="ctkd-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # bash puts the pipe ends on fd 3 and 4, where Chromium expects them.
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, binary, *FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        threading.Thread(target=self._read_loop, daemon=True).start()
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.page(f"{domain}.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    # -- protocol -------------------------------------------------------------------
    def _read_loop(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.setdefault(message["id"], queue.Queue())
                    box.put(message)
                else:
                    self.events.append(message)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        with self._lock:
            self._next_id += 1
            msg_id = self._next_id
            box = self._replies.setdefault(msg_id, queue.Queue())
        message = {"id": msg_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            reply = box.get(timeout=self.timeout)
        except queue.Empty:
            raise CDPError(f"no reply to {method} within {self.timeout}s") from None
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def page(self, method: str, **params) -> dict:
        return self.send(method, session=self.session, **params)

    # -- conveniences -----------------------------------------------------------------
    def page_events(self, method: str) -> list[dict]:
        return [e["params"] for e in self.events
                if e.get("method") == method and e.get("sessionId") == self.session]

    def open(self, url: str) -> None:
        before = len(self.page_events("Page.loadEventFired"))
        self.page("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while len(self.page_events("Page.loadEventFired")) == before:
            if time.monotonic() > deadline:
                raise CDPError(f"{url} did not finish loading")
            time.sleep(0.05)

    def evaluate(self, expression: str):
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            f" e.scrollIntoView({{block: 'center', inline: 'center'}});"
            f" const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path, full_page: bool = True, max_height: int | None = None) -> None:
        """PNG of the page from the top: all of it, or up to max_height CSS pixels
        (a full long page takes seconds to rasterise on a small machine)."""
        import base64
        params = {"format": "png"}
        if full_page:
            size = self.page("Page.getLayoutMetrics")["cssContentSize"]
            height = size["height"] if max_height is None else min(size["height"], max_height)
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": height,
                                "scale": 1})
        data = self.page("Page.captureScreenshot", **params)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (CDPError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
