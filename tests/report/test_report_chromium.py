"""The report in a real browser: headless Chromium loads every image without script errors.

A copy of the page gets a small probe script that, on load, writes the number of images
with ``naturalWidth > 0`` and any ``error`` events into ``<body data-*>``; Chromium's
``--dump-dom`` prints the DOM after load and the test parses it. A control page with a
broken image and a throwing script proves the probe can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

pytestmark = pytest.mark.slow


PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var what = e.message || (e.target && (e.target.src || e.target.tagName)) || e.type;
  window.__errors.push(String(what).slice(0, 120));
}, true);
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("unhandled rejection: " + String(e.reason).slice(0, 120));
});
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var b = document.body;
  b.dataset.imagesTotal = String(imgs.length);
  b.dataset.imagesOk = String(ok.length);
  b.dataset.errors = JSON.stringify(window.__errors);
  b.dataset.probe = "done";
});
</script>"""

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class _BodyAttrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.attrs = {k: v or "" for k, v in attrs}


def run_chromium(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "xdg")}
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def probe(chromium: str, page: Path, tmp: Path) -> dict[str, Any]:
    """Load a probed copy of ``page``; images total/ok and error messages after load."""
    html = page.read_text(encoding="utf-8")
    head = html.index("<head>") + len("<head>") if "<head>" in html else 0
    probed = page.with_name("probed-" + page.name)
    probed.write_text(html[:head] + PROBE + html[head:], encoding="utf-8")
    done = run_chromium(chromium, tmp, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    parser = _BodyAttrs()
    parser.feed(done.stdout)
    attrs = parser.attrs
    assert attrs.get("data-probe") == "done", (done.returncode, done.stderr[-2000:])
    return {
        "total": int(attrs["data-images-total"]),
        "ok": int(attrs["data-images-ok"]),
        "errors": json.loads(attrs["data-errors"]),
    }


def test_probe_catches_broken_images_and_script_errors(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head></head><body>"
        '<img src="data:image/png;base64,AAAA"><img src="missing.png">'
        '<script>throw new Error("boom from the page");</script></body></html>',
        encoding="utf-8",
    )
    got = probe(chromium, page, tmp_path)
    assert got["total"] == 2 and got["ok"] == 0
    assert any("boom from the page" in e for e in got["errors"]), got["errors"]


def test_report_renders_every_image_in_chromium(
    chromium: str, filled_report: Any, tmp_path: Path
) -> None:
    page = tmp_path / "index.html"
    page.write_text(filled_report.html, encoding="utf-8")
    result = filled_report.result
    got = probe(chromium, page, tmp_path)
    assert got["total"] == sum(result.figures.values()) == 11
    assert got["ok"] == got["total"]
    assert got["errors"] == []

    shot = tmp_path / "shot.png"
    done = run_chromium(
        chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()
    )
    assert shot.exists(), done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = np.asarray(matplotlib.image.imread(shot))
    assert pixels.shape[:2] == (2400, 1200)
    # Painted figures, not a blank page: many distinct colours.
    rgb = (pixels[..., :3] * 255).astype(np.uint32)
    colours = np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])
    assert colours.size > 100
