"""The report of real runs, end to end.

* Opened in headless Chromium (Debian's package) over the DevTools protocol: no console errors,
  every plot decoded with a nonzero size, tables present and sortable, nothing fetched from the
  network. The screenshot is kept as a test artefact (``$C3_TEST_ARTIFACTS``).
* A DICOM cohort whose PatientName and PatientID are set: neither string appears in any byte of
  any output file, any file name, or the commands' logs.

Chromium is found on PATH (or ``$C3_CHROMIUM``); if it is missing and the tests run as root on a
Debian-like system, the fixture installs it with ``apt-get install -y chromium`` (set
``C3_NO_APT=1`` to forbid that). When it cannot be had, the browser test skips and says why.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import run_c3

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_chromium() -> str | None:
    for name in (os.environ.get("C3_CHROMIUM"), *CHROMIUM_NAMES):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path to a Chromium binary, installed from Debian's packages when missing (root only)."""
    found = _find_chromium()
    if found:
        return found
    if os.environ.get("C3_NO_APT"):
        pytest.skip("Chromium is not installed and C3_NO_APT forbids `apt-get install chromium`")
    if shutil.which("apt-get") is None:
        pytest.skip("Chromium is not installed and this system has no apt-get to install Debian's chromium package")
    if os.geteuid() != 0:
        pytest.skip("Chromium is not installed and the tests do not run as root, so `apt-get install chromium` is not possible")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:  # stale package lists: update once and retry
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=600)
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    found = _find_chromium()
    if not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"`apt-get install chromium` exited {result.returncode}: {tail[0]}")
    return found


# -- a minimal DevTools-protocol client over a WebSocket (RFC 6455, text frames) -------------------
class WebSocket:
    """Just enough of a WebSocket client for the DevTools protocol on localhost."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("DevTools connection closed")
        return chunk

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        key = (mask * (n // 4 + 1))[:n]
        self.sock.sendall(head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big"))

    def send(self, text: str) -> None:
        self._frame(0x1, text.encode())

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._exact(8), "big")
            data = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools connection closed by the browser")
            if opcode == 0x9:
                self._frame(0xA, data)
                continue
            if opcode == 0xA:
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class DevTools:
    """A page session: commands with replies, and every event kept in order."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws, self.next_id, self.events = ws, 0, []
        self.session: str | None = None

    def call(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while time.monotonic() < deadline:
            for e in self.events[seen:]:
                if e["method"] == method:
                    return e
            seen = len(self.events)
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


@pytest.fixture()
def browser(chromium: str, tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "chromium-profile"
    log = (tmp_path / "chromium.log").open("w")
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start (exit {proc.poll()}): {(tmp_path / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        tools = DevTools(WebSocket(f"ws://127.0.0.1:{port}{path}"))
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        tools.session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.call(f"{domain}.enable")
        tools.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        yield tools
        tools.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory, cache_dir: str) -> Path:
    """A small real run (ultrasound, 12 exams, K = 2) and its re-rendered report."""
    out = tmp_path_factory.mktemp("report-demo") / "results"
    env = {"C3_CACHE_DIR": cache_dir}
    result = run_c3("evaluate", "-m", "us", "--k", "2", "--limit", "12", "--out", str(out), "--quiet", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_c3("report", str(out), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


PAGE_FACTS = """(() => {
  const imgs = Array.from(document.images).map(i => ({
    scheme: i.getAttribute("src").slice(0, 15), w: i.naturalWidth, h: i.naturalHeight, ok: i.complete, alt: i.alt}));
  const refs = Array.from(document.querySelectorAll("[src],[href]"))
    .map(e => e.getAttribute("src") || e.getAttribute("href"))
    .filter(v => /^\\s*(https?:)?\\/\\//i.test(v));
  return {
    title: document.title,
    imgs: imgs,
    external: refs,
    sections: Array.from(document.querySelectorAll("section.modality")).map(s => s.dataset.modality),
    tables: document.querySelectorAll("table").length,
    caseRows: document.querySelectorAll("table.cases tbody tr").length,
    gallery: document.querySelectorAll(".gallery .case").length,
    text: document.body.innerText,
  };
})()"""

UTILITY_COLUMN = """(() => Array.from(document.querySelectorAll("table.cases tbody tr"))
  .map(r => parseFloat(r.cells[1].getAttribute("data-v"))))()"""


def test_report_in_headless_chromium(demo_report: Path, browser: DevTools, tmp_path: Path) -> None:
    html = demo_report / "report.html"
    browser.call("Page.navigate", {"url": html.resolve().as_uri()})
    browser.wait_for("Page.loadEventFired")
    facts = browser.evaluate(PAGE_FACTS)

    assert facts["title"] == "C3 robustness report"
    assert facts["sections"] == ["us"]
    assert facts["external"] == []
    plots = [i for i in facts["imgs"] if not i["alt"].startswith("us case-")]
    thumbs = [i for i in facts["imgs"] if i["alt"].startswith("us case-")]
    assert len(plots) == 3 and len(thumbs) == 6 * 3, [i["alt"] for i in facts["imgs"]]
    for img in facts["imgs"]:
        assert img["scheme"].startswith("data:image/"), img
        assert img["ok"] and img["w"] > 0 and img["h"] > 0, img
    assert facts["tables"] >= 5 and facts["caseRows"] == 12 and facts["gallery"] == 6
    with (demo_report / "us" / "cases.csv").open() as fh:
        written = [r["exam_id"] for r in csv.DictReader(fh)]
    assert all(re.fullmatch(r"case-[0-9a-f]{12}", e) for e in written)  # results hold pseudonyms only
    assert "us-demo-" not in facts["text"]  # the dataset's own (stable) ids never reach the page

    # sorting: the table opens sorted by utility (ascending); a click reverses it, another restores it
    utilities = browser.evaluate(UTILITY_COLUMN)
    assert utilities == sorted(utilities)
    click = "document.querySelectorAll('table.cases th')[1].click()"
    browser.evaluate(click)
    assert browser.evaluate(UTILITY_COLUMN) == sorted(utilities, reverse=True)
    browser.evaluate(click)
    assert browser.evaluate(UTILITY_COLUMN) == sorted(utilities)

    metrics = browser.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = browser.call("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": metrics["width"], "height": min(metrics["height"], 12000), "scale": 1},
    })
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    screenshot = tmp_path / "report-screenshot.png"
    screenshot.write_bytes(png)
    artefacts = os.environ.get("C3_TEST_ARTIFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artefacts) / "report-screenshot.png")
        shutil.copy(html, Path(artefacts) / "report.html")

    # no console errors, no uncaught exceptions, no failed or network loads
    errors = [e for e in browser.events if e["method"] == "Runtime.exceptionThrown"]
    errors += [e for e in browser.events if e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")]
    errors += [e for e in browser.events if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
    errors += [e for e in browser.events if e["method"] == "Network.loadingFailed"]
    assert errors == [], json.dumps(errors, indent=1)[:3000]
    requests = [e["params"]["request"]["url"] for e in browser.events if e["method"] == "Network.requestWillBeSent"]
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


PATIENT_NAME, PATIENT_ID = "ZZTESTPATIENT^QQGIVEN", "MRN987654321"
FINDINGS_HEADER = "Path,Frontal/Lateral,Atelectasis,Cardiomegaly,Consolidation,Edema,Pleural Effusion\n"


def _write_dicom(path: Path, seed: int) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
    ds.Rows, ds.Columns = 64, 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    yy, xx = np.mgrid[0:64, 0:64]
    lungs = ((xx - 20) ** 2 / 120 + (yy - 32) ** 2 / 500 < 1) | ((xx - 44) ** 2 / 120 + (yy - 32) ** 2 / 500 < 1)
    rng = np.random.default_rng(seed)
    arr = np.where(lungs, 900, 2800) + rng.integers(0, 200, (64, 64))
    ds.PixelData = arr.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_patient_fields_never_reach_any_output(tmp_path: Path, cache_dir: str) -> None:
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    lines = [FINDINGS_HEADER]
    for i in range(6):
        _write_dicom(cohort / f"image{i}.dcm", i)
        lines.append(f"image{i}.dcm,Frontal,{i % 2},0,1,,{(i + 1) % 2}\n")
    (cohort / "cohort.csv").write_text("".join(lines))
    assert PATIENT_ID.encode() in (cohort / "image0.dcm").read_bytes()  # the input does carry them
    out = tmp_path / "results"
    env = {"C3_CACHE_DIR": cache_dir}
    evaluate = run_c3("evaluate", "-m", "cxr", "--data", str(cohort / "cohort.csv"), "--model", "cxr.demo_cnn",
                      "--k", "2", "--out", str(out), env=env)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    report = run_c3("report", str(out), env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (out / "report.html").read_text()
    assert page.count('alt="cxr case-') == 6 * 3  # the gallery re-read the DICOM files and replayed
    needles = [s.encode() for s in (PATIENT_NAME, PATIENT_ID, *PATIENT_NAME.split("^"))]
    logs = (evaluate.stdout + evaluate.stderr + report.stdout + report.stderr).encode()
    for needle in needles:
        assert needle not in logs
        for path in out.rglob("*"):
            assert needle.decode() not in str(path.relative_to(out))
            if path.is_file():
                assert needle not in path.read_bytes(), path
