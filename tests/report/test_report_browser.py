"""The report in a real browser: headless Chromium opens index.html from disk.

Checks: no console errors or exceptions, no network request besides the page
itself, no script from a plugin runs (no dialog), clicking a column header
re-orders the rows, and a screenshot is saved (to $CTKD_SCREENSHOT_DIR when
set, for a person to look at). A control page with an injected script and an
external image proves the checks can see what they look for.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))   # the CDP helper sits next to this file
from chromium_cdp import Chromium, chromium_binary  # noqa: E402

BINARY = chromium_binary()
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="headless Chromium not installed (apt-get install chromium chromium-driver)")

METHOD_ORDER = ("Array.from(document.querySelectorAll('#leaderboard-1 > tbody:first-of-type "
                "td.method')).map(td => td.firstChild.textContent)")


def problems(browser: Chromium, page_url: str) -> dict[str, list]:
    console = [e for e in browser.page_events("Runtime.consoleAPICalled")
               if e["type"] in ("error", "warning", "assert")]
    logged = [e["entry"] for e in browser.page_events("Log.entryAdded")
              if e["entry"]["level"] in ("error", "warning")]
    requests = [e["request"]["url"] for e in browser.page_events("Network.requestWillBeSent")
                if e["request"]["url"] != page_url]
    return {"console": console, "exceptions": browser.page_events("Runtime.exceptionThrown"),
            "log": logged, "requests": requests,
            "dialogs": browser.page_events("Page.javascriptDialogOpening")}


@pytest.fixture(scope="module")
def browser():
    with Chromium(BINARY, width=1400, height=900) as b:
        yield b


def test_report_loads_cleanly_sorts_and_looks_right(browser, rendered, tmp_path):
    page = rendered["index.html"]
    url = page.resolve().as_uri()
    browser.open(url)
    assert browser.evaluate("document.title") == "ctkd-bench leaderboard"
    assert problems(browser, url) == {"console": [], "exceptions": [], "log": [], "requests": [],
                                      "dialogs": []}
    by_rank = browser.evaluate(METHOD_ORDER)
    assert len(by_rank) == 11 and by_rank[-1] == "emo"   # emo runs on one track only: listed last

    browser.click("#leaderboard-1 thead th:nth-child(3)")          # Method: A to Z
    by_name = browser.evaluate(METHOD_ORDER)
    assert by_name != by_rank and by_name == sorted(by_rank, key=str.lower)
    browser.click("#leaderboard-1 thead th:nth-child(3)")          # again: Z to A
    assert browser.evaluate(METHOD_ORDER) == by_name[::-1]

    browser.click("#leaderboard-1 thead th:nth-child(8)")          # embed accuracy, best first
    embed = browser.evaluate(
        "Array.from(document.querySelectorAll('#leaderboard-1 > tbody:first-of-type tr'))"
        ".map(tr => tr.cells[7].getAttribute('data-sort'))")
    scores = [float(v) for v in embed if v]
    assert scores == sorted(scores, reverse=True)
    assert embed[-2:] == ["", ""]                                   # n/a and not run go last
    assert problems(browser, url)["exceptions"] == []

    shots = Path(os.environ.get("CTKD_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser.click("#leaderboard-1 thead th:nth-child(1)")          # back to rank order
    browser.evaluate("window.scrollTo(0, 0)")
    browser.screenshot(shots / "report.png", max_height=2600)
    assert (shots / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_checks_notice_injected_script_and_external_requests(browser, rendered, tmp_path):
    page = rendered["index.html"].read_text(encoding="utf-8")
    bad = page.replace("</body>", '<img src="http://127.0.0.1:9/pixel.png">'
                                  "<script>alert(1)</script></body>")
    path = tmp_path / "tampered.html"
    path.write_text(bad, encoding="utf-8")
    url = path.resolve().as_uri()
    seen_before = len(browser.events)
    browser.open(url)
    browser.events[:seen_before] = [{}] * seen_before   # judge only this page's events
    found = problems(browser, url)
    assert found["dialogs"] == []                  # the policy kept the injected script from running
    assert found["console"] or found["log"]        # ...and said so
    assert any("127.0.0.1" in u for u in found["requests"]) or any(
        "img-src" in str(e) or "127.0.0.1" in str(e) for e in found["log"] + found["console"])
