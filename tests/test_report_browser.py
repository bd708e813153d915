"""The subject report in a real browser: headless Chromium renders it without errors.

Skips when ``chromium`` is not installed (Debian/Ubuntu package ``chromium``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from _report_fixtures import write_subject
from conftest import run_cli

from tests.conftest import run_text

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: Appended to a copy of the report: lists the images that did not decode.
IMAGE_CHECK = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return i.alt; });
  var out = document.createElement('pre');
  out.id = 'image-check';
  out.textContent = JSON.stringify({images: images.length, broken: broken});
  document.body.appendChild(out);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with the project's standard offline flags."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return run_text(
        command,
        timeout=120,
    )


def console_messages(stderr: str) -> list[str]:
    """Page console messages and failed loads in Chromium's log."""
    return [
        line
        for line in stderr.splitlines()
        if ":CONSOLE" in line
        or "net::ERR" in line
        or "Failed to load" in line
        or "Not allowed to load" in line
    ]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium')"
)
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    subject = write_subject(tmp_path / "data", "S01")
    report = tmp_path / "report.html"
    result = run_cli(
        "report",
        *subject["measure"],
        "--images",
        *subject["images"],
        "--response",
        subject["response"],
        "--treatment",
        "fu1=TACE",
        "-o",
        report,
    )
    assert result.exit_code == 0, result.stderr
    html = report.read_text(encoding="utf-8")
    expected_images = len(re.findall(r"<img ", html))
    assert expected_images > 3

    # 1. the report itself, as a user opens it: a full screenshot, no console errors
    screenshot = (
        Path(os.environ.get("LIVERBURDEN_SCREENSHOT_DIR", tmp_path)) / "report_chromium.png"
    )
    shown = chromium(
        f"--screenshot={screenshot}",
        "--window-size=1400,3000",
        report.as_uri(),
        profile=tmp_path / "profile1",
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert png_size(screenshot) == (1400, 3000)
    assert screenshot.stat().st_size > 100_000  # a rendered page, not a blank one
    assert console_messages(shown.stderr) == []

    # 2. a copy with a checking script: every image decoded
    checked = tmp_path / "checked.html"
    checked.write_text(html.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    dumped = chromium(
        "--virtual-time-budget=10000", "--dump-dom", checked.as_uri(), profile=tmp_path / "profile2"
    )
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    match = re.search(r'<pre id="image-check">(.*?)</pre>', dumped.stdout)
    assert match, dumped.stdout[-2000:]
    outcome = json.loads(match.group(1))
    assert outcome == {"images": expected_images, "broken": []}
    assert console_messages(dumped.stderr) == []


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium')"
)
def test_image_check_detects_broken_images(tmp_path: Path) -> None:
    """The check itself can fail: a page with a broken image is caught."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<html><body><img src="data:image/png;base64,AAAA" alt="bad">'
        + IMAGE_CHECK
        + "</body></html>",
        encoding="utf-8",
    )
    dumped = chromium(
        "--virtual-time-budget=5000", "--dump-dom", page.as_uri(), profile=tmp_path / "profile"
    )
    match = re.search(r'<pre id="image-check">(.*?)</pre>', dumped.stdout)
    assert match and json.loads(match.group(1)) == {"images": 1, "broken": ["bad"]}
