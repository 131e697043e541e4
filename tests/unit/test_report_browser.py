"""The report page in a real browser: Debian's chromium, headless, driven by Selenium.

Every experiment's row with its verdict, the curves and the timeline drawn
(SVG with a size and shapes in it), no console error, no request to the
network (the browser's performance log and the page's resource timing), and
a screenshot kept in the test's tmp folder. Without chromium, chromedriver or
Selenium the tests are skipped on a laptop and FAIL in CI (``CI=true``), as
the Slurm tests do.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reportkit import NIGHT_SPANS, browser, drawn, make_night, make_suite, open_page, shown_rows, slurm_with_times

from testkit import run_cli


@pytest.fixture(name="browser")
def browser_fixture(tmp_path: Path) -> Iterator[Any]:
    with browser(tmp_path / "profile") as driver:
        yield driver


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
    assert shown_rows(browser) == {e["name"]: (e["status"], e["reason"]) for e in data["experiments"]}
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
    assert min(b - a for a, b in itertools.pairwise(tops)) >= 10
    heights = browser.execute_script("return Array.from(arguments[0].querySelectorAll('rect.running'))"
                                     ".map(r => r.getBoundingClientRect().height)", timeline)
    assert len(heights) == 600 and min(heights) >= 6
    assert len(drawn(browser, "svg.curve")) == 400
