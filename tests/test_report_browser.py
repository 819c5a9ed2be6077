"""The HTML report of a small real study, opened in headless Chromium.

A tiny study runs for real (``run_study`` on the tiny random Llama: four QLoRA trials of a few
steps and the common defaults as baseline); its report is loaded in Debian's chromium, driven over
the DevTools protocol on a pipe (``--remote-debugging-pipe``; no network, no port, no playwright).
The test listens for console messages, exceptions, dialogs and network requests, checks the best
configuration block and every image in the page, and saves a full-page screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from tuner._report import write_study_report
from tuner._study import StudySettings, run_study

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(1)</script>"
PNG_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if CHROMIUM.is_file():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI installs Debian's chromium for the report test")
    pytest.skip(
        f"{CHROMIUM} is not installed (apt-get install chromium) — the report is not opened in a browser"
    )


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``: the browser
    reads commands on fd 3 and writes replies and events on fd 4, each a JSON text ending in NUL."""

    def __init__(self, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the browser's ends above fd 10, so that moving them onto 3 and 4 clobbers nothing
        to_browser_r, from_browser_w = (_above_ten(fd) for fd in (to_browser_r, from_browser_w))
        command = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-quic",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # a tiny Python trampoline moves them onto fds 3 and 4 and becomes chromium (no preexec_fn:
        # it is unsafe with torch's threads; dash cannot redirect fds above 9)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(to_browser_r), str(from_browser_w), *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_browser_r, from_browser_w),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._read_until(lambda m: m.get("id") == self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, event: str) -> dict:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        return self._read_until(lambda m: m.get("method") == event)

    def _read_until(self, wanted) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited (status {self.process.poll()})")
                self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)


_TRAMPOLINE = (
    "import os, sys\n"
    "read, write = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.dup2(read, 3); os.dup2(write, 4); os.close(read); os.close(write)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def _above_ten(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def open_page(html: Path, screenshot: Path, profile: Path) -> dict[str, Any]:
    """Load ``html``, return what the page showed and logged, and save a full-page screenshot."""
    browser = DevTools(profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.send("Page.navigate", {"url": html.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        checks = browser.send(
            "Runtime.evaluate",
            {"expression": PAGE_CHECKS, "returnByValue": True, "awaitPromise": True},
            session=session,
        )["result"]["value"]
        height = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"]
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        events = list(browser.events)
    finally:
        browser.close()
    return {"checks": checks, "events": events}


# Runs in the page: what a person would see (text of the answer, every image decoded and drawn).
PAGE_CHECKS = """
(async () => {
  const images = [...document.images];
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  const text = id => (document.getElementById(id) || {}).innerText || "";
  return {
    title: document.title,
    heading: document.querySelector("h1").innerText,
    scripts: document.scripts.length,
    bestConfig: text("best-config"),
    trainCommand: text("train-command"),
    answer: text("answer"),
    images: images.map(img => ({
      alt: img.alt, width: img.naturalWidth, height: img.naturalHeight,
      shown: img.getBoundingClientRect().width,
      plot: (img.closest(".plot") || {}).id || null,
    })),
    plots: [...document.querySelectorAll(".plot")].map(p => p.id),
    rows: document.querySelectorAll("table.leaderboard tbody tr").length,
    overflowing: document.documentElement.scrollWidth > document.documentElement.clientWidth,
    wideTables: [...document.querySelectorAll(".table-wrap")]
      .filter(wrap => wrap.scrollWidth > wrap.clientWidth + 1).map(wrap => wrap.parentElement.id),
  };
})()
"""


def problems(events: list[dict[str, Any]], page: str) -> list[str]:
    """Console errors and warnings, uncaught exceptions, dialogs, and any request but the page."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            found.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            found.append(f"log {params['entry']['level']}: {params['entry'].get('text')}")
        elif method == "Page.javascriptDialogOpening":
            found.append(f"dialog: {params.get('message')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != page and not url.startswith("data:"):
                found.append(f"request: {url}")
        elif method == "Network.loadingFailed":
            found.append(f"failed load: {params.get('errorText')}")
    return found


def load_cleanly(html: Path, screenshot: Path, profile: Path, *, keep_as: str) -> dict[str, Any]:
    """Open the page, fail on any console error, exception, dialog or request, and return what the
    page showed. With ``$REPORT_SCREENSHOT_DIR`` set, the screenshot is also kept there."""
    seen = open_page(html, screenshot, profile)
    keep = os.environ.get("REPORT_SCREENSHOT_DIR")
    if keep:
        shutil.copy(screenshot, Path(keep) / keep_as)
    assert problems(seen["events"], html.resolve().as_uri()) == []
    return seen["checks"]


@pytest.fixture(scope="module")
def real_study(tmp_path_factory) -> tuple[Any, Path, str]:
    """Four real QLoRA trials on the tiny Llama (CPU NF4 emulation), with the common defaults."""
    folder = tmp_path_factory.mktemp("browser-study")
    space = folder / "qlora-small.yaml"
    space.write_text(
        "extends: qlora\n"
        "params:\n"
        "  effective_batch_size: {kind: fixed, value: 4, source: test}\n"
        "defaults:\n"
        "  values: {effective_batch_size: 4}\n"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_study(
            StudySettings(
                method="qlora",
                model="tiny-llama",
                max_examples=48,
                n_trials=4,
                max_steps=4,
                eval_every=2,
                eval_examples=8,
                space=space,
                out=folder / "study",
                baseline=True,
                study_name=f"tiny {EVIL}",
            )
        )
    finally:
        torch.set_num_threads(threads)
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    return study, folder / "study", result.storage


def test_the_report_of_a_real_study_opens_cleanly_in_chromium(real_study, tmp_path) -> None:
    study, folder, storage = real_study
    paths = write_study_report(study, folder, storage_url=storage)
    html_path = folder / "report.html"
    assert html_path in paths
    html = html_path.read_text(encoding="utf-8")

    # every inline image decodes to a real picture
    pngs = [Image.open(io.BytesIO(base64.b64decode(p, validate=True))) for p in PNG_URI.findall(html)]
    assert len(pngs) >= 5
    for image in pngs:
        image.load()
        assert image.width >= 300 and image.height >= 100
        assert len(set(image.getdata())) > 4, "an image with something drawn on it"

    screenshot = tmp_path / "report.png"
    page = load_cleanly(html_path, screenshot, tmp_path / "profile", keep_as="study_report.png")
    # the study name with a <script> in it is shown as text and nothing ran
    assert page["scripts"] == 0
    assert page["title"] == f"Tuning report: tiny {EVIL}"
    assert page["heading"] == f"Tuning report: tiny {EVIL}"
    # the answer: the loss, the configuration to paste and the command
    best = study.best_trial
    assert f"{best.value:.4f}" in page["answer"]
    for call in ("TrainingArguments(", "LoraConfig(", "BitsAndBytesConfig("):
        assert call in page["bestConfig"]
    assert page["trainCommand"] == "tune train --config best_config.yaml"
    # every plot is there, and every image in the page decoded and is shown
    plots = {image["plot"] for image in page["images"] if image["plot"]}
    assert {"plot-history", "plot-curves", "plot-slices", "plot-parallel"} <= plots
    assert len(page["images"]) == len(pngs)
    for image in page["images"]:
        assert image["width"] > 0 and image["height"] > 0 and image["shown"] > 0, image
    assert page["rows"] == len(study.trials)
    assert not page["overflowing"], "nothing wider than the window"
    assert page["wideTables"] == [], "no table needs scrolling sideways"

    shot = Image.open(screenshot)
    assert shot.width == 1280 and shot.height > 3000


def test_the_browser_check_sees_errors_on_a_broken_page(tmp_path) -> None:
    """The check above would notice: a console error and an uncaught exception are reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><title>broken</title><h1>broken</h1>"
        '<script>console.error("boom"); notDefinedAnywhere();</script>'
    )
    seen = open_page(page, tmp_path / "broken.png", tmp_path / "profile")
    found = problems(seen["events"], page.resolve().as_uri())
    assert any(f.startswith("console.error") and "boom" in f for f in found), found
    assert any(f.startswith("exception") for f in found), found
    assert seen["checks"]["scripts"] == 1


def test_a_hundred_trial_report_stays_readable_in_chromium(tmp_path) -> None:
    """A 100-trial study (synthetic curves): loads cleanly, every row and image is there, and the
    leaderboard fits the page without scrolling sideways."""
    from tests.test_study_report import synthetic_study

    write_study_report(synthetic_study(100), tmp_path / "study", formats=("html",))
    html_path = tmp_path / "study" / "report.html"
    shot = tmp_path / "report.png"
    page = load_cleanly(html_path, shot, tmp_path / "profile", keep_as="study_report_100.png")
    assert page["rows"] == 100 and page["scripts"] == 0
    assert {"plot-history", "plot-curves", "plot-importance", "plot-slices", "plot-parallel"} <= {
        image["plot"] for image in page["images"]
    }
    assert all(image["width"] > 0 and image["shown"] > 0 for image in page["images"])
    assert not page["overflowing"] and page["wideTables"] == []
