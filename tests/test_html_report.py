"""The HTML report as a reviewer reads it: a subject column, times to the second, each
violation linked to its flow, and a layout that fits a 1280 px window without breaking words.

Strategy: replay the bundled captures plus one flow with long tokens (a long host, path, query
keys and JSON field path) through the CLI, export the page, and check its markup against the
log read with sqlite3. Then render it in Debian's headless Chromium at 1280 px: once with a
measuring script added (the page's own Content-Security-Policy would refuse it, so the copy
drops that tag) that reports the document's scroll width and every word whose glyphs sit on
more than one line, and once as a screenshot, checked for its size."""

import json
import re
import sqlite3
import struct
import subprocess
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
from mitmproxy import io as mitmproxy_io

from conftest import make_flow
from test_cli import ROOT, run

CHROMIUM = Path("/usr/bin/chromium")
WIDTH = 1280
LONG_URL = ("https://collector.long-named-analytics-vendor.example/v1/collect/events/batch/"
            "upload/customer_profiles/attributes?first_parameter_name=x&second_parameter_name=y"
            "&another_rather_long_parameter=z")
MEASURE = """<script>
window.addEventListener("load", () => {
  const broken = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement.closest("td")) continue;
    const word = /[\\p{L}\\p{N}]+/gu;
    let m;
    while ((m = word.exec(node.data))) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const lines = new Set(Array.from(range.getClientRects()).map((r) => Math.round(r.top)));
      if (lines.size > 1) broken.push(m[0]);
    }
  }
  const out = document.createElement("pre");
  out.id = "layout";
  out.textContent = JSON.stringify({scrollWidth: document.documentElement.scrollWidth,
                                    clientWidth: document.documentElement.clientWidth, broken});
  document.body.append(out);
});
</script>
</body>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("html")
    flow = make_flow(LONG_URL, "POST", json.dumps(
        {"customer": {"contact_information": {"primary_email_address": "marie.dupont@example.fr"}}}),
        {"content-type": "application/json"})
    with (work / "long.flow").open("wb") as out:
        mitmproxy_io.FlowWriter(out).add(flow)
    replay = run("replay", str(ROOT / "captures"), str(work / "long.flow"), "--policy",
                 str(ROOT / "policies"), "--db", str(work / "audit.db"), cwd=work)
    assert replay.returncode == 1, replay.stderr
    export = run("export", "--db", str(work / "audit.db"), "--format", "html", "--output",
                 str(work / "report.html"), cwd=work)
    assert export.returncode == 0, export.stderr
    return work


def violations(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select id, flow_id, subjects, timestamp from violations "
                            "order by id").fetchall()


def cells(row: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_rows_name_subjects_times_to_the_second_and_link_to_their_flow(report: Path) -> None:
    page = (report / "report.html").read_text()
    header = re.search(r"<thead>(.*?)</thead>", page).group(1)  # type: ignore[union-attr]
    names = re.findall(r"<th>(.*?)</th>", header)
    assert "Subjects" in names
    logged = violations(report / "audit.db")
    rows = re.findall(r'<tr data-index="\d+"[^>]*>.*?</tr>', page)
    assert len(rows) == len(logged)
    for row, (vid, flow_id, subjects, timestamp) in zip(rows, logged, strict=True):
        values = dict(zip(names, cells(row), strict=True))
        assert values["#"] == str(vid)
        assert values["Subjects"] == (subjects or "")
        second = datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        assert values["Time (UTC)"] == second
        link = re.search(r'<a href="#(flow-[^"]+)">', row)
        assert link, row
        target = re.search(rf'<tr id="{link.group(1)}">(.*?)</tr>', page, re.S)
        assert target, f"violation {vid}: no element with id {link.group(1)}"
        assert cells(target.group(0))[0] == flow_id
        assert f'href="#violation-{vid}"' in target.group(0)  # and back
    assert any(s for _, _, s, _ in logged)  # the samples do name registry subjects


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (.ci/run installs Debian's)")
    result = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                             "--hide-scrollbars", f"--window-size={WIDTH},2000", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_the_page_fits_1280_px_without_breaking_a_word(report: Path) -> None:
    page = (report / "report.html").read_text()
    measured = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    (report / "measured.html").write_text(measured.replace("</body>", MEASURE))
    dom = chromium("--dump-dom", "--virtual-time-budget=5000",
                   (report / "measured.html").as_uri()).stdout
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    layout = json.loads(unescape(found.group(1)))
    assert layout["clientWidth"] == WIDTH
    assert layout["scrollWidth"] <= WIDTH, layout
    assert layout["broken"] == [], "words broken across lines"


def test_screenshot_at_1280_px(report: Path) -> None:
    shot = report / "report-1280.png"
    chromium(f"--screenshot={shot}", (report / "report.html").as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (WIDTH, 2000)
    assert len(data) > 50_000  # a page of tables and charts, not a blank image
