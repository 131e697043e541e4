"""What the report tests build on (``tests/unit/test_report*.py``, ``tests/integration/test_report*.py``,
``benchmarks/bench_report.py``): snapshot folders as a launch and its recipes leave them, a Slurm
that remembers job times, and a real browser (Debian's chromium, headless, through Selenium).

Without chromium, chromedriver or Selenium the browser is skipped on a laptop and FAILS in CI
(``CI=true``), as the Slurm tests do."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from nrl_launch.experiment.folder import SnapshotRoot
from nrl_launch.experiment.manifest import Manifest, Source, append_cancellation, append_run, write_manifest
from nrl_launch.slurm.client import Completed
from testkit import Call, FakeSlurm, slurm_required

CHECKS_PASS = "Metric Checks\n  [PASS] train/loss@{step} = 0.1667 < 0.5\n  [PASS] train/accuracy@{step} = 0.9 > 0.5\n"
CHECKS_FAIL = "Metric Checks\n  [PASS] train/loss@{step} = 0.1667 < 0.5\n  [FAIL] train/accuracy@{step} = 0.9 > 2\n"
T0 = time.mktime(time.strptime("2026-12-01T01:00:00", "%Y-%m-%dT%H:%M:%S"))  # a night, local time


def stamp(when: float) -> str:
    """Slurm's way to print a time (local)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))


def utc(when: float) -> str:
    """The manifest's way (UTC ISO 8601)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(when))


def metrics(steps: int, shift: float = 0.0) -> dict[str, dict[str, float]]:
    """A recipe's metrics file: loss falling, accuracy rising."""
    return {"train/loss": {str(i): round(1 / i + shift, 6) for i in range(1, steps + 1)},
            "train/accuracy": {str(i): round(i / (steps + 1) + shift, 6) for i in range(1, steps + 1)}}


def experiment(root: Path, name: str, *, jobs: Sequence[str], logs: Mapping[str, str] | None = None,
               steps: int | None = 4, shift: float = 0.0, nodes: int = 1, gpus_per_node: int = 8,
               submitted: float = T0, cancelled: Sequence[str] = (), gpu_hours: int = 4) -> Path:
    """A snapshot folder: a manifest with one launch of ``jobs`` (run i/N each), driver logs
    (``logs``: job id -> text) and the recipe's metrics file (``steps`` steps; None: none)."""
    folder = root / name
    folder.mkdir(parents=True)
    config = (("NUM_NODES", str(nodes)), ("GPUS_PER_NODE", str(gpus_per_node)), ("MAX_STEPS", str(steps or 4)))
    write_manifest(folder, Manifest(name, f"tests/test_suites/llm/{name}.sh", source=Source(commit="c0ffee" * 6),
                                    config=config, gpu_hours=gpu_hours))
    for i, job_id in enumerate(jobs, start=1):
        append_run(folder, job_id, f"{i}/{len(jobs)}", when=utc(submitted))
    if cancelled:
        append_cancellation(folder, cancelled)
    for job_id, text in (logs or {}).items():
        (folder / f"{job_id}-logs").mkdir()
        (folder / f"{job_id}-logs" / "ray-driver.log").write_text(text)
    if steps is not None:
        out = folder / "tests/test_suites/llm" / name
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps(metrics(steps, shift)))
    return folder


def span_line(job_id: str, state: str, submit: float | None, start: float | None = None, end: float | None = None,
              exit_code: str = "0:0", nodes: str = "node1", tres: str = "") -> str:
    """One line of ``sacct -P -o JobID,Submit,Start,End,State,ExitCode,NodeList,AllocTRES``."""
    def shown(when: float | None) -> str:
        return "Unknown" if when is None else stamp(when)

    return f"{job_id}|{shown(submit)}|{shown(start)}|{shown(end)}|{state}|{exit_code}|{nodes}|{tres}"


def slurm_with_times(lines: Sequence[str], *, completion: bool = False, **knobs: object) -> FakeSlurm:
    """A Slurm whose accounting (or, with ``completion``, only its job completion records:
    ``sacct -c``) answers ``lines`` for the job ids asked."""
    def sacct(call: Call) -> Completed:
        if ("-c" in call.argv) != completion:
            return Completed(1, "", "sacct: error: Slurm accounting storage is disabled\n")
        wanted = call.argv[call.argv.index("-j") + 1].split(",")
        return Completed(0, "".join(f"{line}\n" for line in lines if line.split("|")[0] in wanted), "")

    return FakeSlurm(answers={"sacct": sacct}, **knobs)  # type: ignore[arg-type]


def make_night(repo: Path) -> SnapshotRoot:
    """A suite's snapshot root after a night: a pass (2 runs), a metric failure, a crash, one still
    running, one cancelled; :data:`NIGHT_SPANS` are their Slurm times."""
    root = repo / "code_snapshots"
    experiment(root, "sft-pass", jobs=["11", "12"], logs={"11": "step 2\n", "12": CHECKS_PASS.format(step=4)})
    experiment(root, "dpo-metric-fail", jobs=["21"], logs={"21": CHECKS_FAIL.format(step=4)}, nodes=2)
    experiment(root, "grpo-crash", jobs=["31"], logs={"31": "Traceback (most recent call last):\nboom\n"})
    experiment(root, "vlm-running", jobs=["41", "42"], logs={"41": "step 2\n"})
    experiment(root, "sft-cancelled", jobs=["51"], cancelled=["51"])
    return SnapshotRoot(repo, root.name)


NIGHT_SPANS = [
    span_line("11", "COMPLETED", T0, T0 + 60, T0 + 660),
    span_line("12", "COMPLETED", T0, T0 + 660, T0 + 1260),
    span_line("21", "FAILED", T0, T0 + 120, T0 + 1920, exit_code="1:0", nodes="node[1-2]"),
    span_line("31", "FAILED", T0, T0 + 30, T0 + 90, exit_code="3:0"),
    span_line("41", "COMPLETED", T0, T0 + 60, T0 + 600),
    span_line("42", "RUNNING", T0, T0 + 600, None),
    span_line("51", "CANCELLED by 0", T0, None, T0 + 10, exit_code="0:15", nodes="None assigned"),
]


def make_suite(repo: Path, count: int, steps: int = 100) -> tuple[SnapshotRoot, list[str]]:
    """A snapshot root of ``count`` experiments of 3 chained runs each, as a big nightly leaves it
    (one in 10 fails a check, one in 25 crashes), and the sacct lines of their jobs: for the
    benchmark and for the test that opens such a report in the browser."""
    root = repo / "code_snapshots"
    lines = []
    for index in range(count):
        name = f"{('sft', 'dpo', 'grpo')[index % 3]}-model{index:03d}-1n8g-fsdp2tp1"
        ids = [str(10000 + 3 * index + run) for run in range(3)]
        last = "" if index % 25 == 7 else (CHECKS_FAIL if index % 10 == 3 else CHECKS_PASS).format(step=steps)
        experiment(root, name, jobs=ids, logs={ids[0]: "step 1\n", ids[1]: "step 2\n", ids[2]: last}, steps=steps,
                   shift=(index % 17) / 100, nodes=1 + index % 2, gpu_hours=12)
        start = T0 + (index % 40) * 300  # the cluster takes 40 at a time
        for run, job_id in enumerate(ids):
            began, ended = start + run * 1200, start + (run + 1) * 1200 - 60
            lines.append(span_line(job_id, "COMPLETED", T0, began, ended, nodes=f"node{index % 40 + 1}"))
    return SnapshotRoot(repo, root.name), lines


# ---------------------------------------------------------------- a real browser

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


@contextmanager
def browser(profile: Path) -> Iterator[Any]:
    """A headless chromium with a fresh profile in ``profile``, logging the console and the network;
    skipped without one (failed in CI)."""
    missing = _missing()
    if missing is not None:
        if slurm_required(os.environ):
            pytest.fail(f"{missing} (CI: the browser tests must run; {INSTALL})", pytrace=False)
        pytest.skip(f"{missing}: {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, page: Path, shot: Path) -> None:
    """Load the page, keep a screenshot of all of it at ``shot``, and check that nothing was
    fetched and nothing complained."""
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


def shown_rows(driver: Any) -> dict[str, tuple[str, str]]:
    """Each experiment row of the page: name -> (verdict, reason) as the browser shows them."""
    from selenium.webdriver.common.by import By

    return {row.get_attribute("data-experiment"): (row.find_element(By.CSS_SELECTOR, ".verdict").text,
                                                   row.find_element(By.CSS_SELECTOR, ".reason").text)
            for row in driver.find_elements(By.CSS_SELECTOR, "tr.experiment-row")}
