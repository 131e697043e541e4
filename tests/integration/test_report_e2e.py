"""``nrl-launch report`` after real nightlies on the local Slurm, opened in headless chromium.

Two nights of one suite (``tests/test_suites/nightly.txt`` of the test's copy of the
repository: the one-node recipes, as the local cluster refuses the two-node ones),
each launched with WATCH into its own CODE_SNAPSHOT_DIRNAME:

* night 1: two recipes pass, one fails a metric check (NRL_FORCE_FAILING_CHECK, as the
  WATCH golden test does), one crashes before training (``exit 3``);
* night 2 (``E2E_NIGHT2=1`` in the jobs' environment, another data seed): the failing and
  the crashed recipe pass, one that passed fails its check, one passes again.

Then the report of night 1 holds every verdict and reason, GPU-hours planned and used, the
timeline and the curves, and fetches nothing; night 2 ``--compare``d with night 1 lists
exactly the three experiments whose verdict changed and the metric deltas; both WATCHes
recorded their nights in the history (``--since``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from reportkit import browser, drawn, open_page, shown_rows

from testkit import DPO_1N, QUICK, REPO, SFT, SUBMITTED_RE, Launcher, finish, no_traceback, start_nrl_launch

pytestmark = pytest.mark.slurm

CRASH = "grpo-qwen2.5-1.5b-1n8g-megatron-long"
SUITE = [SFT, QUICK, DPO_1N, CRASH]
GPUS = {SFT: 8, QUICK: 4, DPO_1N: 8, CRASH: 8}  # NUM_NODES x GPUS_PER_NODE of each recipe's CONFIG block
END = "# ===== END CONFIG =====\n"
# What each recipe does on the first night (and, inverted, on the second).
BEHAVIOUR = {
    DPO_1N: '[[ -n "${E2E_NIGHT2:-}" ]] || export NRL_FORCE_FAILING_CHECK=1  # e2e: fails night 1\n',
    CRASH: '[[ -n "${E2E_NIGHT2:-}" ]] || { echo "[e2e] crashing before training"; exit 3; }\n',
    QUICK: '[[ -z "${E2E_NIGHT2:-}" ]] || export NRL_FORCE_FAILING_CHECK=1  # e2e: fails night 2\n',
}


def recipe(name: str) -> str:
    return f"tests/test_suites/{'vlm' if name.startswith('vlm_') else 'llm'}/{name}.sh"


def suite_files() -> dict[str, str]:
    files = {"tests/test_suites/nightly.txt": "# the one-node nightly\n" + "".join(f"{recipe(n)}\n" for n in SUITE)}
    for name, line in BEHAVIOUR.items():
        text = (REPO / recipe(name)).read_text()
        assert END in text, name
        files[recipe(name)] = text.replace(END, END + line, 1)
    return files


def launch_night(lau: Launcher, dirname: str, db: Path, **env: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(REPO / "tools" / "launch"), "tests/test_suites/nightly.txt"], cwd=lau.repo,
                         env={**lau.env, "WATCH": "1", "WATCH_INTERVAL": "1", "MAX_STEPS": "4",
                              "CODE_SNAPSHOT_DIRNAME": dirname, "NRL_REPORT_DB": str(db), **env},
                         capture_output=True, text=True, timeout=900)
    lau.track(*SUBMITTED_RE.findall(res.stdout))
    no_traceback(res.stderr)
    return res


def report(lau: Launcher, db: Path, *args: str) -> Path:
    """``nrl-launch report tests/test_suites/nightly.txt ARGS`` from the repository root: the page's path."""
    proc = start_nrl_launch("report", "tests/test_suites/nightly.txt", *args, cwd=lau.repo,
                            env={**lau.env, "PYTHONPATH": str(REPO / "tools"), "NRL_REPORT_DB": str(db)})
    code, out, err = finish(proc, timeout=300)
    assert code == 0, err
    no_traceback(err)
    path = Path(out.strip())
    assert path.is_file(), out
    return path


def test_two_nightlies_reported_compared_and_remembered(local_slurm, tmp_path: Path, request) -> None:
    lau = Launcher(local_slurm, tmp_path, "report", suite_files())
    request.addfinalizer(lau.close)
    db = tmp_path / "history.sqlite3"

    first = launch_night(lau, "code_snapshots", db)
    assert first.returncode == 1, first.stdout + first.stderr
    page = report(lau, db)
    data = json.loads(report(lau, db, "--format", "json", "-o", str(tmp_path / "night1.json")).read_text())
    rows = {e["name"]: e for e in data["experiments"]}
    assert list(rows) == SUITE  # the suite's order
    assert {n: e["status"] for n, e in rows.items()} == {
        SFT: "METRIC PASS", QUICK: "METRIC PASS", DPO_1N: "METRIC FAIL", CRASH: "GENERAL FAIL"}
    assert rows[DPO_1N]["reason"].startswith("failing check: train/accuracy@4 = ")
    assert rows[DPO_1N]["reason"].endswith("> 2; jobs: " + ", ".join(
        f"{j['job_id']} {j['state']} (exit {j['exit_code']})" for j in rows[DPO_1N]["jobs"]))
    assert rows[CRASH]["reason"].startswith("no Metric Checks in its driver logs; jobs: ")
    assert all(j["state"] == "FAILED" and j["exit_code"] == "3:0" for j in rows[CRASH]["jobs"])
    summary = data["summary"]
    assert (summary["passed"], summary["failed"], summary["running"]) == (2, 2, 0)
    assert summary["gpu_hours_planned"] == sum(e["gpu_hours_planned"] for e in rows.values()) > 0
    # every job ran and has Slurm's times (the local cluster: job completion records, no accounting);
    # used = running time x the CONFIG's GPUs (Slurm's times have whole seconds: a fast job may show 0)
    assert summary["without_times"] == 0
    for name, exp in rows.items():
        seconds = sum(j["end"] - j["start"] for j in exp["jobs"])
        assert exp["gpu_hours_used"] == pytest.approx(seconds / 3600 * GPUS[name], abs=1e-3), name
    assert summary["gpu_hours_used"] == pytest.approx(sum(e["gpu_hours_used"] for e in rows.values()), abs=1e-3)
    assert all(j["start"] and j["end"] >= j["start"] >= j["submit"] for e in rows.values() for j in e["jobs"])
    assert [len(rows[n]["series"]) > 0 for n in SUITE] == [True, True, True, False]  # the crash never trained

    with browser(tmp_path / "profile") as driver:
        open_page(driver, page, tmp_path / "night1.png")
        assert shown_rows(driver) == {n: (e["status"], e["reason"]) for n, e in rows.items()}
        planned = driver.find_element("id", "gpu-hours-planned").text
        used = driver.find_element("id", "gpu-hours-used").text
        assert planned.startswith(str(summary["gpu_hours_planned"])) and "planned" in planned
        assert used.startswith(f"{summary['gpu_hours_used']:,.2f}") and "used" in used
        timeline = drawn(driver, "svg#timeline-svg")
        assert timeline and timeline[0]["h"] > 0 and timeline[0]["shapes"] >= 2 * sum(len(e["jobs"])
                                                                                      for e in rows.values())
        curves = drawn(driver, "svg.curve")
        assert len(curves) == sum(len(e["series"]) for e in rows.values()) and all(c["w"] > 0 for c in curves)

    second = launch_night(lau, "code_snapshots_night2", db, E2E_NIGHT2="1", EXTRA_SCRIPT_ARGS="data.seed=4321")
    assert second.returncode == 1, second.stdout + second.stderr
    compared = json.loads(report(lau, db, "--code-snapshot-dirname", "code_snapshots_night2", "--compare",
                                 "code_snapshots", "--since", "7d", "--format", "json", "-o",
                                 str(tmp_path / "night2.json")).read_text())
    comparison = compared["comparison"]
    assert {(c["name"], c["before"], c["after"]) for c in comparison["changed"]} == {
        (QUICK, "METRIC PASS", "METRIC FAIL"), (DPO_1N, "METRIC FAIL", "METRIC PASS"),
        (CRASH, "GENERAL FAIL", "METRIC PASS")}
    assert [c["name"] for c in comparison["newly_failing"]] == [QUICK]
    assert sorted(c["name"] for c in comparison["newly_passing"]) == sorted([DPO_1N, CRASH])
    deltas = comparison["deltas"]
    assert {d["experiment"] for d in deltas} == {SFT, QUICK, DPO_1N}  # the crash had no metrics to compare
    assert all(d["step"] == 4 and d["after"] != d["before"] for d in deltas)
    sizes = [abs(d["after"] - d["before"]) / abs(d["before"]) for d in deltas if d["before"]]
    assert sizes == sorted(sizes, reverse=True)
    # both WATCHes recorded their night: two nights per recipe
    nights = {r["experiment"]: [n["verdict"] for n in r["nights"]] for r in compared["history"]["recipes"]}
    assert nights == {SFT: ["METRIC PASS"] * 2, QUICK: ["METRIC PASS", "METRIC FAIL"],
                      DPO_1N: ["METRIC FAIL", "METRIC PASS"], CRASH: ["GENERAL FAIL", "METRIC PASS"]}
