"""Debian's chromium for the real-browser tests: where it is, how it is started, and a small DevTools client.

The client speaks the Chrome DevTools Protocol over a websocket (the ``websockets`` package) to a headless chromium
started here from ``/usr/bin/chromium`` — no browser is ever downloaded. It does what the tests need and no more:
navigate, evaluate JavaScript, press keys and type, emulate a viewport, take a screenshot, and record the requests,
console errors and uncaught exceptions the page produced.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Flags that work as root in a container with no display and no network but loopback."""

START_TIMEOUT_S = 30.0


def requires_chromium() -> pytest.MarkDecorator:
    """Skip where chromium is absent, except in CI, which must have installed it (see .ci/run)."""
    if CHROMIUM is None and os.environ.get("CI"):
        pytest.fail("CI must install Debian's chromium (see .ci/run)", pytrace=False)
    return pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it)")


class DevToolsError(RuntimeError):
    """A DevTools command failed, or a page script threw."""


KEYS: dict[str, dict[str, Any]] = {
    "Tab": {"key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9},
    "Enter": {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"},
    "Space": {"key": " ", "code": "Space", "windowsVirtualKeyCode": 32, "text": " "},
}
"""The named keys the tests press, as ``Input.dispatchKeyEvent`` describes them."""


class Chromium:
    """A headless chromium with one page, driven over the DevTools protocol; a context manager."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="jacspec-chromium-")
        profile = Path(self._profile.name)
        self._log = (profile / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            [
                executable,
                *FLAGS,
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,  # its own process group: close() ends its helper processes too
        )
        self._ids = itertools.count(1)
        self._closing = ExitStack()
        self.events: list[dict[str, Any]] = []
        try:
            address = self._page_socket(profile)
            self._socket = self._closing.enter_context(connect(address, max_size=None, open_timeout=START_TIMEOUT_S))
            for domain in ("Page", "Runtime", "Network", "Log"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setFocusEmulationEnabled", enabled=True)
        except BaseException:
            self.close()
            raise

    def _page_socket(self, profile: Path) -> str:
        """The page's websocket address, once chromium has written its DevTools port into the profile."""
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise DevToolsError(f"chromium exited: {(profile / 'stderr.log').read_text(errors='replace')[-2000:]}")
            if active.exists() and len(lines := active.read_text().split()) >= 2:
                targets = httpx.get(f"http://127.0.0.1:{lines[0]}/json/list", timeout=5).json()
                pages = [t for t in targets if t["type"] == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            if time.monotonic() > deadline:
                raise DevToolsError("chromium did not open its DevTools port")
            time.sleep(0.05)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket, end chromium (this process only) and remove its profile."""
        self._closing.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        # The browser's helpers (renderer, GPU, crashpad) outlive it and may still be writing into the profile,
        # which would make removing it fail ("Directory not empty"): end the whole group first.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._log.close()
        self._profile.cleanup()

    # ------------------------------------------------------------ the protocol

    def call(self, method: str, wait_s: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its result within ``wait_s``; events meanwhile are kept in ``events``."""
        ident = next(self._ids)
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + wait_s
        while True:
            message = json.loads(self._socket.recv(timeout=max(deadline - time.monotonic(), 0.001)))
            if message.get("id") == ident:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} is still {value!r} after {timeout} s")
            time.sleep(0.05)

    def navigate(self, url: str, wait_s: float = 30.0) -> None:
        """Load ``url`` and wait for its load event (the page may rewrite its own address by then)."""
        start = len(self.events)
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + wait_s
        while not any(event["method"] == "Page.loadEventFired" for event in self.events[start:]):
            message = json.loads(self._socket.recv(timeout=max(deadline - time.monotonic(), 0.001)))
            if "method" in message:
                self.events.append(message)

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Emulate a screen of ``width`` × ``height`` CSS pixels (a phone's with ``mobile``)."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    # ------------------------------------------------------------ the keyboard

    def press(self, name: str, *, shift: bool = False) -> None:
        """Press and release a named key of ``KEYS``."""
        key = KEYS[name]
        modifiers = 8 if shift else 0
        self.call("Input.dispatchKeyEvent", type="keyDown", modifiers=modifiers, **key)
        self.call(
            "Input.dispatchKeyEvent", type="keyUp", modifiers=modifiers, **{k: key[k] for k in key if k != "text"}
        )

    def type(self, text: str) -> None:
        """Type ``text`` one character at a time, as key presses."""
        for char in text:
            self.call("Input.dispatchKeyEvent", type="keyDown", key=char, text=char, unmodifiedText=char)
            self.call("Input.dispatchKeyEvent", type="keyUp", key=char)

    def select_all(self) -> None:
        """Ctrl+A in the focused field."""
        key: dict[str, Any] = {"key": "a", "code": "KeyA", "windowsVirtualKeyCode": 65, "modifiers": 2}
        self.call("Input.dispatchKeyEvent", type="keyDown", commands=["selectAll"], **key)
        self.call("Input.dispatchKeyEvent", type="keyUp", **key)

    def tab_to(self, element_id: str, limit: int = 20) -> int:
        """Press Tab until the element with this id has the focus; the number of presses."""
        for presses in range(1, limit + 1):
            self.press("Tab")
            if self.evaluate("document.activeElement && document.activeElement.id") == element_id:
                return presses
        raise AssertionError(f"#{element_id} was not reached in {limit} presses of Tab")

    # ------------------------------------------------------------ what the page did

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the whole page (beyond the viewport) at ``path``."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def requested_urls(self) -> list[str]:
        """Every URL the page asked for since the browser started."""
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def posted(self, url: str) -> list[Any]:
        """The JSON bodies of the POSTs to ``url``, in order."""
        bodies = []
        for event in self.events:
            request = event["params"].get("request", {})
            if event["method"] == "Network.requestWillBeSent" and request["method"] == "POST" and request["url"] == url:
                if "postData" in request:
                    bodies.append(json.loads(request["postData"]))
                else:
                    data = self.call("Network.getRequestPostData", requestId=event["params"]["requestId"])["postData"]
                    bodies.append(json.loads(data))
        return bodies

    def exceptions(self) -> list[str]:
        """Uncaught exceptions and console errors of the page's scripts, and security (CSP) violations."""
        found = []
        for event in self.events:
            params = event["params"]
            if event["method"] == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"]))
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in {"error", "assert"}:
                found.append(str(params["args"]))
            elif event["method"] == "Log.entryAdded" and params["entry"]["source"] == "security":
                found.append(str(params["entry"]["text"]))
        return found
