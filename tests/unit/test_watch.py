"""WATCH: the contract's lines, verdicts from driver logs (checked against real
grep and ls), log discovery, and ``nrl-launch watch``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nrl_launch.errors import Interrupted, SlurmUnreachable
from nrl_launch.experiment.joblogs import TrackedExperiment, TrackedJob, driver_logs
from nrl_launch.follow.verdict import (
    GENERAL_FAIL,
    METRIC_FAIL,
    PASS,
    Verdict,
    grep_output,
    human_size,
    judge,
    judge_jobs,
    ls_lah,
)
from nrl_launch.follow.watch import ALL_PASSED, SOME_FAILED, Watcher, explain, report
from nrl_launch.settings import WatchSettings
from nrl_launch.slurm.client import Completed
from testkit import BASE_ENV, Call, FakeSlurm, Project, SlurmOnPath, driver_log, finish_after, run_cli, write

PASS_LOG = "step 40\nMetric Checks\n  [PASS] train/loss@40 = 0.3 < 0.5\n\ndone\n"
FAIL_LOG = "step 40\nMetric Checks\n  [FAIL] train/accuracy@40 = 0.8 > 2\n"


def real_grep(paths: list[Path]) -> list[str]:
    done = subprocess.run(["grep", "-A10000", "-H", "Metric Checks", *map(str, paths)],
                          capture_output=True, env={**os.environ, "LC_ALL": "C"})
    return done.stdout.decode("utf-8", "replace").splitlines()


@pytest.mark.parametrize(
    "texts",
    [
        ["no checks here\n"],
        [PASS_LOG],
        ["Metric Checks\n"],
        ["Metric Checks"],  # no final newline
        ["a\nMetric Checks\nb\nMetric Checks\nc\n"],  # one group: the second match is inside the context
        [PASS_LOG, "crashed\n", FAIL_LOG],  # groups of two files, separated
        ["x Metric Checks y\n\n\n"],
        ["Metric Checks\n" + "line\n" * 10000 + "after the context\nMetric Checks\nagain\n"],  # context limit
        ["Metric Checks\n" + "line\n" * 9999 + "Metric Checks\nlast\n"],  # a match on the last context line
        ["Metric Checks\n" + "line\n" * 10000 + "Metric Checks\nadjacent\n"],  # the next line matches: no --
        ["Metric Checks 1\n" + "x\n" * 10001 + "Metric Checks 2\n" + "y\n" * 10001 + "Metric Checks 3\nz\n"],
    ],
)
def test_evidence_is_what_grep_prints(tmp_path: Path, texts: list[str]) -> None:
    paths = [write(tmp_path / f"{i}-logs" / "ray-driver.log", text) for i, text in enumerate(texts)]
    assert grep_output(paths) == real_grep(paths)


lines = st.lists(st.sampled_from(["Metric Checks", "[PASS] a", "[FAIL] b", "", "x Metric Checks x", "FAIL-safe",
                                  "plain"]), max_size=12)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(lines, min_size=1, max_size=3), st.lists(st.booleans(), min_size=3, max_size=3))
def test_evidence_matches_grep_on_random_logs(tmp_path_factory: pytest.TempPathFactory,
                                              files: list[list[str]], final_newline: list[bool]) -> None:
    folder = tmp_path_factory.mktemp("logs")
    paths = [write(folder / f"{i}.log", "\n".join(body) + ("\n" if final_newline[i] else ""))
             for i, body in enumerate(files)]
    assert grep_output(paths) == real_grep(paths)
    verdict = judge("x", paths)
    grepped = real_grep(paths)
    expected = GENERAL_FAIL if not grepped else METRIC_FAIL if any("FAIL" in line for line in grepped) else PASS
    assert verdict.status == expected


@pytest.mark.parametrize(
    ("logs", "status"),
    [
        ([], GENERAL_FAIL),
        (["crashed before any check\nFAIL\n"], GENERAL_FAIL),  # FAIL without Metric Checks is not a metric verdict
        ([PASS_LOG], PASS),
        ([FAIL_LOG], METRIC_FAIL),
        ([PASS_LOG, "max steps reached: exiting early\n"], PASS),  # a later run that only exits early
        ([FAIL_LOG, PASS_LOG], METRIC_FAIL),  # any log's failed check counts, not only the last one
        (["Metric Checks\n  [PASS] a\n\n[ray.sub] shutting down, FAIL-safe\n"], METRIC_FAIL),  # FAIL anywhere after
    ],
)
def test_verdict_rule(tmp_path: Path, logs: list[str], status: str) -> None:
    paths = [write(tmp_path / f"{i}-logs" / "ray-driver.log", text) for i, text in enumerate(logs)]
    verdict = judge("exp", paths)
    assert verdict.status == status
    assert verdict.line() == f"{'[' + status + ']':<16} exp"
    assert verdict.failed == (status != PASS)


def test_general_fail_shows_ls_lines_of_the_logs(tmp_path: Path) -> None:
    log = write(tmp_path / "7-logs" / "ray-driver.log", "x" * 1500)
    verdict = judge("exp", [log])
    done = subprocess.run(["ls", "-lah", str(log)], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    assert verdict.evidence == (done.stdout.rstrip("\n"),)
    assert judge("exp", [], missing="no runs were submitted").evidence == ("no runs were submitted",)


def test_ls_lines_match_ls(tmp_path: Path) -> None:
    sizes = {"a": 0, "b": 1023, "c": 1024, "d": 1500, "e": 10240, "f": 10500, "g": 2_600_000, "h": 1 << 20}
    for name, size in sizes.items():
        with open(tmp_path / name, "wb") as handle:
            handle.truncate(size)
    old = tmp_path / "old"
    old.touch()
    os.utime(old, (1_600_000_000, 1_600_000_000))  # more than six months ago: the year is shown
    paths = [tmp_path / name for name in [*sizes, "old"]]
    done = subprocess.run(["ls", "-lah", *map(str, paths)], capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})
    assert ls_lah(list(reversed(paths))) == done.stdout.splitlines()


def test_ls_lines_match_ls_for_owners_times_and_names(tmp_path: Path) -> None:
    # uid/gid without a name (ls prints the number), owner and group columns of different widths,
    # a time two hours ago, a folder name that is a prefix of another (ls sorts bytes under LC_ALL=C)
    paths = [write(tmp_path / folder / "ray-driver.log", "x") for folder in ("a", "a-b", "b")]
    os.chown(paths[0], 543210, 0)  # owner column 6 wide, group column 5 wide
    os.chown(paths[1], 0, 54322)
    two_hours_ago = time.time() - 7200
    os.utime(paths[2], (two_hours_ago, two_hours_ago))
    gone = tmp_path / "0-gone" / "ray-driver.log"  # a log that was never written is left out (sorted first)
    done = subprocess.run(["ls", "-lah", *map(str, paths)], capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})
    assert ls_lah([gone, *reversed(paths)]) == done.stdout.splitlines()


@pytest.mark.parametrize(
    ("age_s", "shows"),
    [
        (0, "time"),
        (-60, "time"),  # a clock a minute ahead: still recent
        (-61, "year"),
        (182.5 * 24 * 3600 - 1, "time"),
        (182.5 * 24 * 3600, "year"),  # six months (ls's rule) and older: the year
    ],
)
def test_ls_shows_the_year_beyond_six_months(tmp_path: Path, age_s: float, shows: str) -> None:
    now = 1_800_000_000.0
    log = write(tmp_path / "ray-driver.log", "x")
    os.utime(log, (now - age_s, now - age_s))
    stamp = time.localtime(now - age_s)
    expected = time.strftime("%H:%M", stamp) if shows == "time" else str(stamp.tm_year)
    [line] = ls_lah([log], now=now)
    assert line.split()[7] == expected, line


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0"), (1023, "1023"), (1024, "1.0K"), (1025, "1.1K"), (10 * 1024, "10K"), (10 * 1024 + 1, "11K"),
     (1 << 20, "1.0M"), (5 << 30, "5.0G"), (3 << 40, "3.0T"), (1 << 50, "1.0P"), (1 << 60, "1.0E"),
     (1 << 70, "1024E")],  # beyond exabytes ls keeps counting in E
)
def test_human_sizes_as_ls_prints_them(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_a_log_that_is_not_utf8_is_shown_not_a_crash(tmp_path: Path) -> None:
    log = tmp_path / "1-logs" / "ray-driver.log"
    log.parent.mkdir()
    log.write_bytes(b"Metric Checks\n  [PASS] loss \xff\xfe\n")
    verdict = judge("exp", [log])
    assert (verdict.status, verdict.evidence) == (PASS, (f"{log}:Metric Checks", f"{log}-  [PASS] loss \ufffd\ufffd"))


def test_requeued_attempts_are_read_in_order(tmp_path: Path) -> None:
    # 41 crashed on its first attempt and passed after a requeue; 42's log sits under BASE_LOG_DIR
    write(tmp_path / "snap" / "41-logs" / "ray-driver.log", "node failure\n")
    write(tmp_path / "snap" / "41-1-logs" / "ray-driver.log", PASS_LOG)
    write(tmp_path / "snap" / "41-10-logs" / "ray-driver.log", "tenth\n")
    write(tmp_path / "snap" / "41-2-logs" / "ray-driver.log", "second\n")
    write(tmp_path / "snap" / "410-logs" / "ray-driver.log", "another job\n")
    write(tmp_path / "logs" / "42-logs" / "ray-driver.log", PASS_LOG)
    jobs = [TrackedJob("41", tmp_path / "snap"), TrackedJob("42", tmp_path / "logs")]
    assert [p.parent.name for p in driver_logs(jobs)] == ["41-logs", "41-1-logs", "41-2-logs", "41-10-logs",
                                                         "42-logs"]
    assert judge_jobs("exp", jobs).status == PASS


def test_no_log_at_all_names_where_it_looked(tmp_path: Path) -> None:
    verdict = judge_jobs("exp", (TrackedJob("5", tmp_path),))
    assert verdict.status == GENERAL_FAIL
    assert verdict.evidence == (f"no driver log found (looked for {tmp_path}/5-logs/ray-driver.log)",)
    assert judge_jobs("exp", ()).evidence == ("no runs were submitted",)


# ---------------------------------------------------------------- polling


def squeue_script(*answers: set[str] | str) -> Callable[[Call], Completed]:
    """``squeue --me`` answers, one per poll: the ids still queued, or an error text."""
    pending = list(answers)

    def reply(call: Call) -> Completed:
        answer = pending.pop(0)
        if isinstance(answer, str):
            return Completed(1, "", answer)
        return Completed(0, "".join(f"{i}|RUNNING|None|n1\n" for i in sorted(answer)), "")

    return reply


def watcher(fake: FakeSlurm, out: list[str], err: list[str], waits: list[float] | None = None,
            **settings: Any) -> Watcher:
    # (the client does not try a failed squeue again itself: the watch's own retrying is what is tested)
    return Watcher(fake.client(retry_for=0), WatchSettings(**{"interval": 7, **settings}), out=out.append,
                   err=err.append,
                   wait=(waits if waits is not None else []).append, clock=lambda: "T",
                   resume_hint="nrl-launch watch exp")


def two_jobs(*ids: str) -> list[TrackedExperiment]:
    return [TrackedExperiment("exp", tuple(TrackedJob(i, Path("/nowhere")) for i in ids))]


def test_follow_prints_the_contracts_lines() -> None:
    fake = FakeSlurm(answers={"squeue": squeue_script("squeue: error: connection refused", {"1", "2"}, {"2"},
                                                      set())})
    out: list[str] = []
    err: list[str] = []
    waits: list[float] = []
    watcher(fake, out, err, waits).follow(two_jobs("1", "2"))
    assert out == [
        "[T] [WATCH]: Tracking 2 jobs: 1 2",
        "[T] [WATCH]: Polling every 7s. Press Enter to refresh immediately.",
        "[T] [WATCH]: Remaining: 2",
        "[T] [WATCH]: Finished jobs: 1",
        "[T] [WATCH]: Remaining: 1",
        "[T] [WATCH]: Finished jobs: 2",
        "[T] [WATCH]: Remaining: 0",
        "[T] [WATCH]: All tracked jobs have finished.",
    ]
    assert err[0] == "[T] [WARNING]: cannot reach Slurm (squeue failed: squeue: error: connection refused); " \
                     "retrying in 7s"
    assert waits == [7, 7, 7, 7]  # the first poll comes one interval after the Polling line


def test_progress_on_stderr_shows_each_job_and_the_next_poll() -> None:
    fake = FakeSlurm(on_poll=finish_after(1))
    fake.add_job("255", "PENDING", reason="Resources")
    fake.add_job("256", "RUNNING", nodes="n[1-2]")
    out: list[str] = []
    err: list[str] = []
    Watcher(fake.client(), WatchSettings(interval=60), out=out.append, err=err.append, wait=lambda _: None,
            clock=lambda: "T", interactive=True).follow(two_jobs("255", "256"))
    assert re.fullmatch(r"\[T\] 255 PENDING \(Resources\), 256 RUNNING on n\[1-2\]; next poll at \d\d:\d\d:\d\d "
                        r"\(press Enter to poll now\)", err[0]), err
    assert err[-1] == "[T] no job queued"


def test_watch_gives_up_after_polls_fail_for_too_long() -> None:
    fake = FakeSlurm(down=True)
    fake.add_job("5", "RUNNING")
    clock = [0.0]  # the time that passes is the watch's own waiting
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    err: list[str] = []
    watch = Watcher(fake.client(), WatchSettings(interval=600, give_up=1500), out=lambda _: None, err=err.append,
                    wait=wait, now=lambda: clock[0], resume_hint="nrl-launch watch exp")
    with pytest.raises(SlurmUnreachable) as info:
        watch.follow(two_jobs("5"))
    assert len(err) == 3  # the polls at 10, 20 and 30 minutes were retried, the one at 35 minutes gave up
    assert waits == [600, 600, 600, 300]  # the last wait ends when WATCH_GIVE_UP says, not an interval later
    assert "gave up watching: Slurm has not answered for 1500 s" in str(info.value)
    assert str(info.value).endswith("Resume with: nrl-launch watch exp")
    assert info.value.exit_code == 128  # spec section 7: git bisect run aborts instead of marking the commit bad


def ctrl_c_at_second_wait() -> Callable[[float], None]:
    """A watch's ``wait``: the first wait passes (one poll), Ctrl-C arrives during the second."""
    waits = [None]

    def wait(_: float) -> None:
        if not waits:
            raise KeyboardInterrupt
        waits.pop()

    return wait


def test_ctrl_c_names_what_is_queued_and_how_to_resume() -> None:
    fake = FakeSlurm(answers={"squeue": squeue_script({"6"})})
    wait = ctrl_c_at_second_wait()
    with pytest.raises(Interrupted) as info:
        Watcher(fake.client(), WatchSettings(interval=1), out=lambda _: None, err=lambda _: None, wait=wait,
                resume_hint="nrl-launch watch exp").follow(two_jobs("5", "6"))
    assert info.value.exit_code == 130
    assert str(info.value) == ("stopped watching; still queued or running: 6 (cancel them with 'scancel 6'). "
                               "Resume with: nrl-launch watch exp")


def test_stop_chain_on_failure_cancels_the_rest_of_the_chain() -> None:
    fake = FakeSlurm()
    for job_id in ("11", "12", "13"):
        fake.add_job(job_id, "PENDING")
    fake.jobs["11"].state = "RUNNING"

    def first_run_fails(fake: FakeSlurm) -> None:
        if fake.jobs["11"].state == "RUNNING":
            fake.finish("11", state="FAILED", exit_code="1:0")

    fake.on_poll = first_run_fails
    out: list[str] = []
    exp = [TrackedExperiment("exp", tuple(TrackedJob(i, Path("/nowhere")) for i in ("11", "12", "13")))]
    watcher(fake, out, [], stop_chain_on_failure=True).follow(exp)
    assert "[T] [WATCH]: Cancelled 12 13 of exp: run 11 ended FAILED (STOP_CHAIN_ON_FAILURE)" in out
    assert ("scancel", "12", "13") in [c.argv for c in fake.calls]
    assert out[-3:] == ["[T] [WATCH]: Finished jobs: 12 13", "[T] [WATCH]: Remaining: 0",
                        "[T] [WATCH]: All tracked jobs have finished."]
    # off by default: the chain runs on
    fake = FakeSlurm(on_poll=finish_after(0, state="FAILED"))
    fake.add_job("21", "RUNNING")
    fake.add_job("22", "PENDING")
    watcher(fake, out := [], []).follow([TrackedExperiment("e", (TrackedJob("21", Path("/")),
                                                                 TrackedJob("22", Path("/"))))])
    assert not any(c.argv[0] == "scancel" for c in fake.calls)


def test_a_failing_verdict_says_why_on_stderr(tmp_path: Path) -> None:
    log = write(tmp_path / "31-logs" / "ray-driver.log", "".join(f"line {i}\n" for i in range(1, 21)) +
                "Traceback: CUDA out of memory\n")
    fake = FakeSlurm(accounting=True)
    fake.add_job("31", "FAILED", exit_code="1:0", nodes="n1")
    fake.add_job("32", "CANCELLED", exit_code="0:15")
    out: list[str] = []
    err: list[str] = []
    crashed = TrackedExperiment("crashed", (TrackedJob("31", tmp_path), TrackedJob("32", tmp_path)))
    never = TrackedExperiment("never", (TrackedJob("41", tmp_path),))
    verdicts = watcher(fake, out, err).watch([crashed, never, TrackedExperiment("empty", ())])
    assert [v.status for v in verdicts] == [GENERAL_FAIL] * 3
    assert err[err.index("[WHY] crashed: GENERAL FAIL; jobs: 31 FAILED, exit code 1:0, 32 CANCELLED, "
                         "exit code 0:15"):][:12] == [
        "[WHY] crashed: GENERAL FAIL; jobs: 31 FAILED, exit code 1:0, 32 CANCELLED, exit code 0:15",
        f"[WHY] crashed: last 10 lines of {log}:",
        *[f"    line {i}" for i in range(12, 21)],
        "    Traceback: CUDA out of memory",
    ]
    assert "[WHY] never: GENERAL FAIL; jobs: 41 unknown to Slurm" in err
    assert "[WHY] never: no job of this experiment ever started (no driver log)" in err
    assert "[WHY] empty: no runs were submitted" in err
    assert not any(line.startswith("[WHY]") for line in out)  # stdout keeps the contract's lines only


def test_report_prints_checking_verdict_evidence_and_the_summary(tmp_path: Path) -> None:
    good = write(tmp_path / "1-logs" / "ray-driver.log", PASS_LOG)
    out: list[str] = []
    assert report([judge("a", [good])], out.append) is False
    assert out == ["[WATCH]: Checking a", "[METRIC PASS]    a", f"{good}:Metric Checks",
                   f"{good}-  [PASS] train/loss@40 = 0.3 < 0.5", f"{good}-", f"{good}-done", ALL_PASSED]
    out.clear()
    assert report([judge("a", [good]), judge("b", [])], out.append) is True
    assert out[-4:] == ["[WATCH]: Checking b", "[GENERAL FAIL]   b", "no driver log was written", SOME_FAILED]


# ---------------------------------------------------------------- the commands


def test_watch_command_follows_recorded_jobs(project: Project, slurm_on_path: SlurmOnPath,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    monkeypatch.setenv("FAKE_DRIVER_LOG_1002", "Metric Checks\n  [FAIL] train/loss too high\n")
    assert run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": None}).exit_code == 0
    monkeypatch.setenv("FAKE_SQUEUE_POLLS", "1")
    monkeypatch.chdir(project.root / "tests")
    result = run_cli("watch", "--watch-interval", "0.01", "sft-a")
    assert result.exit_code == 1
    log = project.root / "code_snapshots" / "sft-a" / "1002-logs" / "ray-driver.log"
    lines = [line.split("] ", 1)[1] if line.startswith("[20") else line for line in result.stdout.splitlines()]
    assert lines == [
        "[WATCH]: Tracking 2 jobs: 1001 1002",
        "[WATCH]: Polling every 0.01s. Press Enter to refresh immediately.",
        "[WATCH]: Remaining: 2",
        "[WATCH]: Finished jobs: 1001 1002",
        "[WATCH]: Remaining: 0",
        "[WATCH]: All tracked jobs have finished.",
        "[WATCH]: Checking sft-a",
        "[METRIC FAIL]    sft-a",
        f"{log}:Metric Checks",
        f"{log}-  [FAIL] train/loss too high",
        SOME_FAILED,
    ]


def test_watch_command_unknown_experiment(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    result = run_cli("watch", "nope")
    assert result.exit_code == 1
    assert "[ERROR]: no snapshot of experiment 'nope'" in result.stderr


def test_status_command_shows_job_states(project: Project, slurm_on_path: SlurmOnPath,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    assert run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": None}).exit_code == 0
    monkeypatch.setenv("FAKE_JOB_STATES", "1001=COMPLETED,1002=RUNNING")
    monkeypatch.chdir(project.root)
    result = run_cli("status", "--format", "json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert {job["job_id"]: job["state"] for job in row["jobs"]} == {"1001": "COMPLETED", "1002": "RUNNING"}


def test_enter_on_a_terminal_polls_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import pty
    import sys
    import time

    from nrl_launch.follow.watch import wait_or_enter

    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as terminal:
        monkeypatch.setattr(sys, "stdin", terminal)
        os.write(master, b"\n")  # the user presses Enter
        started = time.monotonic()
        wait_or_enter(600)  # would sleep ten minutes without the key press
        assert time.monotonic() - started < 60
    os.close(master)


# ---------------------------------------------------------------- the Slurm seam, in process


def test_watch_and_status_commands_through_the_client_seam(project: Project, fake_slurm: FakeSlurm,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = driver_log({"1001": "Metric Checks\n  [PASS] loss\n", "1002": "max steps reached\n"})
    launched = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": None}, slurm=fake_slurm)
    assert launched.exit_code == 0, launched.output
    monkeypatch.chdir(project.root / "tests")  # the project is found from a subfolder

    fake_slurm.finish("1001")
    status = run_cli("status", "--format", "json", slurm=fake_slurm)
    assert status.exit_code == 0, status.output
    [row] = json.loads(status.stdout)
    # run 1 passed its checks, but run 2 is still queued: no verdict yet, as WATCH would give none
    assert (row["experiment"], row["verdict"], row["waiting"]) == ("sft-a", None, "jobs queued")
    assert row["jobs"] == [{"job_id": "1001", "run": "1/2", "state": "COMPLETED", "reason": ""},
                           {"job_id": "1002", "run": "2/2", "state": "PENDING", "reason": ""}]

    fake_slurm.on_poll = finish_after(1)
    watched = run_cli("watch", "--watch-interval", "0.01", "sft-a", slurm=fake_slurm)
    assert watched.exit_code == 0, watched.output
    log = project.root / "code_snapshots" / "sft-a" / "1001-logs" / "ray-driver.log"
    assert watched.stdout.splitlines()[-4:] == ["[METRIC PASS]    sft-a", f"{log}:Metric Checks",
                                                f"{log}-  [PASS] loss", ALL_PASSED]
    polls = [c.argv for c in fake_slurm.calls if c.argv[0] == "squeue"]
    assert polls[-2:] == [("squeue", "--me", "-h", "-o", "%i|%T|%r|%N")] * 2  # polled until the queue was empty


def test_status_exits_non_zero_for_an_unknown_experiment_or_an_unreachable_slurm(
        project: Project, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    monkeypatch.chdir(project.root)
    ok = run_cli("status", slurm=fake_slurm)
    assert ok.exit_code == 0, ok.output
    # each experiment counted once (issue 22 item 10: the counts add up to the experiments)
    assert ok.stdout.splitlines()[-1] == ("1 experiment, 1 job: 0 passed, 0 failed, 1 with jobs queued, "
                                          "0 without a verdict yet")
    missing = run_cli("status", "sft-a", "nope", slurm=fake_slurm)
    assert missing.exit_code == 1
    assert "[ERROR]: no snapshot of nope" in missing.stderr
    fake_slurm.down = True
    down = run_cli("status", slurm=fake_slurm)
    assert down.exit_code == 128  # spec sections 7 and 9: Slurm cannot be reached
    assert "[ERROR]: cannot ask Slurm about the jobs (cannot reach Slurm: " in down.stderr
    assert 'eval "$(tools/local-slurm up | tail -n 1)"' in down.stderr
    # SLURM_CONF naming a missing file: every client command fails so (after a minute of retries)
    fake_slurm.down = False
    unreadable = ("squeue: error: ClusterName needs to be specified\n"
                  "squeue: fatal: Unable to process configuration file\n")
    fake_slurm.answers = {name: lambda call: Completed(1, "", unreadable) for name in ("squeue", "sacct", "scontrol")}
    before = len(fake_slurm.calls)
    conf = run_cli("status", slurm=fake_slurm)
    assert conf.exit_code == 128 and "cannot reach Slurm: the Slurm configuration cannot be read" in conf.stderr
    assert [c.argv[0] for c in fake_slurm.calls[before:]] == ["squeue"]  # given up at once, not a minute per job


# ---------------------------------------------------------------- the exit status follows the verdicts

CRASH_LOG = "step 3\nTraceback (most recent call last):\n  File \"train.py\", line 9\nRuntimeError: CUDA error\n"
PASSED = "[INFO]: All tests passed. Exiting with status 0."  # the contract's words (spec section 8)
FAILED = "[INFO]: One or more tests failed. Exiting with status 1."


@pytest.mark.parametrize("command", ["launch --watch", "watch"])
@pytest.mark.parametrize(
    ("log", "state", "verdict", "code", "summary"),
    [
        (CRASH_LOG, "FAILED", "[GENERAL FAIL]   sft-a", 1, FAILED),  # a crashed job: no Metric Checks
        (None, "FAILED", "[GENERAL FAIL]   sft-a", 1, FAILED),  # a job that never wrote a log
        ("Metric Checks\n", "COMPLETED", "[METRIC PASS]    sft-a", 0, PASSED),  # checks reached, none failed
        (FAIL_LOG, "COMPLETED", "[METRIC FAIL]    sft-a", 1, FAILED),
        (PASS_LOG, "COMPLETED", "[METRIC PASS]    sft-a", 0, PASSED),
    ],
)
def test_the_exit_status_follows_the_verdict(project: Project, fake_slurm: FakeSlurm,
                                             monkeypatch: pytest.MonkeyPatch, command: str, log: str | None,
                                             state: str, verdict: str, code: int, summary: str) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = driver_log({} if log is None else {"1001": log})
    fake_slurm.on_poll = finish_after(0, state=state)
    env = {**BASE_ENV, "DRYRUN": None, "WATCH": None}
    if command == "watch":
        assert run_cli("launch", str(script), env=env, slurm=fake_slurm).exit_code == 0
        monkeypatch.chdir(project.root)
        result = run_cli("watch", "--watch-interval", "0.01", "sft-a", slurm=fake_slurm)
    else:
        result = run_cli("launch", "--watch", "--watch-interval", "0.01", str(script), env=env, slurm=fake_slurm)
    assert result.exit_code == code, result.output
    lines = result.stdout.splitlines()
    assert lines[lines.index("[WATCH]: Checking sft-a") + 1] == verdict
    assert lines[-1] == summary


# ---------------------------------------------------------------- details a user reads while watching


def test_timestamps_are_local_date_and_time() -> None:
    from nrl_launch.follow.watch import timestamp

    before = time.strftime("%Y-%m-%d %H:%M:%S")
    stamp = timestamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", stamp) and before <= stamp <= time.strftime(
        "%Y-%m-%d %H:%M:%S")


def test_experiments_without_logs_say_where_they_looked(tmp_path: Path) -> None:
    assert judge_jobs("empty", ()) == Verdict("empty", GENERAL_FAIL, ("no runs were submitted",))
    two = TrackedExperiment("two", (TrackedJob("5", tmp_path), TrackedJob("6", tmp_path / "b")))
    assert judge_jobs(two.name, two.jobs).evidence == (
        f"no driver log found (looked for {tmp_path}/5-logs/ray-driver.log, {tmp_path}/b/6-logs/ray-driver.log)",)


def test_waiting_on_a_terminal_without_a_key_press_ends_after_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    import pty
    import sys
    import threading

    from nrl_launch.follow.watch import wait_or_enter

    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as terminal:
        monkeypatch.setattr(sys, "stdin", terminal)
        waiter = threading.Thread(target=wait_or_enter, args=(0.2,), daemon=True)
        waiter.start()
        waiter.join(timeout=20)
        assert not waiter.is_alive()  # waited its interval, not forever
    os.close(master)


def test_progress_names_eight_jobs_counts_the_rest_and_says_when_the_next_poll_is() -> None:
    fake = FakeSlurm(on_poll=finish_after(1))
    ids = [str(300 + i) for i in range(10)]
    for job_id in ids:
        fake.add_job(job_id, "RUNNING")  # no reason, no nodes yet
    err: list[str] = []
    Watcher(fake.client(), WatchSettings(interval=3600), out=lambda _: None, err=err.append, wait=lambda _: None,
            clock=lambda: "T").follow(two_jobs(*ids))
    first = err[0]
    shown = ", ".join(f"{i} RUNNING" for i in ids[:8])
    assert first.startswith(f"[T] {shown}, and 2 more; next poll at "), first
    in_an_hour = {time.strftime("%H:%M:%S", time.localtime(time.time() + 3600 - d)) for d in range(3)}
    assert first.removeprefix(f"[T] {shown}, and 2 more; next poll at ") in in_an_hour  # not interactive: no Enter


def test_progress_of_exactly_eight_jobs_names_them_all() -> None:
    fake = FakeSlurm(on_poll=finish_after(1))
    ids = [str(400 + i) for i in range(8)]
    for job_id in ids:
        fake.add_job(job_id, "PENDING", reason="Priority")
    err: list[str] = []
    Watcher(fake.client(), WatchSettings(interval=1), out=lambda _: None, err=err.append, wait=lambda _: None,
            clock=lambda: "T").follow(two_jobs(*ids))
    assert err[0].startswith("[T] " + ", ".join(f"{i} PENDING (Priority)" for i in ids) + "; next poll at ")


def test_why_shows_the_tail_of_a_failed_job_whose_exit_code_slurm_did_not_say(tmp_path: Path) -> None:
    write(tmp_path / "45-logs" / "ray-driver.log", "Traceback: boom\n")
    fake = FakeSlurm(answers={"squeue": lambda call: Completed(0, "45|FAILED|NonZeroExitCode|n1\n", "")})
    exp = TrackedExperiment("x", (TrackedJob("45", tmp_path),))
    assert explain(exp, judge_jobs(exp.name, exp.jobs), fake.client())[1:] == [
        f"[WHY] x: the last line of {tmp_path}/45-logs/ray-driver.log:", "    Traceback: boom"]


def test_ctrl_c_names_every_queued_job_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSlurm(answers={"squeue": squeue_script({"6", "7"})})
    wait = ctrl_c_at_second_wait()
    with pytest.raises(Interrupted) as info:
        Watcher(fake.client(), WatchSettings(interval=1), out=lambda _: None, err=lambda _: None,
                wait=wait).follow(two_jobs("5", "6", "7"))
    assert str(info.value) == ("stopped watching; still queued or running: 6 7 (cancel them with 'scancel 6 7'). "
                               "Resume with: nrl-launch watch <experiment>…")

    def interrupted_at_the_end(line: str) -> None:
        if line.endswith("no job queued"):
            raise KeyboardInterrupt  # Ctrl-C just after the last poll

    fake = FakeSlurm(on_poll=finish_after(0))
    fake.add_job("8", "RUNNING")
    with pytest.raises(Interrupted) as info:
        Watcher(fake.client(), WatchSettings(interval=1), out=lambda _: None, err=interrupted_at_the_end,
                wait=lambda _: None, resume_hint="nrl-launch watch e").follow(two_jobs("8"))
    assert str(info.value) == "stopped watching; still queued or running: none. Resume with: nrl-launch watch e"


def test_a_poll_failing_after_a_good_one_is_retried() -> None:
    fake = FakeSlurm(answers={"squeue": squeue_script({"1"}, "squeue: error: timeout", {"1"}, set())})
    out: list[str] = []
    err: list[str] = []
    watcher(fake, out, err).follow(two_jobs("1"))
    assert out[-1] == "[T] [WATCH]: All tracked jobs have finished."
    assert "[T] [WARNING]: cannot reach Slurm (squeue failed: squeue: error: timeout); retrying in 7s" in err


def test_stop_chain_on_failure_when_scancel_fails_warns_and_the_watch_still_ends_with_verdicts() -> None:
    fake = FakeSlurm(answers={"scancel": lambda call: Completed(1, "", "scancel: error: Socket timed out\n")})
    for job_id in ("11", "12"):
        fake.add_job(job_id, "PENDING")
    moves = iter([lambda f: f.finish("11", state="FAILED", exit_code="1:0"), lambda f: f.finish("12")])
    fake.on_poll = lambda f: next(moves, lambda _: None)(f)
    out: list[str] = []
    err: list[str] = []
    exp = TrackedExperiment("exp", tuple(TrackedJob(i, Path("/nowhere")) for i in ("11", "12")))
    [verdict] = watcher(fake, out, err, stop_chain_on_failure=True).watch([exp])
    assert verdict.status == GENERAL_FAIL
    assert any(line.startswith("[T] [WARNING]: STOP_CHAIN_ON_FAILURE: could not cancel 12 of exp after run 11 "
                               "ended FAILED (") and line.endswith("they stay queued") for line in err), err
    assert not any("Cancelled" in line for line in out)
    finished = out.index("[T] [WATCH]: All tracked jobs have finished.")
    assert out[finished - 2:finished] == ["[T] [WATCH]: Finished jobs: 12", "[T] [WATCH]: Remaining: 0"]
    assert out[finished + 1:finished + 3] == ["[WATCH]: Checking exp", "[GENERAL FAIL]   exp"]
    assert out[-1] == SOME_FAILED


def test_stop_chain_on_failure_handles_each_experiment_and_says_when_slurm_cannot_tell() -> None:
    fake = FakeSlurm()
    for job_id in ("11", "12", "21", "22"):
        fake.add_job(job_id, "PENDING")

    polls = [0]

    def runs_end(fake: FakeSlurm) -> None:
        polls[0] += 1
        if polls[0] == 1:
            fake.finish("11")  # experiment a: its first run passed
            fake.finish("21", state="FAILED", exit_code="1:0")  # experiment b: its first run failed
        elif polls[0] == 2:
            fake.finish("12")

    fake.on_poll = runs_end
    out: list[str] = []
    exps = [TrackedExperiment(name, tuple(TrackedJob(i, Path("/nowhere")) for i in ids))
            for name, ids in (("a", ("11", "12")), ("b", ("21", "22")))]
    watcher(fake, out, [], stop_chain_on_failure=True).follow(exps)
    assert "[T] [WATCH]: Cancelled 22 of b: run 21 ended FAILED (STOP_CHAIN_ON_FAILURE)" in out
    assert [c.argv for c in fake.calls if c.argv[0] == "scancel"] == [("scancel", "22")]

    down = FakeSlurm(on_poll=finish_after(0, state="FAILED"))
    down.add_job("31", "RUNNING")
    down.add_job("32", "RUNNING")
    unreachable = Completed(1, "", "squeue: error: Unable to contact slurm controller (connect failure)\n")
    # the poll (squeue --me) still answers; asking how job 31 ended (squeue -j) does not
    down.answers["squeue"] = lambda call: unreachable if "-j" in call.argv else FakeSlurm._squeue(down, call)
    err: list[str] = []
    watcher(down, [], err, stop_chain_on_failure=True).follow(two_jobs("31", "32"))
    assert any(line.startswith("[T] [WARNING]: cannot tell how jobs 31 32 ended (") for line in err), err


def test_why_shows_the_last_attempts_tail_only_for_jobs_that_did_not_end_well(tmp_path: Path) -> None:
    write(tmp_path / "41-logs" / "ray-driver.log", "first attempt\n")
    write(tmp_path / "41-1-logs" / "ray-driver.log", "second attempt\nKilled\n")
    write(tmp_path / "42-logs" / "ray-driver.log", "finished fine\n")
    write(tmp_path / "43-logs" / "ray-driver.log", "state unknown\n")
    fake = FakeSlurm(accounting=True)
    fake.add_job("41", "FAILED", exit_code="137:0")
    fake.add_job("42", "COMPLETED", exit_code="0:0")
    fake.add_job("43", "COMPLETED", exit_code="")
    exp = TrackedExperiment("x", tuple(TrackedJob(i, tmp_path) for i in ("41", "42", "43")))
    verdict = judge_jobs(exp.name, exp.jobs)
    assert explain(exp, verdict, fake.client()) == [
        "[WHY] x: GENERAL FAIL; jobs: 41 FAILED, exit code 137:0, 42 COMPLETED, exit code 0:0, 43 COMPLETED",
        f"[WHY] x: last 2 lines of {tmp_path}/41-1-logs/ray-driver.log:", "    second attempt", "    Killed"]
    fake.down = True
    down = explain(exp, verdict, fake.client())
    assert down[0].startswith("[WHY] x: cannot ask Slurm how its jobs ended (cannot reach Slurm: Unable to contact")
    assert down[1:] == ["[WHY] x: GENERAL FAIL; jobs: 41 unknown to Slurm, 42 unknown to Slurm, 43 unknown to Slurm"]


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"a\nb\n", ["a", "b"]),  # shorter than the block read: from its first byte
        (b"".join(b"line %d\n" % i for i in range(30000)), [f"line {i}" for i in range(29990, 30000)]),
        (b"ok\n\xff\xfe broken\n", ["ok", "\ufffd\ufffd broken"]),
    ],
)
def test_tail_lines(tmp_path: Path, data: bytes, lines: list[str]) -> None:
    from nrl_launch.follow.watch import tail_lines

    log = tmp_path / "ray-driver.log"
    log.write_bytes(data)
    assert tail_lines(log, 10) == lines


def test_recorded_runs_find_their_logs_under_base_log_dir(tmp_path: Path) -> None:
    from nrl_launch.experiment.folder import SnapshotRoot
    from nrl_launch.experiment.manifest import Run

    write(tmp_path / "logs" / "51-logs" / "ray-driver.log", PASS_LOG)
    folder = SnapshotRoot(tmp_path, "snaps").experiment("x")
    exp = folder.tracked([Run("51", "1/2", "launcher", base_log_dir=str(tmp_path / "logs")),
                          Run("52", "2/2", "launcher")])
    assert [(job.job_id, job.log_root) for job in exp.jobs] == [("51", tmp_path / "logs"), ("52", folder.path)]
    assert judge_jobs(exp.name, exp.jobs).status == PASS


def test_a_relaunch_is_judged_on_its_own_runs_not_on_an_earlier_launchs_logs(
        project: Project, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch) -> None:
    # The relaunch reuses the snapshot, where the first launch's passing log still is: the resumed
    # watch, status and the relaunch note must judge the latest launch (its job crashed) alone.
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = driver_log({"1001": "step 40\nMetric Checks\n  [PASS] loss\n",
                                       "1002": "step 3\nTraceback\nRuntimeError: CUDA error\n"})
    launch = ["launch", "--watch", "--watch-interval", "0.01", str(script)]
    fake_slurm.on_poll = finish_after(0)
    assert run_cli(*launch, env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    fake_slurm.on_poll = finish_after(0, state="FAILED")
    again = run_cli(*launch, env=BASE_ENV, slurm=fake_slurm)
    assert again.exit_code == 1 and "[GENERAL FAIL]   sft-a" in again.stdout
    assert "(last verdict: METRIC PASS)" in again.stderr, again.stderr  # what the snapshot held before this launch

    monkeypatch.chdir(project.root)
    watched = run_cli("watch", "--watch-interval", "0.01", "sft-a", slurm=fake_slurm)
    assert watched.exit_code == 1, watched.output
    assert "[WATCH]: Tracking 1 jobs: 1002" in watched.stdout and "[GENERAL FAIL]   sft-a" in watched.stdout
    status = run_cli("status", "--format", "json", "sft-a", slurm=fake_slurm)
    [row] = json.loads(status.stdout)
    assert (row["verdict"], row["metric_checks"], row["runs"]) == ("GENERAL FAIL", "GENERAL FAIL", 2)
    assert [job["job_id"] for job in row["jobs"]] == ["1002"]
    third = run_cli(*launch, env=BASE_ENV, slurm=fake_slurm)
    assert "(last verdict: none yet)" in third.stderr  # the latest launch (1002) has no verdict
