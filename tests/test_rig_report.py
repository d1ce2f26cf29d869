"""The rig's HTML report of a synthetic run: self-contained (plots embedded as PNG, no
network), one row per expectation with its evidence, the agent's log when it crashed."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib  # noqa: F401 - the report draws with it (the extra `rig`, in `test` too)
import pytest

from tests.test_rig_junit import results
from tools.rig.report import render


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.rows: list[str] = []
        self.refs: list[str] = []
        self.pre = ""
        self._in_pre = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "tr" and (a.get("class") or "").endswith("-row"):
            self.rows.append(a["class"])
        for key in ("href", "src"):
            if a.get(key) and not a[key].startswith("data:"):
                self.refs.append(a[key])
        self._in_pre = tag == "pre"

    def handle_data(self, data):
        if self._in_pre:
            self.pre += data


def test_report_has_every_plot_and_expectation_row():
    res = results()
    text = render(res.record, res.verdicts)
    page = Page()
    page.feed(text)
    # sun and lux, three segments, energy, climate, alarms
    assert len(page.imgs) == 7
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.rows == ["pass-row", "fail-row", "pass-row"]
    assert page.refs == []  # nothing fetched from anywhere
    assert "FAIL: 2 of 3 expectations met" in text
    assert "climate.door_open" in text and "2026-06-21 13:00:00 CEST" in text
    assert "Agent log" not in text


def test_report_of_a_crash_shows_the_log_tail_escaped():
    res = results(crashed=True)
    text = render(res.record, res.verdicts)
    page = Page()
    page.feed(text)
    assert "ERROR boom: <&>" in page.pre
    assert "ERROR boom: &lt;&amp;&gt;" in text
    assert re.search(r"the agent crashed", text)


CHROMIUM = next((c for c in ("chromium-headless-shell", "chromium", "google-chrome") if shutil.which(c)), None)
DECODED = (
    '<script>addEventListener("load", () => { const i = [...document.images];'
    " document.body.dataset.images = i.length;"
    " document.body.dataset.decoded = i.filter(x => x.complete && x.naturalWidth > 0).length; });</script>"
)


@pytest.mark.integration  # a real browser process
def test_the_plots_show_in_headless_chromium(tmp_path):
    """The page as a browser draws it: every embedded PNG decodes (the test adds a script that
    counts them; the report itself has none), offline."""
    res = results()
    page = tmp_path / "report.html"
    page.write_text(render(res.record, res.verdicts).replace("</body>", DECODED + "</body>"))
    assert CHROMIUM is not None, "needs headless Chromium: apt-get install chromium-headless-shell (.ci/run does)"
    out = subprocess.run(
        [CHROMIUM, "--no-sandbox", "--disable-gpu", "--headless", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body = re.search(r"<body[^>]*>", out.stdout)
    assert body is not None, out.stderr[-2000:]
    assert 'data-images="7"' in body.group(0) and 'data-decoded="7"' in body.group(0), body.group(0)
    assert "FAIL: 2 of 3 expectations met" in out.stdout
