"""Headless Chromium over ``--remote-debugging-pipe``: a real browser with no driver library.

The DevTools protocol over a pipe is NUL-separated JSON on file descriptors 3 (commands in)
and 4 (replies out), so the standard library is enough: no websocket client, no selenium, no
playwright download. Used by the report's browser test and its benchmark.

>>> with Browser() as b:                                   # doctest: +SKIP
...     b.open("file:///tmp/x/index.html")
...     b.eval("document.title")
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe")


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """Path of a Chromium binary (Debian's ``chromium`` first), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page; ``open`` a URL, ``eval`` JavaScript, ``screenshot``."""

    def __init__(self, executable: str | None = None, width: int = 1400, height: int = 1000,
                 timeout: float = 30.0):
        exe = executable or find_chromium()
        if not exe:
            raise BrowserError("no chromium found: apt-get install -y chromium")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="risbench-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self._proc = self._spawn(exe, width, height, to_child_r, from_child_w)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self._session: str | None = None
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()  # never leave a browser behind
            raise

    def _spawn(self, exe: str, width: int, height: int, read_fd: int, write_fd: int) -> subprocess.Popen:
        args = [exe, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"]

        def fds() -> None:  # in the child: the pipe ends become fds 3 and 4 (via high fds, so
            r = fcntl.fcntl(read_fd, fcntl.F_DUPFD, 100)  # neither overwrites the other)
            w = fcntl.fcntl(write_fd, fcntl.F_DUPFD, 100)
            os.dup2(r, 3)
            os.dup2(w, 4)
            os.close(r)
            os.close(w)

        # close_fds=False keeps the new 3 and 4; every other fd of ours is close-on-exec (PEP 446)
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=fds, close_fds=False)

    # ------------------------------------------------------------------ protocol
    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply (events in between are dropped)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session and not method.startswith("Target."):
            msg["sessionId"] = self._session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium exited")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    # ------------------------------------------------------------------ page helpers
    def eval(self, expression: str, await_promise: bool = True) -> Any:
        """Evaluate JavaScript in the page and return its value (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": await_promise,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"javascript error: {text}")
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'")

    def wait_for(self, condition: str, timeout: float | None = None) -> float:
        """Poll a JavaScript condition until true; returns the seconds waited."""
        start = time.monotonic()
        deadline = start + (timeout or self.timeout)
        while time.monotonic() < deadline:
            if self.eval(f"!!({condition})"):
                return time.monotonic() - start
            time.sleep(0.02)
        raise BrowserError(f"timed out waiting for: {condition}")

    def screenshot(self, path: Path | str) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        out = Path(path)
        out.write_bytes(base64.b64decode(data))
        return out

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
