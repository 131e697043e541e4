"""One command's output (``console.py``) and the one place errors become
``[ERROR]: …`` and exit statuses (``cli.LauncherCommand``, ``cli._report``)."""

from __future__ import annotations

import errno
import io
import sys

import pytest
import yaml

from nrl_launch.console import Console
from nrl_launch.errors import LauncherError
from nrl_launch.experiment.manifest import MANIFEST_NAME, read_manifest
from testkit import BASE_ENV, FakeJob, FakeSlurm, Project, run_cli

ONE_RUN = "NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"
TWO_RUNS = "NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n"


class FullStdout(io.StringIO):
    """A stdout that takes nothing more (a full disk): every write fails with ENOSPC."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


# ---------------------------------------------------------------- the console alone


def test_a_command_that_keeps_going_loses_its_output_once_and_fails_at_the_end(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    console = Console("cancel", keep_going=True)
    console.out("first")
    monkeypatch.setattr(sys, "stdout", FullStdout())
    console.out("second")
    console.out("third")  # sent nowhere, said once
    with pytest.raises(LauncherError) as info:
        console.check()
    assert str(info.value) == ("the cancel finished but its output could not be written to stdout "
                               "(No space left on device)")
    err = capsys.readouterr().err.splitlines()
    assert err == ["[WARNING]: cannot write to stdout (No space left on device): the cancel goes on, its output "
                   "is lost"]


def test_a_command_that_does_not_keep_going_ends_with_the_write_error(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console("status")
    monkeypatch.setattr(sys, "stdout", FullStdout())
    with pytest.raises(OSError, match="No space left on device"):
        console.out("row")
    console.check()  # nothing was lost quietly: the error itself ends the command


@pytest.mark.parametrize("keep_going", [True, False])
def test_a_closed_stdout_is_named(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  keep_going: bool) -> None:
    console = Console("launch", keep_going=keep_going)
    console.hint = "; see what it did with: nrl-launch status"
    monkeypatch.setattr(sys, "stdout", None)
    if not keep_going:
        with pytest.raises(OSError, match="stdout is closed"):
            console.out("line")
        return
    console.out("line")
    with pytest.raises(LauncherError, match=r"output could not be written to stdout \(stdout is closed\); see what"):
        console.check()


# ---------------------------------------------------------------- through the commands


def stdout_full_after(jobs: int):
    """An ``on_submit`` hook: once ``jobs`` jobs are queued, stdout takes nothing more."""
    def hook(job: FakeJob) -> None:
        if int(job.job_id) - 1000 >= jobs:
            sys.stdout = FullStdout()  # CliRunner puts its own back afterwards

    return hook


def test_a_launch_whose_stdout_fills_up_submits_everything_then_exits_1(project: Project,
                                                                          fake_slurm: FakeSlurm) -> None:
    scripts = [str(project.add_recipe(name, config=TWO_RUNS)) for name in ("sft-a", "sft-b")]
    fake_slurm.on_submit = stdout_full_after(1)
    result = run_cli("launch", *scripts, env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 1
    assert [job.job_id for job in fake_slurm.submissions()] == ["1001", "1002", "1003", "1004"]
    recorded = {name: [r.job_id for r in read_manifest(project.root / "code_snapshots" / name).runs]
                for name in ("sft-a", "sft-b")}  # (the experiments are submitted at once: SUBMIT_PARALLEL)
    assert sorted(recorded["sft-a"] + recorded["sft-b"]) == ["1001", "1002", "1003", "1004"]
    assert [len(ids) for ids in recorded.values()] == [2, 2]
    assert result.stderr.count("[WARNING]: cannot write to stdout (No space left on device)") == 1
    assert result.stderr.splitlines()[-1] == ("[ERROR]: the launch finished but its output could not be written to "
                                              "stdout (No space left on device); see what it did with: "
                                              "nrl-launch status")
    # the next command of the same process starts with a stdout of its own
    again = run_cli("status", "--format", "json", "--project-root", str(project.root), env=BASE_ENV,
                    slurm=fake_slurm)
    assert again.exit_code == 0 and "cannot write" not in again.stderr, again.output


def test_cancel_records_every_experiment_when_its_stdout_is_gone(project: Project, fake_slurm: FakeSlurm,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("sft-a", "sft-b"):
        assert run_cli("launch", str(project.add_recipe(name, config=ONE_RUN)), env=BASE_ENV,
                       slurm=fake_slurm).exit_code == 0
    monkeypatch.chdir(project.root)
    scancel = fake_slurm._scancel

    def stdout_gone_after_scancel(call):  # type: ignore[no-untyped-def]
        sys.stdout = FullStdout()
        return scancel(call)

    fake_slurm.answers["scancel"] = stdout_gone_after_scancel
    result = run_cli("cancel", "sft-a", "sft-b", slurm=fake_slurm)
    assert result.exit_code == 1
    for name, job in (("sft-a", "1001"), ("sft-b", "1002")):  # both cancellations recorded
        last = yaml.safe_load((project.root / "code_snapshots" / name / MANIFEST_NAME).read_text())["runs"][-1]
        assert (last["via"], last["cancelled"]) == ("nrl-launch cancel", job), last
    assert result.stderr.splitlines()[-1] == ("[ERROR]: the cancel finished but its output could not be written to "
                                              "stdout (No space left on device)")


@pytest.mark.parametrize(
    ("args", "env", "code", "first_line"),
    [
        # a usage problem found by the command: exit 2, the command's --help named
        (["launch", "x.sh"], {**BASE_ENV, "DRYRUN": "7"}, 2,
         "[ERROR]: DRYRUN must be empty, 0, 1 or 2 (got '7') (see 'nrl-launch launch --help')"),
        (["launch", "x.sh"], {**BASE_ENV, "NRL_SLURM_TIMEOUT": "soon"}, 2,
         "[ERROR]: NRL_SLURM_TIMEOUT must be a number of seconds (got 'soon') (see 'nrl-launch launch --help')"),
        (["status", "--slurm-timeout", "0"], BASE_ENV, 2,
         "[ERROR]: NRL_SLURM_TIMEOUT must be a positive number of seconds, at most 86400 (one day) (got '0') "
         "(see 'nrl-launch status --help')"),
        # one click found itself
        (["launch", "--bogus", "x.sh"], BASE_ENV, 2,
         "[ERROR]: No such option '--bogus'. Did you mean '--mounts'? (see 'nrl-launch launch --help')"),
        (["stauts"], BASE_ENV, 2,
         "[ERROR]: unknown command 'stauts' (did you mean 'status'?) (see 'nrl-launch --help')"),
        # the launcher's own error: its exit code
        (["logs", "nope"], BASE_ENV, 1, "[ERROR]: no snapshot of experiment 'nope' in "),
    ],
)
def test_every_error_is_one_line_and_its_exit_status(project: Project, fake_slurm: FakeSlurm,
                                                     monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                     env: dict[str, str], code: int, first_line: str) -> None:
    monkeypatch.chdir(project.root)
    (project.root / "x.sh").write_text(f"# ===== BEGIN CONFIG =====\n{ONE_RUN}# ===== END CONFIG =====\n")
    result = run_cli(*args, env=env, slurm=fake_slurm)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith(first_line), result.stderr
    assert "Traceback" not in result.output and fake_slurm.calls == []


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        # a first argument that is no command: a script (it exists, has a "/" or ends in .sh/.txt) is launched
        (["gone.sh"], 1, "[ERROR]: gone.sh: cannot read: "),
        (["gone.txt"], 1, "[ERROR]: gone.txt: cannot read the suite file: "),
        (["sub/gone"], 1, "[ERROR]: sub/gone: cannot read: "),
        (["x.sh"], 0, ""),  # DRYRUN=1 below: GPU-hours only
        (["x"], 0, ""),  # a script without .sh that exists
        # otherwise a mistyped command, with a suggestion or the list
        (["stauts"], 2, "[ERROR]: unknown command 'stauts' (did you mean 'status'?) (see 'nrl-launch --help')"),
        (["zzz"], 2, "[ERROR]: unknown command 'zzz'; commands: cancel, launch, lint, logs, report, snapshot, status, "
                     "watch, or a script path to launch (see 'nrl-launch --help')"),
        (["-h"], 0, ""), (["--help"], 0, ""), (["--version"], 0, ""),
    ],
)
def test_the_first_argument_is_a_command_or_a_script(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                     args: list[str], code: int, stderr: str) -> None:
    monkeypatch.chdir(project.root)
    for name in ("x.sh", "x"):
        (project.root / name).write_text(f"# ===== BEGIN CONFIG =====\n{ONE_RUN}# ===== END CONFIG =====\n")
    result = run_cli(*args, env={**BASE_ENV, "DRYRUN": "1"})
    assert result.exit_code == code, result.output
    assert result.stderr.startswith(stderr) and (stderr or code == 0), result.stderr
    if args[0] in ("-h", "--help"):
        assert result.stdout.startswith("Usage: nrl-launch [OPTIONS] COMMAND [ARGS]...")
    if args[0] == "--version":
        assert result.stdout.startswith("nrl-launch, version ")
    if args[0] in ("x.sh", "x"):
        assert result.stdout.splitlines()[0] == f"[INFO]: 1 GPUhrs to run {args[0]}"


def test_bare_nrl_launch_prints_its_help_and_ctrl_c_is_130(project: Project, fake_slurm: FakeSlurm,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bare = run_cli()
    assert bare.exit_code == 2 and bare.stderr.startswith("Usage: nrl-launch [OPTIONS] COMMAND [ARGS]...")
    assert "[ERROR]" not in bare.stderr and bare.stdout == ""
    monkeypatch.chdir(project.root)
    (project.root / "code_snapshots").mkdir()
    folder = project.root / "code_snapshots" / "sft-a"
    folder.mkdir()
    from nrl_launch.experiment.manifest import Manifest, append_run, write_manifest

    write_manifest(folder, Manifest("sft-a"))
    append_run(folder, "1001", "1/1")

    def ctrl_c(call):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    fake_slurm.answers["squeue"] = ctrl_c
    result = run_cli("status", slurm=fake_slurm)
    assert (result.exit_code, result.stderr.strip()) == (130, "[ERROR]: aborted")
