"""``nrl-launch report``: rows, reasons, GPU-hours, comparison and the page, from snapshot folders made
as a launch leaves them and a fake Slurm that remembers when jobs ran (the real cluster: tests/integration)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from reportkit import CHECKS_PASS, NIGHT_SPANS, T0, experiment, make_night, slurm_with_times, span_line, stamp

from nrl_launch.experiment.folder import SnapshotRoot
from nrl_launch.experiment.manifest import VIA_RETRY, RetryOrigin, append_run
from nrl_launch.report.checks import read_checks
from nrl_launch.report.collect import collect
from nrl_launch.report.compare import compare
from nrl_launch.report.model import Check, ExperimentResult, Series, report_from_data, report_to_data
from nrl_launch.report.timeline import LABEL_WIDTH, PLOT_WIDTH, layout
from nrl_launch.slurm.states import JobSpan, parse_scontrol_span, parse_spans
from testkit import FakeSlurm, run_cli

NOW = T0 + 3 * 3600


@pytest.fixture
def night(tmp_path: Path) -> SnapshotRoot:
    """A suite's snapshot root after a night (reportkit.make_night)."""
    return make_night(tmp_path / "repo")


def by_name(rows: tuple[ExperimentResult, ...]) -> dict[str, ExperimentResult]:
    return {row.name: row for row in rows}


def test_each_experiment_has_its_verdict_reason_cost_and_curves(night: SnapshotRoot) -> None:
    report = collect(night, None, slurm_with_times(NIGHT_SPANS).client(), now=NOW)
    rows = by_name(report.experiments)
    assert {name: row.status for name, row in rows.items()} == {
        "sft-pass": "METRIC PASS", "dpo-metric-fail": "METRIC FAIL", "grpo-crash": "GENERAL FAIL",
        "vlm-running": "RUNNING", "sft-cancelled": "CANCELLED"}
    assert rows["sft-pass"].reason == ("all 2 metric checks passed; "
                                       "jobs: 11 COMPLETED (exit 0:0), 12 COMPLETED (exit 0:0)")
    assert rows["dpo-metric-fail"].reason == ("failing check: train/accuracy@4 = 0.9 > 2; "
                                              "jobs: 21 FAILED (exit 1:0)")
    assert rows["grpo-crash"].reason == "no Metric Checks in its driver logs; jobs: 31 FAILED (exit 3:0)"
    assert rows["vlm-running"].reason == "1 of 2 jobs still queued; jobs: 41 COMPLETED (exit 0:0), 42 RUNNING"
    assert rows["sft-cancelled"].reason.startswith("cancelled with nrl-launch cancel at 20")
    # GPU-hours used: (end - start) x NUM_NODES x GPUS_PER_NODE, a running job up to now
    assert rows["sft-pass"].gpu_hours_used == pytest.approx((600 + 600) / 3600 * 8, abs=1e-3)
    assert rows["dpo-metric-fail"].gpu_hours_used == pytest.approx(1800 / 3600 * 16, abs=1e-3)
    assert rows["vlm-running"].gpu_hours_used == pytest.approx((540 + NOW - (T0 + 600)) / 3600 * 8, abs=1e-3)
    assert rows["sft-cancelled"].gpu_hours_used is None  # never started
    assert rows["sft-pass"].wall_seconds == 1200
    assert (rows["sft-pass"].runs, rows["sft-pass"].steps, rows["sft-pass"].max_steps) == (2, 4, 4)
    assert [c.text() for c in rows["sft-pass"].checks] == ["train/loss@4 = 0.1667 < 0.5",
                                                            "train/accuracy@4 = 0.9 > 0.5"]
    assert [s.name for s in rows["grpo-crash"].series] == ["train/loss", "train/accuracy"]
    assert rows["grpo-crash"].series[0].points[:2] == ((1, 1.0), (2, 0.5))
    assert [Path(log).parent.name for log in rows["sft-pass"].logs] == ["11-logs", "12-logs"]
    summary = report.summary
    assert (summary.experiments, summary.passed, summary.failed, summary.running, summary.cancelled) == (5, 1, 2, 1, 1)
    assert summary.gpu_hours_planned == 20
    assert summary.gpu_hours_used == pytest.approx(sum(r.gpu_hours_used or 0 for r in report.experiments), abs=1e-3)


def test_a_crash_that_never_started_says_so(tmp_path: Path) -> None:
    root = tmp_path / "code_snapshots"
    experiment(root, "never", jobs=["7"], steps=None)
    report = collect(SnapshotRoot(tmp_path, "code_snapshots"), None,
                     slurm_with_times([span_line("7", "FAILED", T0, T0 + 5, T0 + 6, exit_code="1:0")]).client(),
                     now=NOW)
    row = report.experiments[0]
    assert (row.status, row.series, row.steps) == ("GENERAL FAIL", (), None)
    assert row.reason == "no job of this experiment ever started (no driver log); jobs: 7 FAILED (exit 1:0)"


def test_slurm_unreachable_leaves_states_unknown_and_says_why(night: SnapshotRoot) -> None:
    report = collect(night, ["sft-pass", "grpo-crash"], FakeSlurm(down=True).client(), now=NOW)
    assert report.slurm_error and "Unable to contact slurm controller" in report.slurm_error
    rows = by_name(report.experiments)
    assert rows["sft-pass"].status == "METRIC PASS"  # the logs judge, as WATCH does
    assert [j.state for j in rows["sft-pass"].jobs] == ["unknown", "unknown"]
    assert rows["sft-pass"].gpu_hours_used is None
    assert report.summary.without_times == 2


@pytest.mark.parametrize("completion", [False, True], ids=["accounting", "job completion records"])
def test_job_times_from_accounting_or_the_completion_records(night: SnapshotRoot, completion: bool) -> None:
    fake = slurm_with_times(NIGHT_SPANS, completion=completion)
    spans = fake.client().spans(["11", "21"])
    assert spans["21"] == JobSpan("21", "FAILED", T0, T0 + 120, T0 + 1920, "1:0", "node[1-2]", None)
    asked = [c.argv[:2] for c in fake.calls]
    assert asked == ([("sacct", "-n")] if not completion else [("sacct", "-n"), ("sacct", "-c")])


def test_job_times_from_the_controller_when_sacct_has_none() -> None:
    fake = FakeSlurm()  # accounting off, no completion records: scontrol
    fake.add_job("5", "COMPLETED")
    spans = fake.client().spans(["5", "6"])
    assert list(spans) == ["5"] and spans["5"].state == "COMPLETED"
    assert [c.argv[0] for c in fake.calls] == ["sacct", "sacct", "scontrol", "scontrol"]


@pytest.mark.parametrize(("line", "expected"), [
    (span_line("1", "PENDING", T0, T0 + 999, T0 + 9999), JobSpan("1", "PENDING", T0, None, None, "0:0", "node1")),
    (span_line("1", "RUNNING", T0, T0 + 5, T0 + 9999), JobSpan("1", "RUNNING", T0, T0 + 5, None, "0:0", "node1")),
    (span_line("1", "CANCELLED by 0", T0, None, T0 + 3, nodes="None assigned"),
     JobSpan("1", "CANCELLED", T0, None, T0 + 3, "0:0", "")),
    (span_line("1", "COMPLETED", T0, T0 + 1, T0 + 2, tres="billing=1,cpu=2,gres/gpu=16,node=2"),
     JobSpan("1", "COMPLETED", T0, T0 + 1, T0 + 2, "0:0", "node1", 16)),
    ("1|garbage", None), ("2|" + stamp(T0) + "|x|x|COMPLETED|0:0|n|", None),
], ids=["pending: an expected start is no start", "running: a time limit is no end", "cancelled before start",
        "GPUs from AllocTRES", "malformed", "another job"])
def test_sacct_lines(line: str, expected: JobSpan | None) -> None:
    assert parse_spans(line + "\n", ["1"]).get("1") == expected


def test_scontrol_span() -> None:
    text = (f"JobId=9 JobName=x JobState=PENDING Reason=Dependency SubmitTime={stamp(T0)} "
            f"StartTime={stamp(T0 + 50)} EndTime={stamp(T0 + 99)} ExitCode=0:0 NodeList=(null)")
    assert parse_scontrol_span("9", text) == JobSpan("9", "PENDING", T0, None, None, "0:0", "")
    assert parse_scontrol_span("9", "slurm_load_jobs error") is None


@pytest.mark.parametrize(("lines", "expected"), [
    (["log:Metric Checks", "log-  [PASS] train/loss@40 = 0.1234 < 0.5", "log-  [FAIL] acc@40 = 0.8 > 0.9"],
     [Check("train/loss", 40, 0.1234, "<", 0.5, True), Check("acc", 40, 0.8, ">", 0.9, False)]),
    (["a-  [FAIL] loss@6 = missing < 0.5"], [Check("loss", 6, None, "<", 0.5, False)]),
    # a later run of the chain checks again: the last word counts, in the order first printed
    (["a-  [FAIL] loss@6 = 0.9 < 0.5", "a-  [PASS] acc@6 = 0.9 > 0.5", "b-  [PASS] loss@6 = 0.4 < 0.5"],
     [Check("loss", 6, 0.4, "<", 0.5, True), Check("acc", 6, 0.9, ">", 0.5, True)]),
    (["a-  │ train/loss[-1] < 1.1 │ PASS   │", "a-  [PASS] loss@6 = 1 < nan", "a-  [PASS] x = 1 < 2"], []),
], ids=["max and min", "missing value", "last word", "other shapes"])
def test_checks_read_from_the_evidence(lines: list[str], expected: list[Check]) -> None:
    assert list(read_checks(lines)) == expected


def row(name: str, status: str, **series: dict[int, float]) -> ExperimentResult:
    return ExperimentResult(name, status, "", series=tuple(Series(k.replace("_", "/"), tuple(sorted(v.items())))
                                                            for k, v in series.items()))


def test_compare_lists_exactly_the_verdict_changes_and_sorts_deltas_by_size() -> None:
    before = [row("a", "METRIC PASS", train_loss={1: 1.0, 4: 0.5}), row("b", "METRIC FAIL", train_loss={4: 2.0}),
              row("c", "METRIC PASS", train_loss={4: 1.0}, train_acc={4: 0.5}), row("gone", "METRIC PASS"),
              row("later", "NO SNAPSHOT")]
    now = [row("a", "GENERAL FAIL", train_loss={1: 1.0, 3: 0.7}), row("b", "METRIC PASS", train_loss={4: 2.0}),
           row("c", "METRIC PASS", train_loss={4: 1.1, 6: 0.1}, train_acc={4: 0.0}), row("new", "RUNNING"),
           row("later", "METRIC PASS")]
    result = compare(now, before, "last night")
    assert [(c.name, c.before, c.after) for c in result.newly_failing] == [("a", "METRIC PASS", "GENERAL FAIL")]
    assert [(c.name, c.before, c.after) for c in result.newly_passing] == [("b", "METRIC FAIL", "METRIC PASS")]
    assert [c.name for c in result.changed] == ["a", "b"]
    # a suite entry that was not launched last night is new tonight, not newly passing
    assert (result.only_here, result.only_there) == (("new", "later"), ("gone",))
    # at the last step both have (a: step 1, c: step 4); unchanged ones left out; -100 % before +10 %
    assert [(d.experiment, d.metric, d.step, d.change) for d in result.deltas] == [
        ("c", "train/acc", 4, -0.5), ("c", "train/loss", 4, pytest.approx(0.1))]


def test_the_json_is_the_data_and_reads_back(night: SnapshotRoot) -> None:
    report = collect(night, None, slurm_with_times(NIGHT_SPANS).client(), now=NOW)
    data = json.loads(json.dumps(report_to_data(report)))
    assert (data["format"], data["version"]) == ("nrl-launch-report", 1)
    again = report_from_data(data, "x.json")
    assert [(r.name, r.status, r.series) for r in again] == [(r.name, r.status, r.series) for r in report.experiments]
    with pytest.raises(Exception, match="x.json: report format version 99"):
        report_from_data({**data, "version": 99}, "x.json")
    with pytest.raises(Exception, match="x.json: not a report"):
        report_from_data({"rows": []}, "x.json")


def test_timeline_places_each_span_in_time(night: SnapshotRoot) -> None:
    report = collect(night, None, slurm_with_times(NIGHT_SPANS).client(), now=NOW)
    timeline = layout(report.experiments, NOW)
    assert timeline is not None
    rows = {r.name: r for r in timeline.rows}
    length = NOW - T0  # from the first submission to now (a job still runs)

    def x(when: float) -> float:
        return LABEL_WIDTH + (when - T0) / length * PLOT_WIDTH

    bars = rows["sft-pass"].bars
    # the waits first, the runs drawn over them (run 2 waited while run 1 ran)
    assert [(b.kind, round(b.x, 3), round(b.x + b.width, 3)) for b in bars] == [
        ("pending", round(x(T0), 3), round(x(T0 + 60), 3)), ("pending", round(x(T0), 3), round(x(T0 + 660), 3)),
        ("running", round(x(T0 + 60), 3), round(x(T0 + 660), 3)),
        ("running", round(x(T0 + 660), 3), round(x(T0 + 1260), 3))]
    assert rows["vlm-running"].bars[-1].x + rows["vlm-running"].bars[-1].width == pytest.approx(x(NOW))
    assert [b.kind for b in rows["sft-cancelled"].bars] == ["pending"]
    assert all(LABEL_WIDTH <= t.x <= LABEL_WIDTH + PLOT_WIDTH for t in timeline.ticks) and timeline.ticks
    assert layout([row("a", "RUNNING")], NOW) is None


def write_page(night: SnapshotRoot, tmp_path: Path, *args: str, slurm: FakeSlurm | None = None,
               db: Path | None = None) -> tuple[str, Path]:
    out = tmp_path / "page.html"
    result = run_cli("report", "--project-root", str(night.project_root), "--output", str(out), *args,
                     env={"NRL_REPORT_DB": str(db or tmp_path / "history.sqlite3")},
                     slurm=slurm or slurm_with_times(NIGHT_SPANS))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    return out.read_text(), out


def test_the_page_holds_every_row_and_fetches_nothing(night: SnapshotRoot, tmp_path: Path) -> None:
    page, out = write_page(night, tmp_path)
    for name in ("sft-pass", "dpo-metric-fail", "grpo-crash", "vlm-running", "sft-cancelled"):
        assert f'data-experiment="{name}"' in page
    assert "failing check: train/accuracy@4 = 0.9 &gt; 2" in page
    assert page.count('<svg class="curve"') == 10  # 2 series x 5 experiments
    assert 'id="timeline-svg"' in page
    # nothing to fetch: no script, stylesheet, image, font or frame; links only to the logs
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b|@import|url\(|src=", page)
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert {h for h in hrefs if not h.startswith("#")} == {
        f"repo/code_snapshots/{n}/{j}-logs/ray-driver.log" for n, j in
        [("sft-pass", 11), ("sft-pass", 12), ("dpo-metric-fail", 21), ("grpo-crash", 31), ("vlm-running", 41)]}
    assert all((out.parent / h).is_file() for h in hrefs if not h.startswith("#"))


def test_a_suite_names_its_experiments_and_budget(night: SnapshotRoot, tmp_path: Path) -> None:
    repo = night.project_root
    (repo / "tests/test_suites").mkdir(parents=True)
    (repo / ".git").mkdir()  # suite entries are relative to the repository root
    (repo / "tests/test_suites/nightly.txt").write_text("# two\ntests/test_suites/llm/sft-pass.sh\n\n"
                                                         "tests/test_suites/llm/never-launched.sh\n")
    (repo / "pyproject.toml").write_text('[tool.nrl-launch.lint.suites.nightly]\nbudget = 7\n')
    out = tmp_path / "r.json"
    result = run_cli("report", "--project-root", str(repo), str(repo / "tests/test_suites/nightly.txt"),
                     "--format", "json", "-o", str(out), env={"NRL_REPORT_DB": ""},
                     slurm=slurm_with_times(NIGHT_SPANS))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [(e["name"], e["status"]) for e in data["experiments"]] == [("sft-pass", "METRIC PASS"),
                                                                        ("never-launched", "NO SNAPSHOT")]
    assert (data["suite"], data["summary"]["budget"], data["summary"]["failed"]) == ("nightly", 7, 1)


def test_compare_with_another_reports_json(night: SnapshotRoot, tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.json"
    result = run_cli("report", "--project-root", str(night.project_root), "--format", "json", "-o", str(earlier),
                     env={"NRL_REPORT_DB": ""}, slurm=slurm_with_times(NIGHT_SPANS))
    assert result.exit_code == 0, result.output
    data = json.loads(earlier.read_text())
    for exp in data["experiments"]:  # last night: the crash passed, the pass had a higher loss
        if exp["name"] == "grpo-crash":
            exp["status"] = "METRIC PASS"
        if exp["name"] == "sft-pass":
            exp["series"][0]["points"][-1][1] += 0.5
    earlier.write_text(json.dumps(data))
    page, _ = write_page(night, tmp_path, "--compare", str(earlier))
    newly_failing = re.search(r'<table id="newly-failing">(.*?)</table>', page, re.S)
    assert newly_failing and re.findall(r'data-experiment="([^"]+)"', newly_failing.group(1)) == ["grpo-crash"]
    assert "<h3>Newly passing (0)</h3>" in page
    deltas = re.search(r'<table id="deltas">(.*?)</table>', page, re.S)
    assert deltas and re.findall(r'<tr class="delta"><td>([^<]+)</td><td>([^<]+)</td>', deltas.group(1)) == [
        ("sft-pass", "train/loss")]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--since", "yesterday"], 2, "--since must be a positive age"),
    (["--compare", "nowhere"], 2, "--compare nowhere: no such file or folder"),
    (["../etc"], 1, "is not an experiment name"),
    (["sft-pass", "nope"], 1, "no snapshot of experiment 'nope'"),
    (["--format", "pdf"], 2, "Invalid value for '--format'"),
    (["--code-snapshot-dirname", "elsewhere"], 1, "no snapshots to report: "),
])
def test_bad_arguments_write_nothing(night: SnapshotRoot, tmp_path: Path, args: list[str], code: int,
                                     message: str) -> None:
    out = tmp_path / "page.html"
    result = run_cli("report", "--project-root", str(night.project_root), "-o", str(out), *args,
                     env={"NRL_REPORT_DB": str(tmp_path / "h.db")}, slurm=slurm_with_times(NIGHT_SPANS))
    assert (result.exit_code, result.stdout) == (code, "")
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "h.db").exists()


def test_retries_and_continue_runs_count_in_the_latest_launch(tmp_path: Path) -> None:
    root = tmp_path / "code_snapshots"
    folder = experiment(root, "exp", jobs=["1", "2"], logs={"4": CHECKS_PASS.format(step=4)})
    append_run(folder, "3", "3", VIA_RETRY, retry=RetryOrigin("2", "NODE_FAIL", "node2", "node2"))
    append_run(folder, "4", "4", "continue.sh")
    lines = [span_line(str(i), "COMPLETED", T0, T0 + 100 * i, T0 + 100 * i + 50) for i in range(1, 5)]
    row = collect(SnapshotRoot(tmp_path, "code_snapshots"), None, slurm_with_times(lines).client(),
                  now=NOW).experiments[0]
    assert (row.status, row.runs, row.retries) == ("METRIC PASS", 4, 1)
    assert [(j.job_id, j.run, j.via) for j in row.jobs] == [("1", "1/2", "launcher"), ("2", "2/2", "launcher"),
                                                             ("3", "3", "retry"), ("4", "4", "continue.sh")]
    assert row.wall_seconds == 350 and row.gpu_hours_used == pytest.approx(4 * 50 / 3600 * 8, abs=1e-3)
    # a relaunch starts a new launch: the report shows it alone
    append_run(folder, "5", "1/1")
    row = collect(SnapshotRoot(tmp_path, "code_snapshots"), None, slurm_with_times(lines).client(),
                  now=NOW).experiments[0]
    assert (row.runs, row.retries, [j.job_id for j in row.jobs], row.status) == (1, 0, ["5"], "GENERAL FAIL")
