"""The report page in a real browser: Debian's chromium, headless, driven by Selenium.

Every experiment's row with its verdict, the curves and the timeline drawn
(SVG with a size and shapes in it), no console error, no request to the
network (the browser's performance log and the page's resource timing), and
a screenshot kept in the test's tmp folder. Without chromium, chromedriver or
Selenium the tests are skipped on a laptop and FAIL in CI (``CI=true``), as
the Slurm tests do.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportkit import NIGHT_SPANS, make_night, make_suite, slurm_with_times
from testkit import run_cli, slurm_required

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")
INSTALL = "apt-get install chromium chromium-driver && pip install -e '.[test]'"


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} is not on PATH"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless chromium with a fresh profile, logging the console and the network."""
    missing = _missing()
    if missing is not None:
        if slurm_required(os.environ):
            pytest.fail(f"{missing} (CI: the browser tests must run; {INSTALL})", pytrace=False)
        pytest.skip(f"{missing}: {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, page: Path, shot: Path) -> None:
    """Load the page, keep a screenshot of all of it, and check that nothing was fetched and
    nothing complained."""
    driver.get("about:blank")
    driver.get_log("performance")  # drop what the browser's own start page asked for
    driver.get_log("browser")
    driver.get(page.as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height), 16000))
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10000
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    assert requests == [page.as_uri()]  # the page itself, and nothing else
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0


def drawn(driver: Any, selector: str) -> list[dict[str, float]]:
    """Width, height and shape count of every SVG matching ``selector``."""
    return list(driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(s => {"
        " const r = s.getBoundingClientRect();"
        " return {w: r.width, h: r.height, shapes: s.querySelectorAll('path, rect').length}; })", selector))


def make_page(repo: Path, slurm_lines: list[str], out: Path) -> dict[str, Any]:
    """Write the page and the JSON of the same report; the JSON's data."""
    for fmt, path in (("json", out.with_suffix(".json")), ("html", out)):
        result = run_cli("report", "--project-root", str(repo), "--format", fmt, "-o", str(path),
                         env={"NRL_REPORT_DB": ""}, slurm=slurm_with_times(slurm_lines))
        assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(out.with_suffix(".json").read_text())
    return data


def test_a_night_in_the_browser(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    make_night(tmp_path / "repo")
    data = make_page(tmp_path / "repo", NIGHT_SPANS, tmp_path / "report.html")
    open_page(browser, tmp_path / "report.html", tmp_path / "report.png")
    shown = {row.get_attribute("data-experiment"): (row.find_element(By.CSS_SELECTOR, ".verdict").text,
                                                    row.find_element(By.CSS_SELECTOR, ".reason").text)
             for row in browser.find_elements(By.CSS_SELECTOR, "tr.experiment-row")}
    assert shown == {e["name"]: (e["status"], e["reason"]) for e in data["experiments"]}
    assert browser.find_element(By.ID, "gpu-hours-planned").text.startswith(str(data["summary"]["gpu_hours_planned"]))
    assert browser.find_element(By.ID, "gpu-hours-used").text.startswith(f"{data['summary']['gpu_hours_used']:,.2f}")
    curves = drawn(browser, "svg.curve")
    assert len(curves) == sum(len(e["series"]) for e in data["experiments"]) == 10
    assert all(c["w"] > 100 and c["h"] > 100 and c["shapes"] >= 2 for c in curves)
    timeline = drawn(browser, "svg#timeline-svg")
    assert len(timeline) == 1 and timeline[0]["w"] > 500 and timeline[0]["shapes"] >= 12  # spans of 7 jobs


def test_200_experiments_stay_readable(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    _, lines = make_suite(tmp_path / "repo", 200)
    data = make_page(tmp_path / "repo", lines, tmp_path / "big.html")
    open_page(browser, tmp_path / "big.html", tmp_path / "big.png")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.experiment-row")
    assert len(rows) == 200
    assert [r.get_attribute("data-status") for r in rows] == [e["status"] for e in data["experiments"]]
    timeline = browser.find_element(By.ID, "timeline-svg")
    labels = timeline.find_elements(By.CSS_SELECTOR, "g.row")
    assert len(labels) == 200
    # readable: each row's name is at least 10 px from the next, the bars at least 6 px high
    tops = browser.execute_script("return Array.from(arguments[0].querySelectorAll('g.row text'))"
                                  ".map(t => t.getBoundingClientRect().top)", timeline)
    assert min(b - a for a, b in zip(tops, tops[1:])) >= 10
    heights = browser.execute_script("return Array.from(arguments[0].querySelectorAll('rect.running'))"
                                     ".map(r => r.getBoundingClientRect().height)", timeline)
    assert len(heights) == 600 and min(heights) >= 6
    assert len(drawn(browser, "svg.curve")) == 400
