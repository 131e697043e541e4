"""continue.sh: compared with a reference file, checked by bash, and run
against the recording fake sbatch after real launches (hostile names and
values, run numbers, the experiment lock, no flock, the manifest's last line)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from nrl_launch.errors import PlanError
from nrl_launch.experiment.continuation import render_continue_script
from nrl_launch.experiment.manifest import MANIFEST_NAME, read_manifest
from nrl_launch.experiment.rerun import NextRun
from nrl_launch.plan import Submission
from testkit import BASE_ENV, Project, SlurmOnPath, holding_lock, next_stderr_line, run_cli, write

REFERENCE = Path(__file__).parent / "reference" / "continue.sh"
STAMP = "261129-010203"


def reference_submission() -> Submission:
    """The launcher's last run of an experiment, with values that need quoting."""
    return Submission(
        experiment="grpo-x-1n8g-megatron",
        index=2,
        total=2,
        num_nodes=1,
        options=("--nodes=1", "--account=acct", "--job-name=acct:grpo-x-1n8g-megatron", "--partition=batch",
                 "--time=0:30:0", "--gres=gpu:8", '--comment={"Reaper": "it\'s long"}',
                 f"--output=slurm-{STAMP}-%j-grpo-x-1n8g-megatron-2.2.out", "--dependency=singleton"),
        batch_script="ray.sub",
        cwd="/snap shots/grpo-x-1n8g-megatron",
        env=(("FOO", "a 'quoted' $value"), ("HF_HOME", "/hf"), ("MOUNTS", "/snap shots/x:/snap shots/x"),
             ("BASE_LOG_DIR", "/logs/it's here"), ("COMMAND", "uv run tests/x.sh logger.wandb.name=x 'a b=c'")),
        config_env=(("MAX_STEPS", "6"), ("STEPS_PER_RUN", "2"), ("NUM_NODES", None), ("HF_HOME", "/ignored"),
                    ("UID", None), ("BASHOPTS", None), ("BASH_ENV", "/x"), ("SHELLOPTS", None)),
        stamp=STAMP,
    )


TIMESTAMP_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"
ONE_RUN = "NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"
TWO_RUNS = "NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n"


def test_matches_reference_file() -> None:
    text = render_continue_script(reference_submission(), script="tests/test_suites/llm/grpo-x-1n8g-megatron.sh",
                                  version="1.2.3")
    if os.environ.get("UPDATE_REFERENCE") == "1":  # regenerate after an intended change
        REFERENCE.write_text(text)
    assert text == REFERENCE.read_text()


ODD_PATHS = ["/snap shots/x", "/it's/x", '/say "hi"/x', "/a\nb/x", "/$(touch pwned)/`id`/x", "/tab\there/x"]


@pytest.mark.parametrize("cwd", ODD_PATHS)
def test_what_the_code_renders_is_valid_bash(tmp_path: Path, cwd: str) -> None:
    sub = replace(reference_submission(), cwd=cwd)
    script = write(tmp_path / "continue.sh", render_continue_script(sub, script=f"{cwd}/r.sh", version="0"))
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def expected_sbatch_argv(run: int) -> list[str]:
    """The words the launcher's last run of ``reference_submission`` used, for run ``run`` (written out)."""
    return ["--nodes=1", "--account=acct", "--job-name=acct:grpo-x-1n8g-megatron", "--partition=batch",
            "--time=0:30:0", "--gres=gpu:8", '--comment={"Reaper": "it\'s long"}',
            f"--output=slurm-{STAMP}-%j-grpo-x-1n8g-megatron-{run}.2.out", "--dependency=singleton", "ray.sub"]


@pytest.mark.parametrize("folder", ["snap shots", "it's \"here\""])
def test_the_rendered_script_submits_the_launchers_run(tmp_path: Path, slurm_on_path: SlurmOnPath,
                                                       folder: str) -> None:
    # Independent of the reference file: what bash does with the rendered text.
    snapshot = tmp_path / folder / "grpo-x-1n8g-megatron"
    write(snapshot / MANIFEST_NAME, "experiment: grpo-x-1n8g-megatron\nruns:\n- job_id: '7'\n  run: 1/2\n"
                                    "- job_id: '8'\n  run: 2/2\n")
    sub = replace(reference_submission(), cwd=str(snapshot))
    script = write(snapshot / "continue.sh", render_continue_script(sub, script="x.sh", version="0"))
    caller = {**os.environ, "NUM_NODES": "4", "MAX_STEPS": "99", "FOO": "caller's", "BASE_LOG_DIR": "/elsewhere"}
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=caller, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr  # under set -e: `unset UID` (read-only in bash) would stop it
    assert proc.stdout == "Submitted batch job 1001\n"
    [call] = slurm_on_path.calls("sbatch")
    assert call["argv"] == expected_sbatch_argv(3)  # run 3 of the chain: two runs recorded before it
    assert call["cwd"] == str(snapshot)
    env = call["env"]
    assert {name: env.get(name) for name in ("FOO", "HF_HOME", "MOUNTS", "BASE_LOG_DIR", "COMMAND", "MAX_STEPS",
                                             "STEPS_PER_RUN", "NUM_NODES", "BASH_ENV")} == {
        "FOO": "a 'quoted' $value", "HF_HOME": "/hf", "MOUNTS": "/snap shots/x:/snap shots/x",
        "BASE_LOG_DIR": "/logs/it's here", "COMMAND": "uv run tests/x.sh logger.wandb.name=x 'a b=c'",
        "MAX_STEPS": "6", "STEPS_PER_RUN": "2", "NUM_NODES": None, "BASH_ENV": "/x"}
    last = read_manifest(snapshot).runs[-1]
    assert (last.job_id, last.run, last.via, last.base_log_dir) == ("1001", "3", "continue.sh", "/logs/it's here")


def test_a_launch_without_base_log_dir_keeps_the_callers_out_of_the_job(tmp_path: Path,
                                                                         slurm_on_path: SlurmOnPath) -> None:
    # The launch's jobs logged into the snapshot, where watch and status look: a BASE_LOG_DIR exported
    # in the shell that runs continue.sh later must not send this run's logs elsewhere.
    snapshot = tmp_path / "grpo-x-1n8g-megatron"
    write(snapshot / MANIFEST_NAME, "experiment: grpo-x-1n8g-megatron\nruns:\n- job_id: '7'\n  run: 1/2\n")
    base = reference_submission()
    sub = replace(base, cwd=str(snapshot), env=tuple(pair for pair in base.env if pair[0] != "BASE_LOG_DIR"))
    script = write(snapshot / "continue.sh", render_continue_script(sub, script="x.sh", version="0"))
    caller = {**os.environ, "BASE_LOG_DIR": "/elsewhere", "SBATCH_EXPORT": "NONE"}
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=caller, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    [call] = slurm_on_path.calls("sbatch")
    assert "BASE_LOG_DIR" not in call["env"] and call["env"]["HF_HOME"] == "/hf"
    assert "SBATCH_EXPORT" not in call["env"]  # NONE would start the job without COMMAND
    assert "base_log_dir" not in read_manifest(snapshot).runs[-1].to_data()
    # a retry submits as continue.sh does
    run = NextRun.of(sub)
    assert "BASE_LOG_DIR" not in run.environment(caller) and run.base_log_dir is None
    assert NextRun.of(base).environment(caller)["BASE_LOG_DIR"] == "/logs/it's here"


def test_bash_own_variables_are_neither_unset_nor_exported() -> None:
    # `unset UID` is an error in bash (read-only): with `set -e` the script would stop there.
    text = render_continue_script(reference_submission(), script="x.sh", version="0")
    # (BASH_ENV is only read by bash: pinning it is what the launch's own jobs had)
    assert re.findall(r"^\s*(?:unset|export) (\w+)", text, re.MULTILINE) == [
        "MAX_STEPS", "STEPS_PER_RUN", "NUM_NODES", "BASH_ENV", "FOO", "HF_HOME", "MOUNTS", "BASE_LOG_DIR", "COMMAND",
        "SBATCH_EXPORT", "NRL_RUN_TOKEN"]


@pytest.mark.parametrize("value", ["plain", "with space", "it's", '"dq"', "$HOME", "`cmd`", "a\nb", "back\\slash", ""])
def test_exported_values_survive_bash_exactly(tmp_path: Path, value: str) -> None:
    sub = Submission("e", 1, 1, 1, ("--nodes=1", f"--output=slurm-{STAMP}-%j-e-1.1.out"), "ray.sub", str(tmp_path),
                     (("VALUE", value),), stamp=STAMP)
    script = render_continue_script(sub, script="x.sh", version="0")
    # Run only the exports, then print the value.
    exports = script.split("# Added to your environment for the job, as the launcher did, with this run's token.\n")[1]
    exports = exports.split('exec "$sbatch"')[0]
    proc = subprocess.run(["bash", "-c", exports + 'printf %s "$VALUE"\n'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == value


# ---------------------------------------------------------------- after a real launch


def launch(args: list[str], env: dict[str, str | None]):
    """``nrl-launch launch`` through click, Slurm being the fake on PATH."""
    result = run_cli("launch", *args, env=env)
    assert result.exit_code == 0, result.output
    return result


def shell_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean shell: only PATH (with the fake Slurm), its state folder and HOME."""
    return {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"], "HOME": str(tmp_path),
            **extra}


def run_continue(snapshot: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(snapshot / "continue.sh")], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=30)


def output_word(argv: list[str]) -> str:
    return next(word for word in argv if word.startswith("--output="))


def without_output(argv: list[str]) -> list[str]:
    return [word for word in argv if not word.startswith("--output=")]


HOSTILE = [
    "a\nb",
    "$(touch pwned)",
    "`touch pwned`",
    "it's \"quoted\"",
    "#not a comment",
    "two  words",
    "x'; touch pwned; echo '\n# $(touch pwned) `touch pwned` \\",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_and_values_submit_exactly_the_launchers_run(tmp_path: Path, slurm_on_path: SlurmOnPath,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    text: str) -> None:
    # The text is in the project's path (snapshot path), the recipe's folder
    # and name (without its control characters, which no script path given to
    # the launcher may hold: the script is given from the project's root), an
    # EXTRA_ENV value, the job-name suffix and a value the CONFIG block reads
    # from the environment.
    project = Project.create(tmp_path / f"proj {text}")
    printable = "".join(" " if ord(c) < 32 else c for c in text)
    folder = project.root / "tests" / "test_suites" / f"llm {printable}"
    folder.mkdir(parents=True)
    name = f"exp {printable}"
    script = folder / f"{name}.sh"
    script.write_text(f"# ===== BEGIN CONFIG =====\n{TWO_RUNS}SEED=${{SEED:-1}}\n# ===== END CONFIG =====\n")
    project.commit("a hostile recipe")
    env = {**BASE_ENV, "EXTRA_ENV": f"HOSTILE={shlex.quote(text)}", "SLURM_JOB_SUFFIX": text, "SEED": text}
    monkeypatch.chdir(project.root)
    launch([str(script.relative_to(project.root))], env)
    snapshot = project.root / "code_snapshots" / name
    assert subprocess.run(["bash", "-n", str(snapshot / "continue.sh")]).returncode == 0
    last = slurm_on_path.submissions()[-1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    proc = run_continue(snapshot, elsewhere, shell_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    again = slurm_on_path.submissions()[-1]
    assert len(slurm_on_path.submissions()) == 3
    assert without_output(again["argv"]) == without_output(last["argv"])
    assert output_word(again["argv"]) == output_word(last["argv"]).replace("-2.2.out", "-3.2.out")
    assert again["cwd"] == last["cwd"] == str(snapshot)
    for key in ("HOSTILE", "SEED", "COMMAND", "MOUNTS", "HF_HOME", "CONTAINER", "GPUS_PER_NODE"):
        assert again["env"][key] == last["env"][key], key
    assert again["env"]["HOSTILE"] == again["env"]["SEED"] == text
    assert not list(tmp_path.rglob("pwned"))  # nothing of the text ran
    assert [run.run for run in read_manifest(snapshot).runs] == ["1/2", "2/2", "3"]


def test_a_config_block_reading_bash_own_variables_is_refused_before_continue_sh_exists(
        project: Project, slurm_on_path: SlurmOnPath) -> None:
    # Reading $UID in a CONFIG block is an error (config.BASH_OWN_VARIABLES), so no continue.sh can pin it
    script = project.add_recipe("sft-a", config=ONE_RUN + "A=${UID:-1}\n")
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 1 and "UID" in result.stderr
    assert not (project.root / "code_snapshots").exists() and slurm_on_path.calls() == []


def test_non_utf8_values_reach_the_job_byte_exact(project: Project, slurm_on_path: SlurmOnPath,
                                                  tmp_path: Path) -> None:
    # Python holds a non-UTF-8 byte of the environment as a surrogate escape:
    # os.environ, the launcher and the fake sbatch all see the same text.
    raw = "caf\udce9 \udcff"  # b"caf\xe9 \xff"
    script = project.add_recipe("sft-a", config=ONE_RUN)
    env = {**BASE_ENV, "EXTRA_ENV": shlex.quote(f"LATIN1={raw}"), "EXTRA_SCRIPT_ARGS": shlex.quote(f"x={raw}"),
           "BASE_LOG_DIR": str(tmp_path / f"logs {raw}")}
    launch([str(script)], env)
    last = slurm_on_path.submissions()[-1]
    assert last["env"]["LATIN1"] == raw and last["env"]["COMMAND"].endswith(f" 'x={raw}'")
    snapshot = project.root / "code_snapshots" / "sft-a"
    proc = run_continue(snapshot, tmp_path, shell_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    again = slurm_on_path.submissions()[-1]
    assert os.fsencode(again["env"]["LATIN1"]) == b"caf\xe9 \xff"
    for key in ("LATIN1", "COMMAND", "BASE_LOG_DIR"):
        assert again["env"][key] == last["env"][key], key
    assert [run.base_log_dir for run in read_manifest(snapshot).runs] == [str(tmp_path / f"logs {raw}")] * 2


def test_continue_sh_runs_are_numbered_in_the_chain(project: Project, slurm_on_path: SlurmOnPath,
                                                    tmp_path: Path) -> None:
    script = project.add_recipe("sft-a", config=TWO_RUNS)
    launch([str(script)], BASE_ENV)
    snapshot = project.root / "code_snapshots" / "sft-a"
    launcher_last = slurm_on_path.submissions()[-1]["argv"]
    stamp = re.fullmatch(r"--output=slurm-(\d{6}-\d{6})-%j-sft-a-2\.2\.out", output_word(launcher_last))
    assert stamp, launcher_last
    for k in (3, 4):
        proc = run_continue(snapshot, tmp_path, shell_env(tmp_path))
        assert proc.returncode == 0, proc.stderr
        argv = slurm_on_path.submissions()[-1]["argv"]
        assert output_word(argv) == f"--output=slurm-{stamp.group(1)}-%j-sft-a-{k}.2.out"
        assert without_output(argv) == without_output(launcher_last)
    runs = read_manifest(snapshot).runs
    assert [(r.run, r.via) for r in runs] == [("1/2", "launcher"), ("2/2", "launcher"), ("3", "continue.sh"),
                                                   ("4", "continue.sh")]
    assert all(re.fullmatch(TIMESTAMP_RE, r.submitted_at) for r in runs), runs  # one format for both writers


def test_continue_sh_after_dryrun2_is_run_1(project: Project, slurm_on_path: SlurmOnPath, tmp_path: Path) -> None:
    script = project.add_recipe("sft-a", config=TWO_RUNS)
    launch([str(script)], {**BASE_ENV, "DRYRUN": "2"})
    snapshot = project.root / "code_snapshots" / "sft-a"
    proc = run_continue(snapshot, tmp_path, shell_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert output_word(slurm_on_path.submissions()[-1]["argv"]).endswith("-sft-a-1.2.out")
    assert [r.run for r in read_manifest(snapshot).runs] == ["1"]


def test_continue_sh_waits_for_the_experiment_lock(project: Project, slurm_on_path: SlurmOnPath,
                                                   tmp_path: Path) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    launch([str(script)], BASE_ENV)
    snapshot = project.root / "code_snapshots" / "sft-a"
    with holding_lock(snapshot) as lock:  # a launch of sft-a is submitting
        proc = subprocess.Popen(["bash", str(snapshot / "continue.sh")], cwd=tmp_path, env=shell_env(tmp_path),
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = next_stderr_line(proc)
        assert "waiting for another launch" in line and str(lock) in line and "sft-a" in line, line
        assert len(slurm_on_path.submissions()) == 1  # nothing submitted while the lock is held
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "Submitted batch job 1002\n"
    assert [r.job_id for r in read_manifest(snapshot).runs] == ["1001", "1002"]


def test_continue_sh_without_flock_still_submits_and_records(project: Project, slurm_on_path: SlurmOnPath,
                                                             tmp_path: Path) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    launch([str(script)], BASE_ENV)
    snapshot = project.root / "code_snapshots" / "sft-a"
    # bash, the Slurm client (the fake needs python3) and a few coreutils; no flock
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "grep", "date", "tail", "env"):
        (bindir / tool).symlink_to(shutil.which(tool))
    (bindir / "python3").symlink_to(sys.executable)
    env = shell_env(tmp_path, PATH=f"{slurm_on_path.bin}{os.pathsep}{bindir}")
    with holding_lock(snapshot):  # not seen without flock: it must not wait
        proc = run_continue(snapshot, tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Submitted batch job 1002\n"
    assert [r.run for r in read_manifest(snapshot).runs] == ["1/1", "2"]


def test_continue_sh_adds_the_missing_final_newline(project: Project, slurm_on_path: SlurmOnPath,
                                                    tmp_path: Path) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    launch([str(script)], BASE_ENV)
    snapshot = project.root / "code_snapshots" / "sft-a"
    manifest = snapshot / MANIFEST_NAME
    manifest.write_text(manifest.read_text().rstrip("\n"))  # e.g. edited by hand
    proc = run_continue(snapshot, tmp_path, shell_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert [(r.job_id, r.run) for r in read_manifest(snapshot).runs] == [("1001", "1/1"), ("1002", "2")]


def test_continue_sh_without_a_readable_manifest_submits_nothing(project: Project, slurm_on_path: SlurmOnPath,
                                                                 tmp_path: Path) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    launch([str(script)], BASE_ENV)
    snapshot = project.root / "code_snapshots" / "sft-a"
    (snapshot / MANIFEST_NAME).unlink()
    proc = run_continue(snapshot, tmp_path, shell_env(tmp_path))
    assert proc.returncode == 1
    assert "cannot be numbered" in proc.stderr
    assert len(slurm_on_path.submissions()) == 1


def test_a_recipe_that_read_nothing_from_the_environment_says_so(tmp_path: Path) -> None:
    sub = replace(reference_submission(), config_env=())
    text = render_continue_script(sub, script="x.sh", version="0")
    pinned = text.split("so that this run plans the same steps and resources as the launcher's runs.\n")[1]
    assert pinned.split("\n\n")[0] == "# (none)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"env": (("NOT-A-NAME", "x"),)}, "cannot write continue.sh: 'NOT-A-NAME' is not a shell variable name"),
        ({"config_env": (("A B", "1"),)}, "cannot write continue.sh: 'A B' is not a shell variable name"),
        ({"options": ("--nodes=1", "--dependency=singleton")},
         "cannot write continue.sh for 'grpo-x-1n8g-megatron': its runs have no --output option of the form "
         f"'--output=slurm-{STAMP}-%j-grpo-x-1n8g-megatron-2.2.out'"),
    ],
)
def test_what_cannot_be_written_as_bash_is_a_plan_error(change: dict, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        render_continue_script(replace(reference_submission(), **change), script="x.sh", version="0")
    assert str(caught.value) == message
