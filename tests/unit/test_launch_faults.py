"""A launch under the faults a real controller has: transient sbatch failures (some after queueing),
a launch cut short (a final error, SIGKILL between sbatch's answer and its record) and finished by
the same command, parallel submission. Real git projects; the fake Slurm in process or on PATH."""

from __future__ import annotations

import collections
import re
import signal
import time
from pathlib import Path

import pytest

from nrl_launch.experiment.manifest import MANIFEST_NAME, Plan, read_manifest
from nrl_launch.slurm.runner import Completed
from testkit import BASE_ENV, Call, FakeSlurm, Project, SlurmOnPath, finish, launcher_env, run_cli, start_nrl_launch

THREE_RUNS = "NUM_NODES=1\nNUM_RUNS=3\nNUM_MINUTES=10\n"


def recipes(project: Project, count: int, config: str = THREE_RUNS) -> list[str]:
    scripts = [str(project.add_recipe(f"exp-{n:02d}", config=config, commit=False)) for n in range(count)]
    project.commit("recipes")
    return scripts


def job_names(fake: FakeSlurm) -> collections.Counter[str]:
    return collections.Counter(job.name() for job in fake.jobs.values())


def outputs(fake: FakeSlurm) -> collections.Counter[str]:
    return collections.Counter(job.option("output") for job in fake.jobs.values())


def recorded(project: Project, name: str) -> list[tuple[str, str]]:
    return [(run.job_id, run.run) for run in read_manifest(project.root / "code_snapshots" / name).runs]


def stdout_is_the_contracts(stdout: str, names: list[str], runs: int = 3) -> list[str]:
    """The job ids of a launch's stdout, checked line by line against the contract (argument order)."""
    lines = stdout.splitlines()
    ids = []
    index = 0
    for name in names:
        assert re.fullmatch(rf"\[INFO\]: \d+ GPUhrs to run .*/{name}\.sh", lines[index]), lines[index]
        index += 1
        for run in range(1, runs + 1):
            assert lines[index] == f"Submitting {run}/{runs} job with 1 nodes for {name}.sh"
            match = re.fullmatch(r"Submitted batch job (\d+)", lines[index + 1])
            assert match, lines[index + 1]
            ids.append(match.group(1))
            index += 2
    assert lines[index:] == [lines[-1]] and lines[-1].startswith("[INFO]: Total GPU hours: ")
    return ids


# ---------------------------------------------------------------- transient failures


@pytest.mark.parametrize("parallel", ["1", "4"])
def test_sbatch_failing_every_tenth_call_queues_every_run_exactly_once(project: Project, parallel: str) -> None:
    scripts = recipes(project, 12)
    names = [Path(s).stem for s in scripts]
    fake = FakeSlurm(flaky_every=10)  # test-only calls too; half of the failed submissions had queued the job
    result = run_cli("launch", *scripts, env={**BASE_ENV, "SUBMIT_PARALLEL": parallel}, slurm=fake)
    assert result.exit_code == 0, result.output
    ids = stdout_is_the_contracts(result.stdout, names)
    assert sorted(ids) == sorted(fake.jobs)  # every job printed once, no other job queued
    assert set(job_names(fake).values()) == {3} and len(job_names(fake)) == 12  # 3 per experiment
    assert set(outputs(fake).values()) == {1}  # each run once
    for name in names:
        assert [run for _, run in recorded(project, name)] == ["1/3", "2/3", "3/3"]
    assert fake.flaky_failures >= 3
    assert "had queued job" in result.stderr  # a failure after queueing: adopted, said on stderr
    assert "reject" not in result.stderr.lower()  # a lost reply of the pre-flight is no rejection


def test_the_preflight_calls_a_slurm_that_does_not_answer_that_never_a_rejection(project: Project) -> None:
    script = project.add_recipe("sft-a")
    fake = FakeSlurm(flaky_every=1)  # every sbatch call loses its reply
    result = run_cli("launch", str(script), env={**BASE_ENV, "NRL_SLURM_RETRY": "5"}, slurm=fake)
    assert result.exit_code == 1
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"[ERROR]: {script}: the pre-flight (sbatch --test-only) got no answer from Slurm, which "
                            "may answer later: sbatch failed: sbatch: error: Batch job submission failed: Socket timed "
                            "out on send/recv operation (tried ")
    assert error.endswith("Nothing was submitted.") and "reject" not in error
    assert "[WARNING]: sbatch failed, which may not happen again" in result.stderr  # each try said
    assert fake.jobs == {} and not (project.root / "code_snapshots").exists()


# ---------------------------------------------------------------- parallel submission


def test_a_final_error_in_one_experiment_lists_every_queued_job(project: Project) -> None:
    scripts = recipes(project, 6)
    fake = FakeSlurm(fail_at=8)  # one of the 18 submissions: Invalid account
    result = run_cli("launch", *scripts, env={**BASE_ENV, "SUBMIT_PARALLEL": "3"}, slurm=fake)
    assert result.exit_code == 1
    error = result.stderr.splitlines()[-1]
    assert "Invalid account" in error and "Already submitted (still queued; cancel with 'scancel " in error
    queued = set(fake.jobs)
    assert set(re.search(r"scancel ([\d ]+)'", error).group(1).split()) == queued  # every queued job, no other
    printed = set(re.findall(r"^Submitted batch job (\d+)$", result.stdout, re.MULTILINE))
    assert printed == queued  # and sbatch's line of each is on stdout
    assert "Total GPU hours" not in result.stdout
    assert len(fake.jobs) < 17  # the others stopped before their next sbatch


def test_lines_are_printed_in_argument_order_whatever_finishes_first(project: Project) -> None:
    scripts = recipes(project, 8)
    fake = FakeSlurm()
    result = run_cli("launch", *scripts, env={**BASE_ENV, "SUBMIT_PARALLEL": "8"}, slurm=fake)
    assert result.exit_code == 0, result.output
    ids = stdout_is_the_contracts(result.stdout, [Path(s).stem for s in scripts])
    by_experiment = {job.job_id: job.name() for job in fake.jobs.values()}
    assert [by_experiment[i] for i in ids] == [f"acct:exp-{n:02d}" for n in range(8) for _ in range(3)]


# ---------------------------------------------------------------- a launch cut short, finished by the same command


def test_a_launch_stopped_by_a_final_error_is_finished_by_the_same_command(project: Project) -> None:
    scripts = recipes(project, 3)
    fake = FakeSlurm(fail_at=5)
    first = run_cli("launch", *scripts, env={**BASE_ENV, "SUBMIT_PARALLEL": "1"}, slurm=fake)
    assert first.exit_code == 1 and len(fake.jobs) == 4  # exp-00 complete, exp-01 1/3 queued, then refused
    fake.fail_at = 0
    again = run_cli("launch", *scripts, env={**BASE_ENV, "SUBMIT_PARALLEL": "1"}, slurm=fake)
    assert again.exit_code == 0, again.output
    lines = again.stdout.splitlines()
    # the launch is finished: exp-00, which it had completed, gets nothing more; exp-01 its runs 2/3
    # and 3/3 only; exp-02, planned but never started, all of them
    assert [line for line in lines if line.startswith("Submitting")] == [
        f"Submitting {i}/3 job with 1 nodes for exp-01.sh" for i in (2, 3)] + [
        f"Submitting {i}/3 job with 1 nodes for exp-02.sh" for i in (1, 2, 3)]
    assert lines[0].endswith("exp-00.sh") and lines[1].endswith("exp-01.sh")  # its info line, and no run
    assert "[INFO]: exp-00: finishing the launch of " in again.stderr and "nothing more to submit" in again.stderr
    assert "[INFO]: exp-01: finishing the launch of " in again.stderr
    assert job_names(fake) == {"acct:exp-00": 3, "acct:exp-01": 3, "acct:exp-02": 3}
    assert set(outputs(fake).values()) == {1}  # each run once
    runs = read_manifest(project.root / "code_snapshots" / "exp-01").runs
    assert [run.run for run in runs] == ["1/3", "2/3", "3/3"] and len({run.launch for run in runs}) == 1
    assert len({run.token for run in runs}) == 3 and all(run.token for run in runs)
    # the finished launch's runs have that launch's --output files (its stamp)
    stamps = {job.option("output").split("-%j-")[0] for job in fake.jobs.values() if job.name() == "acct:exp-01"}
    assert len(stamps) == 1
    again_again = run_cli("launch", *scripts, env=BASE_ENV, slurm=fake)  # now complete: NUM_RUNS more of each
    assert again_again.exit_code == 0 and len(fake.jobs) == 18


def test_the_same_command_after_a_complete_launch_submits_num_runs_more(project: Project) -> None:
    script = project.add_recipe("sft-a", config=THREE_RUNS)
    fake = FakeSlurm()
    for _ in range(2):
        assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake).exit_code == 0
    assert len(fake.jobs) == 6
    manifest = read_manifest(project.root / "code_snapshots" / "sft-a")
    assert len(manifest.plans) == 2 and manifest.open_launch is None


def test_a_launch_killed_between_sbatch_and_its_record_is_finished_without_a_duplicate(
        project: Project, slurm_on_path: SlurmOnPath) -> None:
    scripts = recipes(project, 4)
    env = launcher_env(FAKE_SQUEUE_POLLS="1000", SUBMIT_PARALLEL="2", FAKE_SBATCH_KILL_CALLER_AT="8")
    code, out, err = finish(start_nrl_launch("launch", *scripts, cwd=project.root, env=env))
    assert code == -signal.SIGKILL
    # the 8th was queued, then its launcher killed before recording it (the other experiment's sbatch,
    # running at that moment, may have queued its job too: an orphan of the killed launch as well);
    # by then an experiment or two had all their runs: those get nothing more
    assert len(slurm_on_path.submissions()) in (8, 9)
    env.pop("FAKE_SBATCH_KILL_CALLER_AT")
    code, out, err = finish(start_nrl_launch("launch", *scripts, cwd=project.root, env=env))
    assert code == 0, err
    assert "is this run's: queued by the launch that was cut short, never recorded" in err
    calls = slurm_on_path.submissions()
    assert len(calls) == 12  # 4 experiments x 3 runs: the killed launch's 5 and 7 more, no duplicate
    by_output = collections.Counter(next(w for w in c["argv"] if w.startswith("--output=")) for c in calls)
    assert set(by_output.values()) == {1}
    names = [Path(s).stem for s in scripts]
    for name in names:
        assert [run for _, run in recorded(project, name)] == ["1/3", "2/3", "3/3"], name
    every_id = [job_id for name in names for job_id, _ in recorded(project, name)]
    assert len(set(every_id)) == 12


def test_a_launch_that_would_submit_other_runs_than_the_one_cut_short_is_refused(project: Project) -> None:
    script = project.add_recipe("sft-a", config=THREE_RUNS)
    fake = FakeSlurm(fail_at=2)
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake).exit_code == 1  # 1/3 queued
    fake.fail_at = 0
    other = run_cli("launch", str(script), env={**BASE_ENV, "PARTITION": "other"}, slurm=fake)
    assert other.exit_code == 1
    error = other.stderr.splitlines()[-1]
    assert error.startswith(f"[ERROR]: {script}: the latest launch of sft-a (planned ")
    assert "was cut short with 1 of 3 runs queued (jobs 1001)" in error
    assert "run it as it was to finish that launch, or close it first with 'nrl-launch cancel sft-a'" in error
    assert len(fake.jobs) == 1 and "Creating new code snapshot" not in other.stderr
    # closed by a cancel, the next launch is a new one
    assert run_cli("cancel", "sft-a", "--project-root", str(project.root), slurm=fake).exit_code == 0
    new = run_cli("launch", str(script), env={**BASE_ENV, "PARTITION": "other"}, slurm=fake)
    assert new.exit_code == 0, new.output
    assert len(fake.jobs) == 4


def test_an_open_launch_with_nothing_queued_is_replaced(project: Project) -> None:
    script = project.add_recipe("sft-a", config=THREE_RUNS)
    fake = FakeSlurm(fail_at=1)
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake).exit_code == 1
    fake.fail_at = 0
    again = run_cli("launch", str(script), env={**BASE_ENV, "PARTITION": "other"}, slurm=fake)
    assert again.exit_code == 0, again.output
    manifest = read_manifest(project.root / "code_snapshots" / "sft-a")
    assert len(manifest.plans) == 2 and [run.launch for run in manifest.runs] == [manifest.plans[1].launch] * 3


def test_finishing_when_the_queue_cannot_say_what_was_queued_stops_uncertain(project: Project) -> None:
    script = project.add_recipe("sft-a", config=THREE_RUNS)
    fake = FakeSlurm(fail_at=2)
    run_cli("launch", str(script), env=BASE_ENV, slurm=fake)
    fake.fail_at, fake.squeue_flaky = 0, 1000
    again = run_cli("launch", str(script), env={**BASE_ENV, "NRL_SLURM_RETRY": "2"}, slurm=fake)
    assert again.exit_code == 1
    assert "cannot tell whether the launch of sft-a that was cut short queued more runs" in again.stderr
    assert "possibly one more" in again.stderr and len(fake.jobs) == 1


def test_the_plan_is_recorded_before_the_first_run(project: Project) -> None:
    script = project.add_recipe("sft-a", config=THREE_RUNS)
    fake = FakeSlurm(fail_at=1)
    run_cli("launch", str(script), env=BASE_ENV, slurm=fake)
    text = (project.root / "code_snapshots" / "sft-a" / MANIFEST_NAME).read_text()
    plan_entry = text.split("runs:\n", 1)[1]
    assert plan_entry.startswith("- planned: '3'\n  launch: ")  # appended as continue.sh appends
    [plan] = read_manifest(project.root / "code_snapshots" / "sft-a").plans
    assert isinstance(plan, Plan) and plan.runs == 3 and plan.via == "launcher" and plan.at


# ---------------------------------------------------------------- the knobs


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("SUBMIT_PARALLEL", "0", "SUBMIT_PARALLEL must be a whole number from 1 to 64 (got '0')"),
    ("SUBMIT_PARALLEL", "many", "SUBMIT_PARALLEL must be a whole number from 1 to 64"),
    ("NRL_SLURM_RETRY", "-1", "NRL_SLURM_RETRY must be a number of seconds from 0, at most 86400 (one day)"),
    ("NRL_SLURM_RETRY", "soon", "NRL_SLURM_RETRY must be a number of seconds (got 'soon')"),
])
def test_bad_knobs_are_usage_errors(project: Project, variable: str, value: str, message: str) -> None:
    script = project.add_recipe("sft-a")
    result = run_cli("launch", str(script), env={**BASE_ENV, variable: value}, slurm=FakeSlurm())
    assert result.exit_code == 2 and message in result.stderr


def test_the_knobs_are_options_too(project: Project) -> None:
    scripts = recipes(project, 3)
    fake = FakeSlurm(flaky_every=2)
    result = run_cli("launch", "--submit-parallel", "1", "--slurm-retry", "0", *scripts, env=BASE_ENV, slurm=fake)
    assert result.exit_code == 1  # the first lost reply is not tried again
    assert "NRL_SLURM_RETRY" not in result.stderr.split("[ERROR]")[0] and fake.slept == []
    helped = run_cli("launch", "--help")
    assert "--submit-parallel N" in helped.stdout and "--slurm-retry SECONDS" in helped.stdout
    text = " ".join(helped.stdout.split())
    assert "[env var: NRL_SLURM_RETRY]" in text and "(default 60, at most a day; 0: never)" in text
    for command in ("watch", "status", "cancel", "logs"):
        assert "--slurm-retry" in run_cli(command, "--help").stdout, command


def test_a_slurm_that_does_not_answer_is_said_within_seconds(project: Project) -> None:
    script = project.add_recipe("sft-a")

    def silent(call: Call) -> Completed:  # a controller that takes seconds to say it cannot be reached
        time.sleep(3.5)
        return Completed(1, "", "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
                                "(connect failure)\n")

    fake = FakeSlurm(answers={"sbatch": silent})
    result = run_cli("launch", str(script), env={**BASE_ENV, "NRL_SLURM_RETRY": "0"}, slurm=fake)
    assert result.exit_code == 128  # spec section 7: Slurm cannot be reached
    lines = result.stderr.splitlines()
    assert lines[0].startswith("[WARNING]: Slurm has not answered sbatch for 3 s: the controller may be busy or down")
    assert lines[-1].startswith("[ERROR]: cannot reach Slurm: Unable to contact slurm controller")


def test_a_watch_gives_up_within_its_bound_however_long_slurm_takes() -> None:
    # issue 22 item 11: `watch --watch-give-up 3` was silent for 60 s and gave up after 61 s
    from nrl_launch.experiment.joblogs import TrackedExperiment, TrackedJob
    from nrl_launch.follow.watch import Watcher
    from nrl_launch.settings import WatchSettings

    fake = FakeSlurm()
    calls: list[float] = []

    def slow_squeue(argv, *, cwd, env, timeout, executable=None) -> Completed:  # a controller that is down
        calls.append(timeout)
        took = min(9.0, timeout)  # Slurm's client gives up after 9 s; the runner kills it at its timeout
        fake.clock += took
        if took < 9.0:
            raise TimeoutError("squeue did not finish")
        return Completed(1, "", "squeue: error: Unable to contact slurm controller (connect failure)\n")

    client = fake.client(timeout=120)  # the default timeout, and NRL_SLURM_RETRY's 60 s
    client.runner = slow_squeue
    watcher = Watcher(client, WatchSettings(interval=1, give_up=3), out=lambda _: None, err=lambda _: None,
                      wait=fake.sleep, now=fake.now)
    with pytest.raises(Exception, match="gave up watching: Slurm has not answered for 3 s"):
        watcher.follow([TrackedExperiment("x", (TrackedJob("5", Path("/nowhere")),))])
    assert fake.clock <= 1 + 3 + 2  # the first poll after 1 s, then the bound (give or take MIN_CALL)
    assert max(calls) <= 3
