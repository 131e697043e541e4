"""Tests of nrl_launch.follow.status with snapshot folders made by hand and a fake Slurm query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nrl_launch.experiment.folder import SnapshotRoot
from nrl_launch.experiment.manifest import (
    MANIFEST_NAME,
    Manifest,
    Source,
    append_cancellation,
    append_run,
    write_manifest,
)
from nrl_launch.follow.status import StatusReport, collect, format_json, format_table, max_step, problem, summary
from nrl_launch.slurm.client import Completed, SlurmClient
from testkit import Call, FakeSlurm, table_cell

PASS_LOG = """starting
 Metric Checks
┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━┓
┃ Metric               ┃ Status ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━┩
│ train/loss[-1] < 1.1 │ PASS   │
└──────────────────────┴────────┘

done, clean shutdown
"""
FAIL_LOG = PASS_LOG.replace("│ PASS   │", "│ FAIL   │")


def make_snapshot(root: Path, name: str, *, kind: str = "llm", runs: list[tuple[str, str]] = (),
                  steps: dict | None = None, logs: dict[str, str] | None = None,
                  dirty: bool = False) -> Path:
    """A snapshot folder as the launcher and a recipe would leave it."""
    folder = root / name
    folder.mkdir(parents=True)
    write_manifest(folder, Manifest(name, f"tests/test_suites/{kind}/{name}.sh",
                                    source=Source(commit="0123456789abcdef0123", dirty=dirty, dirty_files=()),
                                    config=(("NUM_NODES", "1"), ("MAX_STEPS", "20"))))
    for job_id, run in runs:
        append_run(folder, job_id, run)
    if steps is not None:
        exp = folder / "tests/test_suites" / kind / name
        exp.mkdir(parents=True)
        (exp / "metrics.json").write_text(json.dumps(steps))
    for job_id, text in (logs or {}).items():
        (folder / f"{job_id}-logs").mkdir()
        (folder / f"{job_id}-logs/ray-driver.log").write_text(text)
    return folder


def collect_status(root: Path, names: list[str] | None, slurm: SlurmClient) -> StatusReport:
    """``status`` of the snapshots in the folder ``root``."""
    return collect(SnapshotRoot(root.parent, root.name), names, slurm)


def fake_slurm(states: dict[str, str] | None = None, error: bool = False, reason: str = "None") -> FakeSlurm:
    """A Slurm that knows these jobs (or cannot be reached at all)."""
    fake = FakeSlurm(down=error, accounting=True)
    for job_id, state in (states or {}).items():
        fake.add_job(job_id, state, reason=reason if state == "PENDING" else "None")
    return fake


@pytest.fixture
def snapshots(tmp_path: Path) -> Path:
    """Three snapshots: one passing and running, one failing, one never run."""
    root = tmp_path / "code_snapshots"
    make_snapshot(root, "exp-a", runs=[("101", "1/2"), ("102", "2/2")],
                  steps={"train/loss": {"1": 0.7, "2": 0.6, "10": 0.5}, "val/acc": {"12": 0.9}},
                  logs={"101": "step 6, no checks yet\n", "102": PASS_LOG})
    make_snapshot(root, "exp-b", kind="vlm", runs=[("201", "1/1")], steps={"loss": {"3": 1.0}},
                  logs={"201": FAIL_LOG}, dirty=True)
    make_snapshot(root, "exp-c")
    (root / ".exp-d.tmp-host-1-abc").mkdir()  # an unfinished snapshot is not listed
    return root


def test_collect_status_rows(snapshots: Path) -> None:
    slurm = fake_slurm({"101": "COMPLETED", "102": "RUNNING", "201": "FAILED"})
    rows = collect_status(snapshots, None, slurm.client()).rows
    # one query for every job of every row: squeue, then accounting for those that left the queue
    assert [c.argv for c in slurm.calls] == [("squeue", "-h", "-o", "%i|%T|%r|%N", "-j", "101,102,201"),
                                             ("sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode,NodeList,Reason",
                                              "-j", "101,201")]
    assert [r.experiment for r in rows] == ["exp-a", "exp-b", "exp-c"]
    a, b, c = rows
    # exp-a's logs pass, but its job 102 still runs: no verdict until nothing of it is queued
    assert (a.commit, a.dirty, a.runs, a.steps, a.verdict, a.waiting) == ("0123456789ab", False, 2, 12, None,
                                                                         "jobs queued")
    assert [(j.job_id, j.run, j.state) for j in a.jobs] == [("101", "1/2", "COMPLETED"),
                                                             ("102", "2/2", "RUNNING")]
    assert (b.dirty, b.steps, b.verdict, b.metric_checks, b.jobs[0].state) == (True, 3, "METRIC FAIL", "FAIL",
                                                                              "FAILED")
    assert (c.runs, c.jobs, c.steps, c.verdict, c.waiting, c.problem) == (0, (), None, None, "no runs", None)


def test_unknown_states(snapshots: Path) -> None:
    rows = collect_status(snapshots, ["exp-a"], fake_slurm({"101": "COMPLETED"}).client()).rows
    assert [j.state for j in rows[0].jobs] == ["COMPLETED", "unknown"]
    rows = collect_status(snapshots, ["exp-a"], fake_slurm(error=True).client()).rows
    assert [j.state for j in rows[0].jobs] == ["unknown", "unknown"]


def test_other_errors_of_the_query_propagate(snapshots: Path) -> None:
    def broken(call: Call) -> Completed:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        collect_status(snapshots, None, FakeSlurm(answers={"squeue": broken}).client())


def test_named_experiments_and_missing_ones(snapshots: Path) -> None:
    slurm = fake_slurm()
    rows = collect_status(snapshots, ["exp-c", "nope"], slurm.client()).rows
    assert [(r.experiment, r.problem) for r in rows] == [("exp-c", None), ("nope", "no snapshot")]
    assert slurm.calls == []  # no job ids: Slurm is not asked
    assert collect_status(snapshots.parent / "absent", None, slurm.client()).rows == ()


def test_snapshot_without_manifest(snapshots: Path) -> None:
    (snapshots / "old").mkdir()
    (snapshots / "broken").mkdir()
    (snapshots / "broken" / MANIFEST_NAME).write_text("runs: [\n")
    rows = {r.experiment: r for r in collect_status(snapshots, ["old", "broken"], fake_slurm().client()).rows}
    assert rows["old"].problem == f"no manifest ({MANIFEST_NAME})"
    assert "corrupt manifest" in rows["broken"].problem


def test_verdict_comes_from_the_recorded_jobs_logs_as_watch_reads_them(tmp_path: Path) -> None:
    # job 11 passed; job 12 (a run chained after the end) exited early without checks;
    # a stray log of a job the manifest does not record is ignored
    make_snapshot(tmp_path, "x", runs=[("11", "1/1"), ("12", "2/1")],
                  logs={"11": PASS_LOG, "12": "MAX_STEPS reached, exiting\n", "99": FAIL_LOG})
    assert collect_status(tmp_path, ["x"], fake_slurm().client()).rows[0].metric_checks == "PASS"
    # any failed check in any of the experiment's logs fails it, as WATCH judges
    make_snapshot(tmp_path, "y", runs=[("21", "1/2"), ("22", "2/2")], logs={"21": FAIL_LOG, "22": PASS_LOG})
    assert collect_status(tmp_path, ["y"], fake_slurm().client()).rows[0].metric_checks == "FAIL"
    make_snapshot(tmp_path, "z", runs=[("31", "1/1")], logs={"31": "no checks here\nFAIL\n"})
    row = collect_status(tmp_path, ["z"], fake_slurm().client()).rows[0]
    assert (row.verdict, row.metric_checks) == ("GENERAL FAIL", "GENERAL FAIL")  # as WATCH: no Metric Checks at all
    # a requeued job: the first attempt crashed, the second passed
    folder = make_snapshot(tmp_path, "w", runs=[("41", "1/1")], logs={"41": "node failure\n"})
    (folder / "41-1-logs").mkdir()
    (folder / "41-1-logs" / "ray-driver.log").write_text(PASS_LOG)
    assert collect_status(tmp_path, ["w"], fake_slurm().client()).rows[0].metric_checks == "PASS"


def test_logs_under_base_log_dir_are_found(tmp_path: Path) -> None:
    folder = make_snapshot(tmp_path / "snaps", "v", runs=[])
    append_run(folder, "51", "1/1", base_log_dir=str(tmp_path / "logs"))
    (tmp_path / "logs" / "51-logs").mkdir(parents=True)
    (tmp_path / "logs" / "51-logs" / "ray-driver.log").write_text(FAIL_LOG)
    assert collect_status(tmp_path / "snaps", ["v"], fake_slurm().client()).rows[0].metric_checks == "FAIL"


def test_max_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"a": {"2": 1, "10": 2}, "b": {"9": 0}, "c": 5, "d": {"x": 1}}))
    assert max_step(path) == 10
    path.write_text("{not json")
    assert max_step(path) is None
    path.write_text("{}")
    assert max_step(path) is None
    # keys Python calls digits that int() refuses (superscripts), and other non-step keys, are skipped
    path.write_text(json.dumps({"a": {"\u00b2": 1, "7": 2, "-": 3, "1e3": 4, " 8": 5}}))
    assert max_step(path) == 7


def test_formats(snapshots: Path) -> None:
    found = collect_status(snapshots, ["exp-a", "exp-b", "nope"],
                           fake_slurm({"101": "COMPLETED", "102": "PENDING"}, reason="Dependency").client())
    table = format_table(found, wide=True).splitlines()
    assert table[0].split() == ["EXPERIMENT", "COMMIT", "DIRTY", "RUNS", "JOBS", "STEPS", "VERDICT", "LOG", "NOTE"]
    log_a = snapshots / "exp-a" / "102-logs" / "ray-driver.log"
    assert [table_cell(table, 1, column) for column in table[0].split()] == [
        "exp-a", "0123456789ab", "no", "2", "101 COMPLETED, 102 PENDING (Dependency)", "12/20", "queued", str(log_a),
        ""]
    assert [table_cell(table, 2, column) for column in table[0].split()[:7]] == [
        "exp-b", "0123456789ab", "yes", "1", "201 unknown", "3/20", "METRIC FAIL"]
    assert table[3].split() == ["nope", "-", "-", "-", "-", "-", "-", "-", "no", "snapshot"]
    narrow = format_table(found, width=160).splitlines()
    assert table_cell(narrow, 1, "JOBS") == "1 COMPLETED, 1 PENDING (Dependency)"  # readable: how many in each state
    data = json.loads(format_json(found))
    assert data[0]["jobs"] == [{"job_id": "101", "run": "1/2", "state": "COMPLETED", "reason": ""},
                               {"job_id": "102", "run": "2/2", "state": "PENDING", "reason": "Dependency"}]
    assert (data[0]["steps"], data[0]["max_steps"], data[0]["log"]) == (12, 20, str(log_a))
    assert (data[0]["verdict"], data[0]["waiting"]) == (None, "jobs queued")
    assert (data[1]["verdict"], data[1]["metric_checks"]) == ("METRIC FAIL", "FAIL")
    assert data[2]["problem"] == "no snapshot"
    assert summary(found) == ("3 experiments, 3 jobs: 0 passed, 1 failed, 1 with jobs queued, 1 without a "
                              "verdict yet")
    assert problem(found) == "no snapshot of nope"


LONG_NAME = "grpo-qwen3-235b-a22b-instruct-2507-32n8g-megatron-tp4pp4ep16-seqpack-fp8-long-context-rollouts.v3"


@pytest.fixture
def long_named(tmp_path: Path) -> StatusReport:
    """One experiment with a 97-character name and 9 pending runs."""
    make_snapshot(tmp_path, LONG_NAME, runs=[(str(1000 + i), f"{i}/9") for i in range(1, 10)],
                  logs={"1009": PASS_LOG})
    make_snapshot(tmp_path, "short", runs=[("2001", "1/1")], logs={"2001": PASS_LOG})
    states = {**{str(1000 + i): "PENDING" for i in range(1, 10)}, "2001": "COMPLETED"}
    return collect_status(tmp_path, None, fake_slurm(states).client())


@pytest.mark.parametrize("width", [200, 160, 120, 80, 60])
def test_the_table_fits_the_width_and_never_cuts_a_name(long_named: StatusReport, width: int) -> None:
    table = format_table(long_named, width=width).splitlines()
    assert max(len(line) for line in table if line != LONG_NAME) <= width  # a name longer than the width stays whole
    # each name whole, at the start of a line, so that it can be pasted into `nrl-launch watch`
    assert [line for line in table if line.startswith(LONG_NAME)] == [line for line in table if LONG_NAME in line]
    assert any(line.split()[0] == LONG_NAME for line in table)
    assert any(line.split()[0] == "short" for line in table)
    assert all("…" not in line.split()[0] for line in table[1:] if line and not line.startswith(" "))


def test_a_narrow_table_cuts_the_log_path_and_then_puts_names_on_their_own_lines(long_named: StatusReport) -> None:
    wide = format_table(long_named, wide=True).splitlines()
    assert wide[1].startswith(LONG_NAME + " ") and "…" not in wide[1] and len(wide[1]) > 200
    assert "1001 PENDING, 1002 PENDING" in wide[1]  # every job with its id
    # wide enough for the name: the log path gives way first (its end kept: the job's folder)
    table = format_table(long_named, width=200).splitlines()
    assert table[1].startswith(LONG_NAME + " ") and table_cell(table, 1, "LOG").startswith("…")
    assert table_cell(table, 1, "LOG").endswith("1009-logs/ray-driver.log")
    # too narrow for the name beside the rest: each name on a line of its own, its cells below it
    narrow = format_table(long_named, width=80).splitlines()
    assert narrow[0] == "EXPERIMENT" and narrow[1].startswith("  COMMIT")
    assert narrow[2] == LONG_NAME and narrow[3].startswith("  0123456789ab")
    assert narrow[4] == "short" and narrow[5].startswith("  0123456789ab")
    assert "9 PENDING" in narrow[3] and max(len(line) for line in narrow if line != LONG_NAME) <= 80
    # narrower still: the log column is left out, then the commit keeps git's short id
    assert "LOG" not in format_table(long_named, width=60).splitlines()[1]
    assert format_table(long_named, width=50).splitlines()[3].startswith("  0123456  no")


def test_the_status_command_takes_the_width_from_columns(tmp_path: Path, long_named: StatusReport) -> None:
    from testkit import run_cli

    root = str(tmp_path.parent)
    for columns, fits_beside in (("250", True), ("90", False)):
        result = run_cli("status", "--project-root", root, "--code-snapshot-dirname", tmp_path.name,
                         env={"COLUMNS": columns}, slurm=fake_slurm({"2001": "COMPLETED"}))
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines if line != LONG_NAME) <= int(columns)
        assert (LONG_NAME in lines) is not fits_beside, result.stdout


def test_slurm_unreachable_is_said_not_hidden(snapshots: Path) -> None:
    found = collect_status(snapshots, ["exp-a"], fake_slurm(error=True).client())
    assert [j.state for j in found.rows[0].jobs] == ["unknown", "unknown"]
    assert "Unable to contact slurm controller" in (found.slurm_error or "")
    assert problem(found).startswith("cannot ask Slurm about the jobs (")
    assert format_table(found).splitlines()[-1].startswith("(job states unknown: ")


def test_status_outside_a_repository_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testkit import Project, run_cli

    monkeypatch.chdir(tmp_path)  # no repository here, so no snapshot of a launch either
    outside = run_cli("status", slurm=fake_slurm())
    assert outside.exit_code == 2, outside.output
    assert outside.stdout == ""
    assert outside.stderr.startswith(f"[ERROR]: {tmp_path} is not inside a git repository: the snapshots of a launch "
                                     "are under its repository's root; run this in the repository, or give "
                                     "--project-root")
    for command in (["watch", "x"], ["cancel", "x"], ["logs", "x"]):
        assert run_cli(*command, slurm=fake_slurm()).exit_code == 2
    project = Project.create(tmp_path / "proj")  # a repository from which nothing was launched
    monkeypatch.chdir(project.root)
    empty = run_cli("status", slurm=fake_slurm())
    assert empty.exit_code == 1 and empty.stdout == ""
    assert empty.stderr == (f"[ERROR]: no snapshots in {project.root}/code_snapshots: nothing was launched from this "
                            "repository with CODE_SNAPSHOT_DIRNAME=code_snapshots\n")
    (project.root / "code_snapshots").mkdir()  # launched once, every snapshot removed since: an empty table
    assert run_cli("status", slurm=fake_slurm()).stdout.splitlines()[-1] == (
        "0 experiments, 0 jobs: 0 passed, 0 failed, 0 with jobs queued, 0 without a verdict yet")


@pytest.mark.parametrize(
    ("text", "width", "how", "cut"),
    [("abcdef", 6, "left", "abcdef"), ("abcdef", 4, "left", "…def"), ("abcdef", 4, "right", "abc…"),
     ("abcdef", 4, "prefix", "abcd"), ("abcdef", 1, "right", "…"), ("abcdef", 1, "left", "…")],
)
def test_how_a_cell_is_cut(text: str, width: int, how: str, cut: str) -> None:
    from nrl_launch.follow.status import _cut

    assert _cut(text, width, how) == cut and len(cut) == min(len(text), width)


def test_cells_without_a_value_show_a_dash_and_every_row_names_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "code_snapshots" / "bare"
    folder.mkdir(parents=True)
    write_manifest(folder, Manifest("bare", None, source=None))  # an adopted snapshot: no commit, no MAX_STEPS
    append_run(folder, "7", "1/1")
    (tmp_path / "code_snapshots" / "old").mkdir()  # no manifest
    found = collect_status(tmp_path / "code_snapshots", ["bare", "old", "gone"],
                           fake_slurm({"7": "COMPLETED"}).client())
    table = format_table(found, width=400).splitlines()
    assert [table_cell(table, 1, column) for column in table[0].split()] == [
        "bare", "-", "-", "1", "1 COMPLETED", "-", "GENERAL FAIL", "-", ""]
    assert table_cell(table, 2, "NOTE") == f"no manifest ({MANIFEST_NAME})" and table_cell(table, 2, "COMMIT") == "-"
    data = json.loads(format_json(found))
    assert [row["snapshot"] for row in data] == [str(tmp_path / "code_snapshots" / name) for name in ("bare", "old",
                                                                                                       "gone")]
    assert (data[0]["commit"], data[0]["steps"], data[0]["max_steps"]) == (None, None, None)
    steps = {(5, None): "5", (None, 20): "0/20", (5, 20): "5/20", (None, None): "-"}
    from dataclasses import replace

    from nrl_launch.follow.status import _cells

    for (reached, most), shown in steps.items():
        assert _cells(replace(found.rows[0], steps=reached, max_steps=most), False)[5] == shown
    assert _cells(replace(found.rows[0], dirty=True), False)[2] == "yes"
    assert _cells(replace(found.rows[0], jobs=()), False)[4] == _cells(replace(found.rows[0], jobs=()), True)[4] == "-"


def test_every_width_fits_and_a_table_that_fits_is_not_cut(long_named: StatusReport) -> None:
    whole = format_table(long_named, width=10**6).splitlines()
    natural = max(len(line) for line in whole)
    assert format_table(long_named, width=natural).splitlines() == whole  # it fits: nothing cut, names beside
    assert format_table(long_named, width=natural - 1).splitlines() != whole
    for width in range(60, natural + 5):  # below 60 the cells that are never cut need more than that
        table = format_table(long_named, width=width).splitlines()
        assert max(len(line) for line in table if line != LONG_NAME) <= width, width
        assert sum(line.startswith(LONG_NAME) for line in table) == 1, width


def test_a_column_left_out_gives_its_room_back_to_those_cut_before(tmp_path: Path) -> None:
    # the log path is left out: the note, cut before that, is whole again
    name = "sft-qwen2.5-1.5b-1n4g-fsdp2tp1-quick"
    make_snapshot(tmp_path, name, runs=[("1", "1/3"), ("2", "2/3"), ("3", "3/3")], logs={"3": "crashed\n"})
    append_cancellation(tmp_path / name, ["1", "2", "3"])
    found = collect_status(tmp_path, None, fake_slurm({i: "CANCELLED" for i in "123"}).client())
    table = format_table(found, width=120).splitlines()
    assert "LOG" not in table[0] and table[1].endswith("cancelled 3 jobs") and max(map(len, table)) <= 120


def test_the_verdict_cell_says_why_there_is_none_and_a_bare_retry_entry_is_shown(tmp_path: Path) -> None:
    root = tmp_path / "code_snapshots"
    make_snapshot(root, "never")  # no run yet
    folder = make_snapshot(root, "retried", runs=[("11", "1/1")])
    append_run(folder, "12", "2", via="retry")  # written by hand or by an older launcher: no retry fields
    found = collect_status(root, None, fake_slurm({"11": "NODE_FAIL", "12": "COMPLETED"}).client())
    table = format_table(found, width=300).splitlines()
    assert (table_cell(table, 1, "VERDICT"), table_cell(table, 2, "NOTE")) == ("-", "1 retry after ?")
    assert json.loads(format_json(found))[1]["retries"] == [
        {"job_id": "12", "retry_of": "", "after": "", "failed_on": "", "exclude": ""}]
    down = collect_status(root, None, fake_slurm(error=True).client())
    assert table_cell(format_table(down, width=300).splitlines(), 2, "VERDICT") == "?"
    assert problem(collect_status(root, ["x", "y"], fake_slurm().client())) == "no snapshot of x, y"
    assert not any(line.endswith(" ") for line in format_table(found, width=300).splitlines())


@pytest.mark.parametrize(("columns", "width"), [("77", 77), ("0", 120), ("", 120), ("abc", 120), ("٣٣", 120)])
def test_the_width_comes_from_columns(monkeypatch: pytest.MonkeyPatch, columns: str, width: int) -> None:
    from nrl_launch.follow.status import terminal_width

    monkeypatch.setenv("COLUMNS", columns)
    assert terminal_width() == width


def test_the_width_of_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl
    import os
    import pty
    import struct
    import sys
    import termios

    from nrl_launch.follow.status import terminal_width

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 93, 0, 0))
    with os.fdopen(slave, "w") as terminal:
        monkeypatch.delenv("COLUMNS", raising=False)
        monkeypatch.setattr(sys, "stdout", terminal)
        assert terminal_width() == 93
    os.close(master)


def test_a_run_that_ends_while_slurm_is_asked_is_judged_on_its_own_log(tmp_path: Path) -> None:
    # Run 2 is queued when the snapshot is read, writes a failing log and ends while Slurm is asked:
    # the verdict must read that log (listed after Slurm's answer), never pass on run 1's log alone.
    folder = make_snapshot(tmp_path, "x", runs=[("11", "1/2"), ("12", "2/2")], logs={"11": PASS_LOG})
    fake = fake_slurm({"11": "COMPLETED", "12": "RUNNING"})
    squeue = fake._squeue

    def run_2_ends_meanwhile(call: Call) -> Completed:
        (folder / "12-logs").mkdir()
        (folder / "12-logs" / "ray-driver.log").write_text(FAIL_LOG)
        fake.jobs["12"].state = "COMPLETED"
        return squeue(call)

    fake.answers["squeue"] = run_2_ends_meanwhile
    [row] = collect_status(tmp_path, ["x"], fake.client()).rows
    assert (row.verdict, row.metric_checks) == ("METRIC FAIL", "FAIL")
    assert row.log == str(folder / "12-logs" / "ray-driver.log")
