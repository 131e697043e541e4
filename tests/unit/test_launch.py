"""The launch command end to end: real git projects, a recording fake sbatch."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nrl_launch.errors import LauncherError
from nrl_launch.experiment.locks import experiment_locks
from nrl_launch.experiment.manifest import MANIFEST_NAME, Manifest, Source, read_manifest, write_manifest
from nrl_launch.launch import launch
from nrl_launch.settings import make_settings
from nrl_launch.slurm.client import Completed
from testkit import (
    BASE_ENV,
    REPO,
    Call,
    FakeJob,
    FakeSlurm,
    Project,
    SlurmOnPath,
    config_block,
    finish_after,
    git,
    launcher_env,
    next_stderr_line,
    run_cli,
    write,
)

STAMP_RE = r"\d{6}-\d{6}"


def stdout_lines(result) -> list[str]:
    return result.stdout.splitlines()


# ---------------------------------------------------------------- DRYRUN=1


def test_dryrun1_prints_gpu_hours_per_script_and_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No git repository at all: DRYRUN=1 must not need one.
    suite = tmp_path / "llm"
    suite.mkdir()
    (suite / "a.sh").write_text("# ===== BEGIN CONFIG =====\nNUM_NODES=2\nNUM_RUNS=3\nNUM_MINUTES=30\n# ===== END "
                                "CONFIG =====\n")
    (suite / "b.sh").write_text("# === BEGIN CONFIG ===\nNUM_NODES=1\nGPUS_PER_NODE=4\nNUM_RUNS=1\nNUM_MINUTES=50\n# "
                                "=== END CONFIG ===\n")
    monkeypatch.chdir(tmp_path)
    env = {**BASE_ENV, "DRYRUN": "1", "CONTAINER": "", "ACCOUNT": "", "PARTITION": ""}
    result = run_cli("launch", "./llm/a.sh", "llm/b.sh", env=env)
    assert result.exit_code == 0, result.output
    assert stdout_lines(result) == [
        "[INFO]: 24 GPUhrs to run ./llm/a.sh",  # 3*2*8*30/60
        "[DRY_RUN]: Skipping creation of snapshot and submission of ./llm/a.sh.",
        "[INFO]: 3 GPUhrs to run llm/b.sh",  # 1*1*4*50/60 = 200/60 truncated
        "[DRY_RUN]: Skipping creation of snapshot and submission of llm/b.sh.",
        "[INFO]: Total GPU hours: 27",
    ]
    assert not (tmp_path / "code_snapshots").exists()


def test_dryrun1_does_not_leak_defaults_between_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bash original kept GPUS_PER_NODE=4 and NUM_NODES's default from the
    # first script when evaluating the second one.
    (tmp_path / "first.sh").write_text(
        '# ===== BEGIN CONFIG =====\nNUM_NODES="${NUM_NODES:-4}"\nGPUS_PER_NODE=4\nNUM_RUNS=1\nNUM_MINUTES=60\n# '
        '===== END CONFIG =====\n')
    (tmp_path / "second.sh").write_text(
        '# ===== BEGIN CONFIG =====\nNUM_NODES="${NUM_NODES:-2}"\nNUM_RUNS=1\nNUM_MINUTES=60\n# ===== END CONFIG '
        '=====\n')
    monkeypatch.chdir(tmp_path)
    result = run_cli("launch", "first.sh", "second.sh", env={**BASE_ENV, "DRYRUN": "1"})
    assert result.exit_code == 0, result.output
    assert stdout_lines(result)[2] == "[INFO]: 16 GPUhrs to run second.sh"  # 2 nodes * 8 GPUs
    assert stdout_lines(result)[-1] == "[INFO]: Total GPU hours: 32"


def test_num_runs_default_warns_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.sh").write_text(
        "# ===== BEGIN CONFIG =====\nNUM_NODES=1\nSTEPS_PER_RUN=40\nMAX_STEPS=100\nNUM_MINUTES=60\n# ===== END CONFIG "
        "=====\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli("launch", "x.sh", env={**BASE_ENV, "DRYRUN": "1"})
    assert result.exit_code == 0, result.output
    assert "[INFO]: 24 GPUhrs to run x.sh" in stdout_lines(result)  # 3 runs * 8 GPU-hours
    assert "x.sh" in result.stderr and "NUM_RUNS" in result.stderr


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("env", "fragment", "code"),
    [
        ({"CONTAINER": None}, "CONTAINER must be set", 2),
        ({"ACCOUNT": None}, "ACCOUNT must be set", 2),
        ({"PARTITION": None}, "PARTITION must be set", 2),
        ({"HF_HOME": ""}, "HF_HOME must be set and non-empty", 2),
        ({"HF_DATASETS_CACHE": None}, "HF_DATASETS_CACHE must be set and non-empty", 2),
        ({"DRYRUN": "yes"}, "DRYRUN must be empty, 0, 1 or 2", 2),
        ({"DRYRUN": " "}, "DRYRUN must be empty, 0, 1 or 2", 2),
        ({"DRYRUN": "00"}, "DRYRUN must be empty, 0, 1 or 2", 2),
        ({"DRYRUN": "3"}, "DRYRUN must be empty, 0, 1 or 2", 2),
        ({"CODE_SNAPSHOT_DIRNAME": "/abs/snaps"}, "CODE_SNAPSHOT_DIRNAME is an absolute path", 2),
        ({"CODE_SNAPSHOT_DIRNAME": "a/../b"}, "CODE_SNAPSHOT_DIRNAME has a '.', '..' or '.git' component", 2),
        ({"CODE_SNAPSHOT_DIRNAME": ".git/snaps"}, "CODE_SNAPSHOT_DIRNAME has a '.', '..' or '.git' component", 2),
        ({"CODE_SNAPSHOT_DIRNAME": "a//b"}, "CODE_SNAPSHOT_DIRNAME has an empty component", 2),
        ({"CODE_SNAPSHOT_DIRNAME": "snaps/"}, "CODE_SNAPSHOT_DIRNAME has an empty component", 2),
        ({"CODE_SNAPSHOT_DIRNAME": "sn\taps"}, "CODE_SNAPSHOT_DIRNAME contains a control character", 2),
        ({"EXTRA_ENV": "NOT-A-NAME=1"}, "EXTRA_ENV entries must be KEY=VALUE", 2),
        ({"EXTRA_ENV": "FOO=1 UID=5"}, "EXTRA_ENV cannot set UID: bash keeps it read-only", 2),
        ({"EXTRA_ENV": "SHELLOPTS=xtrace"}, "EXTRA_ENV cannot set SHELLOPTS: bash keeps it read-only", 2),
        ({"EXTRA_SCRIPT_ARGS": "'unterminated"}, "EXTRA_SCRIPT_ARGS is not valid shell words", 2),
        ({"WATCH_INTERVAL": "soon"}, "WATCH_INTERVAL must be a number", 2),
        ({"SNAPSHOT_MODE": "rsync"}, "SNAPSHOT_MODE must be one of", 2),
    ],
)
def test_bad_environment_is_an_error(project: Project, slurm_on_path: SlurmOnPath, env: dict, fragment: str,
                                     code: int) -> None:
    script = project.add_recipe("sft-a")
    result = run_cli("launch", str(script), env={**BASE_ENV, **env})
    assert result.exit_code == code
    assert f"[ERROR]: {fragment}" in result.stderr
    assert slurm_on_path.calls() == []
    assert not (project.root / "code_snapshots").exists()


def test_empty_container_account_partition_are_allowed(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    empty = {**BASE_ENV, "CONTAINER": "", "ACCOUNT": "", "PARTITION": ""}
    result = run_cli("launch", str(script), env={**empty, "DRYRUN": "1"})  # as CI estimates GPU-hours
    assert result.exit_code == 0, result.output
    assert stdout_lines(result) == [f"[INFO]: 64 GPUhrs to run {script}",
                                    f"[DRY_RUN]: Skipping creation of snapshot and submission of {script}.",
                                    "[INFO]: Total GPU hours: 64"]
    assert slurm_on_path.calls() == []
    full = run_cli("launch", str(script), env=empty)  # a full launch too: Slurm's default account and partition
    assert full.exit_code == 0, full.output
    job = slurm_on_path.submissions()[0]
    assert job["argv"][:3] == ["--nodes=1", "--job-name=:sft-a", "--time=0:240:0"]
    assert not any(word.startswith(("--account", "--partition")) for word in job["argv"])
    assert job["env"]["CONTAINER"] == "" and job["env"]["COMMAND"].endswith(" ++container=")


def test_option_wins_over_environment(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    result = run_cli("launch", "--account", "fromcli", str(script), env={**BASE_ENV, "ACCOUNT": "fromenv"})
    assert result.exit_code == 0, result.output
    assert "--account=fromcli" in slurm_on_path.submissions()[0]["argv"]


def test_help_documents_every_variable() -> None:
    result = run_cli("launch", "--help")
    assert result.exit_code == 0
    for name in ["CONTAINER", "ACCOUNT", "PARTITION", "HF_HOME", "HF_DATASETS_CACHE", "DRYRUN", "EXTRA_ENV",
                 "MOUNTS", "IS_RELEASE", "EXCLUDE_GRES", "SLURM_JOB_SUFFIX", "EXTRA_SCRIPT_ARGS",
                 "SANDBOX_CONTAINER", "SANDBOX_COMMAND", "SANDBOX_ENV_VARS", "WATCH", "WATCH_INTERVAL",
                 "CODE_SNAPSHOT_DIRNAME"]:
        assert f"env var: {name}" in " ".join(result.output.split()), name


def test_untracked_script_is_an_error_and_nothing_happens(project: Project, slurm_on_path: SlurmOnPath) -> None:
    good = project.add_recipe("sft-good")
    untracked = project.add_recipe("sft-new", commit=False)
    result = run_cli("launch", str(good), str(untracked), env=BASE_ENV)
    assert result.exit_code == 1
    assert "[ERROR]:" in result.stderr and "sft-new.sh" in result.stderr and "not tracked" in result.stderr
    assert result.stdout == ""
    assert slurm_on_path.calls() == []
    assert not (project.root / "code_snapshots").exists()


def test_config_error_in_a_later_script_stops_everything(project: Project, slurm_on_path: SlurmOnPath) -> None:
    good = project.add_recipe("sft-good")
    bad = project.add_recipe("sft-bad", config="NUM_NODES=3\nSEGMENT_SIZE=2\nNUM_MINUTES=10\n")
    result = run_cli("launch", str(good), str(bad), env=BASE_ENV)
    assert result.exit_code == 1
    # line 5 of the file: shebang, comment, BEGIN marker, NUM_NODES, SEGMENT_SIZE
    assert re.search(r"\[ERROR\]: .*sft-bad\.sh:5: .*SEGMENT_SIZE", result.stderr), result.stderr
    assert slurm_on_path.calls() == []
    assert not (project.root / "code_snapshots").exists()


def test_missing_config_block_prints_a_template(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.root / "tests" / "test_suites" / "llm" / "no-block.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/bash\necho hi\n")
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "1"})
    assert result.exit_code == 1
    assert "no-block.sh" in result.stderr
    assert "# ===== BEGIN CONFIG =====" in result.stderr and "NUM_MINUTES=" in result.stderr


def test_same_experiment_twice_is_an_error(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    result = run_cli("launch", str(script), str(script), env=BASE_ENV)
    assert result.exit_code == 1
    assert "experiment 'sft-a'" in result.stderr
    assert slurm_on_path.calls() == []


@pytest.mark.parametrize("dryrun", ["", "2"])
def test_same_basename_in_two_folders_is_refused_by_a_launch_that_snapshots(project: Project, fake_slurm: FakeSlurm,
                                                                            dryrun: str) -> None:
    llm = project.add_recipe("sft-a")
    vlm = project.add_recipe("sft-a", kind="vlm")
    result = run_cli("launch", str(llm), str(vlm), env={**BASE_ENV, "DRYRUN": dryrun}, slurm=fake_slurm)
    assert result.exit_code == 1
    assert f"[ERROR]: {vlm}: experiment 'sft-a' is also given as {llm}" in result.stderr
    assert fake_slurm.calls == [] and not (project.root / "code_snapshots").exists()


def test_dryrun1_counts_a_duplicate_twice_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as the bash launcher did for a **/*.sh glob that finds llm/x.sh and vlm/x.sh
    for kind, minutes in (("llm", 60), ("vlm", 30)):
        write(tmp_path / kind / "x.sh", config_block(NUM_NODES=1, NUM_RUNS=1, NUM_MINUTES=minutes))
    monkeypatch.chdir(tmp_path)
    result = run_cli("launch", "llm/x.sh", "vlm/x.sh", env={**BASE_ENV, "DRYRUN": "1"})
    assert result.exit_code == 0, result.output
    assert stdout_lines(result) == [
        "[INFO]: 8 GPUhrs to run llm/x.sh",
        "[DRY_RUN]: Skipping creation of snapshot and submission of llm/x.sh.",
        "[INFO]: 4 GPUhrs to run vlm/x.sh",
        "[DRY_RUN]: Skipping creation of snapshot and submission of vlm/x.sh.",
        "[INFO]: Total GPU hours: 12",
    ]
    assert "[WARNING]: experiment 'x' is given 2 times (llm/x.sh, vlm/x.sh)" in result.stderr


# ---------------------------------------------------------------- full launch


def expected_options(exp: str, i: int, n: int, *, account: str = "acct", nodes: int = 1, minutes: int = 240,
                     gres: str | None = "gpu:8", suffix: str = "", extra: tuple[str, ...] = ()) -> list[str]:
    opts = [f"--nodes={nodes}", *extra, f"--account={account}", f"--job-name={account}:{exp}{suffix}",
            "--partition=batch", f"--time=0:{minutes}:0"]
    if gres:
        opts.append(f"--gres={gres}")
    return opts


def split_output(argv: list[str]) -> tuple[list[str], str, list[str]]:
    """(options before --output, the --output value, the rest)."""
    idx = next(i for i, a in enumerate(argv) if a.startswith("--output="))
    return argv[:idx], argv[idx].split("=", 1)[1], argv[idx + 1:]


def test_full_launch_submits_every_run_byte_for_byte(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-llama-1n8g-fsdp2tp1")
    snapshot = project.root / "code_snapshots" / "sft-llama-1n8g-fsdp2tp1"
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 0, result.output
    assert stdout_lines(result) == [
        f"[INFO]: 64 GPUhrs to run {script}",
        "Submitting 1/2 job with 1 nodes for sft-llama-1n8g-fsdp2tp1.sh",
        "Submitted batch job 1001",
        "Submitting 2/2 job with 1 nodes for sft-llama-1n8g-fsdp2tp1.sh",
        "Submitted batch job 1002",
        "[INFO]: Total GPU hours: 64",
    ]
    assert f"Creating new code snapshot in {snapshot}" in result.stderr
    subs = slurm_on_path.submissions()
    assert len(subs) == 2
    stamps = set()
    for i, sub in enumerate(subs, start=1):
        before, output, after = split_output(sub["argv"])
        assert before == expected_options("sft-llama-1n8g-fsdp2tp1", i, 2)
        match = re.fullmatch(rf"slurm-({STAMP_RE})-%j-sft-llama-1n8g-fsdp2tp1-{i}\.2\.out", output)
        assert match, output
        stamps.add(match.group(1))
        assert after == ["--dependency=singleton", "ray.sub"]
        assert sub["cwd"] == str(snapshot)
        assert sub["script"] == (project.root / "ray.sub").read_text()
        env = sub["env"]
        assert env["COMMAND"] == (
            "uv run tests/test_suites/llm/sft-llama-1n8g-fsdp2tp1.sh logger.wandb.name=sft-llama-1n8g-fsdp2tp1 "
            f"++git_meta={project.meta()} ++container=nvcr.io/nvidia/nemo-rl:test")
        assert env["MOUNTS"] == f"{snapshot}:{snapshot}"
        assert (env["HF_HOME"], env["HF_DATASETS_CACHE"], env["CONTAINER"], env["GPUS_PER_NODE"]) == (
            "/hf", "/hf/datasets", "nvcr.io/nvidia/nemo-rl:test", "8")
        assert (env["SANDBOX_CONTAINER"], env["SANDBOX_COMMAND"], env["SANDBOX_ENV_VARS"]) == ("", "", "")
    assert len(stamps) == 1  # one launch, one timestamp
    # the pre-flight checked the same request before anything was queued
    test_only = [c for c in slurm_on_path.calls("sbatch") if "--test-only" in c["argv"]]
    assert test_only and test_only[0]["argv"][1:] == subs[0]["argv"]
    assert slurm_on_path.calls().index(test_only[0]) == 0


def test_segment_gpus_and_comment_options(project: Project, slurm_on_path: SlurmOnPath) -> None:
    config = ("NUM_NODES=4\nGPUS_PER_NODE=4\nSEGMENT_SIZE=2\nNUM_RUNS=1\nNUM_MINUTES=30\n"
              "JOB_REAPER_COMMENT='{\"Reaper\":{\"exemptIdleTimeMins\":\"120\",\"reason\":\"long init\"}}'\n")
    script = project.add_recipe("grpo-x-4n4g-megatron", config=config)
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 0, result.output
    before, _, after = split_output(slurm_on_path.submissions()[0]["argv"])
    assert before == [*expected_options("grpo-x-4n4g-megatron", 1, 1, nodes=4, minutes=30, gres="gpu:4",
                                        extra=("--segment=2",)),
                      '--comment={"Reaper":{"exemptIdleTimeMins":"120","reason":"long init"}}']
    assert slurm_on_path.submissions()[0]["env"]["GPUS_PER_NODE"] == "4"
    assert "Submitting 1/1 job with 4 nodes for grpo-x-4n4g-megatron.sh" in stdout_lines(result)


@pytest.mark.parametrize(
    ("env", "check"),
    [
        ({"EXCLUDE_GRES": "1"}, lambda s: not any(a.startswith("--gres") for a in s["argv"])),
        ({"SLURM_JOB_SUFFIX": "-nightly"}, lambda s: "--job-name=acct:sft-a-nightly" in s["argv"]),
        ({"IS_RELEASE": "1"}, lambda s: s["env"]["COMMAND"].endswith(" logger.wandb.project=nemo-rl-release")),
        ({"EXTRA_SCRIPT_ARGS": "policy.lr=1e-6 'a b=c'", "IS_RELEASE": "1"},
         lambda s: s["env"]["COMMAND"].endswith(" ++container=nvcr.io/nvidia/nemo-rl:test policy.lr=1e-6 'a b=c' "
                                                "logger.wandb.project=nemo-rl-release")),
        ({"EXTRA_ENV": "FOO=1 'BAR=two words'"}, lambda s: (s["env"]["FOO"], s["env"]["BAR"]) == ("1", "two words")),
        ({"MOUNTS": "/data:/data,/ckpt:/ckpt"},
         lambda s: s["env"]["MOUNTS"].endswith(":" + s["cwd"] + ",/data:/data,/ckpt:/ckpt")),
        ({"SANDBOX_CONTAINER": "sb.sqsh", "SANDBOX_COMMAND": "run-sb", "SANDBOX_ENV_VARS": "A=1"},
         lambda s: (s["env"]["SANDBOX_CONTAINER"], s["env"]["SANDBOX_COMMAND"], s["env"]["SANDBOX_ENV_VARS"])
         == ("sb.sqsh", "run-sb", "A=1")),
        ({"CODE_SNAPSHOT_DIRNAME": "snaps"}, lambda s: s["cwd"].endswith("/snaps/sft-a")),
        ({"CONTAINER": ""}, lambda s: " ++container=" in s["env"]["COMMAND"] + " " and s["env"]["CONTAINER"] == ""),
    ],
)
def test_environment_variables_reach_the_submission(project: Project, slurm_on_path: SlurmOnPath, env: dict,
                                                    check) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    result = run_cli("launch", str(script), env={**BASE_ENV, **env})
    assert result.exit_code == 0, result.output
    assert check(slurm_on_path.submissions()[0])


@pytest.mark.parametrize("via", ["options", "environment"])
def test_the_contracts_variables_reach_the_job_from_options_or_environment(project: Project,
                                                                            slurm_on_path: SlurmOnPath,
                                                                            via: str) -> None:
    # With the options, the variables are unset in the launcher's environment:
    # the job can only have them because the launcher put them there.
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    given = {"CONTAINER": "img:opt", "HF_HOME": "/opt/hf", "HF_DATASETS_CACHE": "/opt/hf/ds",
             "SANDBOX_CONTAINER": "sb.sqsh", "SANDBOX_COMMAND": "serve", "SANDBOX_ENV_VARS": "A=1",
             "MOUNTS": "/data:/data"}
    if via == "options":
        args = [f"--{name.lower().replace('_', '-')}={value}" for name, value in given.items()]
        env: dict[str, str | None] = {"ACCOUNT": "acct", "PARTITION": "batch"}
    else:
        args, env = [], {"ACCOUNT": "acct", "PARTITION": "batch", **given}
    result = run_cli("launch", *args, str(script), env=env)
    assert result.exit_code == 0, result.output
    job_env = slurm_on_path.submissions()[0]["env"]
    snapshot = project.root / "code_snapshots" / "sft-a"
    assert {name: job_env.get(name) for name in [*given, "GPUS_PER_NODE", "COMMAND"]} == {
        **given, "MOUNTS": f"{snapshot}:{snapshot},/data:/data", "GPUS_PER_NODE": "8",
        "COMMAND": f"uv run tests/test_suites/llm/sft-a.sh logger.wandb.name=sft-a ++git_meta={project.meta()} "
                   "++container=img:opt"}


def test_extra_env_cannot_override_what_the_batch_script_relies_on(project: Project, slurm_on_path: SlurmOnPath,
                                                                   tmp_path: Path) -> None:
    # README: EXTRA_ENV comes first, the contract's variables after it win.
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    extra = "COMMAND=evil MOUNTS=/x HF_HOME=/evil GPUS_PER_NODE=1 CONTAINER=other KEEP=me"
    assert run_cli("launch", str(script), env={**BASE_ENV, "EXTRA_ENV": extra}).exit_code == 0
    snapshot = project.root / "code_snapshots" / "sft-a"
    expected = {"COMMAND": f"uv run tests/test_suites/llm/sft-a.sh logger.wandb.name=sft-a ++git_meta={project.meta()}"
                           " ++container=nvcr.io/nvidia/nemo-rl:test",
                "MOUNTS": f"{snapshot}:{snapshot}", "HF_HOME": "/hf", "GPUS_PER_NODE": "8",
                "CONTAINER": "nvcr.io/nvidia/nemo-rl:test", "KEEP": "me"}
    launched = slurm_on_path.submissions()[0]["env"]
    assert {name: launched[name] for name in expected} == expected
    # continue.sh submits the same environment
    shell = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"]}
    assert run_continue(snapshot, tmp_path, shell).returncode == 0
    again = slurm_on_path.submissions()[-1]["env"]
    assert {name: again[name] for name in expected} == expected


def test_the_manifest_records_each_run_as_i_of_num_runs(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=3\nNUM_MINUTES=10\n")
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    runs = read_manifest(project.root / "code_snapshots" / "sft-a").runs
    assert [(r.job_id, r.run, r.via) for r in runs] == [("1001", "1/3", "launcher"),
                                                                ("1002", "2/3", "launcher"),
                                                                ("1003", "3/3", "launcher")]


def test_a_run_that_cannot_be_recorded_is_a_warning_on_stderr(project: Project, fake_slurm: FakeSlurm) -> None:
    # The jobs are queued: the launch goes on, and stdout (which CI parses) keeps the contract's lines only.
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    manifest = project.root / "code_snapshots" / "sft-a" / MANIFEST_NAME

    def remove_manifest(job: FakeJob) -> None:
        manifest.unlink(missing_ok=True)  # e.g. someone cleaned the snapshot up

    fake_slurm.on_submit = remove_manifest
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    assert stdout_lines(result) == [f"[INFO]: 2 GPUhrs to run {script}",
                                    "Submitting 1/2 job with 1 nodes for sft-a.sh", "Submitted batch job 1001",
                                    "Submitting 2/2 job with 1 nodes for sft-a.sh", "Submitted batch job 1002",
                                    "[INFO]: Total GPU hours: 2"]
    warnings = [line for line in result.stderr.splitlines() if "could not record" in line]
    assert warnings == [f"[WARNING]: could not record job {job} in the manifest: {manifest}: no manifest to record "
                        "in" for job in ("1001", "1002")]


def test_launcher_environment_is_passed_to_the_job(project: Project, slurm_on_path: SlurmOnPath,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_USER_VAR", "kept")
    script = project.add_recipe("sft-a")
    assert run_cli("launch", str(script), env=BASE_ENV).exit_code == 0
    assert slurm_on_path.submissions()[0]["env"]["SOME_USER_VAR"] == "kept"


def test_relative_script_from_another_directory(project: Project, slurm_on_path: SlurmOnPath,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    project.add_recipe("sft-a")
    monkeypatch.chdir(project.root / "tests" / "test_suites")
    result = run_cli("launch", "./llm/sft-a.sh", env=BASE_ENV)
    assert result.exit_code == 0, result.output
    assert stdout_lines(result)[0] == "[INFO]: 64 GPUhrs to run ./llm/sft-a.sh"
    assert slurm_on_path.submissions()[0]["env"]["COMMAND"].startswith("uv run tests/test_suites/llm/sft-a.sh ")


def test_uncommitted_edit_is_in_the_snapshot_and_untracked_files_are_not(project: Project,
                                                                         slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    (project.root / "README.md").write_text("edited, not committed\n")
    (project.root / "scratch.txt").write_text("untracked\n")
    assert run_cli("launch", str(script), env=BASE_ENV).exit_code == 0
    snapshot = project.root / "code_snapshots" / "sft-a"
    assert (snapshot / "README.md").read_text() == "edited, not committed\n"
    assert not (snapshot / "scratch.txt").exists()
    assert os.access(snapshot / "tests/test_suites/llm/sft-a.sh", os.X_OK)


def test_submodule_files_are_in_the_snapshot(project: Project, slurm_on_path: SlurmOnPath, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "helper.py").write_text("X = 1\n")
    git(lib, "add", "-A")
    git(lib, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "lib")
    git(project.root, "submodule", "add", "-q", str(lib), "3rdparty/lib")
    script = project.add_recipe("sft-a")
    assert run_cli("launch", str(script), env=BASE_ENV).exit_code == 0
    assert (project.root / "code_snapshots/sft-a/3rdparty/lib/helper.py").read_text() == "X = 1\n"


def test_existing_snapshot_is_reused(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    assert run_cli("launch", str(script), env=BASE_ENV).exit_code == 0
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 0
    assert f"Using existing code snapshot in {project.root / 'code_snapshots' / 'sft-a'}" in result.stderr


def test_reusing_a_snapshot_of_older_code_warns_with_both_commits(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    assert run_cli("launch", str(script), env=BASE_ENV).exit_code == 0
    old = git(project.root, "rev-parse", "HEAD").strip()
    (project.root / "README.md").write_text("newer code\n")
    project.commit("newer code")
    new = git(project.root, "rev-parse", "HEAD").strip()
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 0  # the contract keeps the reuse
    warning = next(line for line in result.stderr.splitlines() if line.startswith("[WARNING]: reusing"))
    assert old[:12] in warning and new[:12] in warning
    snapshot = project.root / "code_snapshots" / "sft-a"
    assert (snapshot / "README.md").read_text() == "demo project\n"  # still the old code


def test_sbatch_failing_half_way_says_what_was_submitted(project: Project, slurm_on_path: SlurmOnPath,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = project.add_recipe("sft-a")
    second = project.add_recipe("sft-b")
    monkeypatch.setenv("FAKE_SBATCH_FAIL_AT", "3")  # run 1/2 of sft-b
    result = run_cli("launch", str(first), str(second), env={**BASE_ENV, "SUBMIT_PARALLEL": "1"})
    assert result.exit_code == 1
    assert "Submitted batch job 1002" in result.stdout
    assert "Total GPU hours" not in result.stdout
    assert "[ERROR]:" in result.stderr and "run 1/2 of sft-b" in result.stderr
    assert "Invalid account" in result.stderr  # sbatch's own reason
    assert "sft-a: 1001, 1002" in result.stderr and "scancel 1001 1002" in result.stderr
    assert len(slurm_on_path.submissions()) == 3  # stopped at once: 2/2 of sft-b never tried


def test_sbatch_answer_without_job_id_is_an_error(project: Project, slurm_on_path: SlurmOnPath,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a")
    monkeypatch.setenv("FAKE_SBATCH_GARBAGE_AT", "1")
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 1
    assert "without a job id" in result.stderr and "stdout: 'sbatch: something unexpected'" in result.stderr
    # sbatch said it succeeded: a job may be queued, so "Nothing was submitted" would be a guess
    assert "Nothing was submitted" not in result.stderr and "check squeue --me" in result.stderr


def test_preflight_rejection_submits_nothing(project: Project, slurm_on_path: SlurmOnPath,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    first = project.add_recipe("sft-a")
    second = project.add_recipe("sft-b")
    monkeypatch.setenv("FAKE_SBATCH_REJECT", "Invalid partition name specified")
    result = run_cli("launch", str(first), str(second), env=BASE_ENV)
    assert result.exit_code == 1
    assert "sft-a" in result.stderr and "Invalid partition name specified" in result.stderr
    assert slurm_on_path.submissions() == []
    assert result.stdout == ""


# ---------------------------------------------------------------- DRYRUN=2 and continue.sh


def test_dryrun2_makes_snapshot_and_continue_sh_but_submits_nothing(project: Project,
                                                                    slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    snapshot = project.root / "code_snapshots" / "sft-a"
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2"})
    assert result.exit_code == 0, result.output
    skip = (f"[DRY_RUN]: Skipping submission of {script}. Find the snapshot at {snapshot} and manually launch with "
            "'bash continue.sh'")
    assert stdout_lines(result) == [
        f"[INFO]: 64 GPUhrs to run {script}",
        "Submitting 1/2 job with 1 nodes for sft-a.sh", skip,
        "Submitting 2/2 job with 1 nodes for sft-a.sh", skip,
        "[INFO]: Total GPU hours: 64",
    ]
    assert slurm_on_path.submissions() == []
    assert os.access(snapshot / "continue.sh", os.X_OK)


@pytest.mark.parametrize(("down", "preflighted"), [("", True), ("1", False)])
def test_dryrun2_preflights_only_when_slurm_is_reachable(project: Project, slurm_on_path: SlurmOnPath,
                                                         monkeypatch: pytest.MonkeyPatch, down: str,
                                                         preflighted: bool) -> None:
    script = project.add_recipe("sft-a")
    monkeypatch.setenv("FAKE_SLURM_DOWN", down)
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2"})
    assert result.exit_code == 0, result.output
    test_only = [c for c in slurm_on_path.calls("sbatch") if "--test-only" in c["argv"]]
    assert bool(test_only) == preflighted
    assert ("pre-flight (sbatch --test-only) skipped" in result.stderr) != preflighted
    assert slurm_on_path.submissions() == []


def test_dryrun2_reports_a_preflight_rejection_as_a_warning(project: Project, slurm_on_path: SlurmOnPath,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a")
    monkeypatch.setenv("FAKE_SBATCH_REJECT", "Requested node configuration is not available")
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2"})
    assert result.exit_code == 0  # DRYRUN=2 submits nothing: the plan itself is fine
    assert "[WARNING]: pre-flight:" in result.stderr and "Requested node configuration" in result.stderr
    assert stdout_lines(result)[-1] == "[INFO]: Total GPU hours: 64"


def run_continue(snapshot: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Only bash and the Slurm client: a PATH without our Python package.
    return subprocess.run(["bash", str(snapshot / "continue.sh")], cwd=cwd, env=env, capture_output=True, text=True)


def test_continue_sh_reproduces_the_last_submission(project: Project, slurm_on_path: SlurmOnPath,
                                                    tmp_path: Path) -> None:
    config = ('NUM_NODES="${NUM_NODES:-1}"\nSTEPS_PER_RUN=${STEPS_PER_RUN:-20}\nMAX_STEPS=${MAX_STEPS:-40}\n'
              "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))\nNUM_MINUTES=10\n"
              "JOB_REAPER_COMMENT='{\"a\": \"b c\"}'\n")
    script = project.add_recipe("sft-a", config=config)
    env = {**BASE_ENV, "EXTRA_ENV": "FOO='x y'", "MOUNTS": "/d:/d", "EXTRA_SCRIPT_ARGS": "a=1 'b=2 3'",
           "SLURM_JOB_SUFFIX": "-s", "IS_RELEASE": "1", "STEPS_PER_RUN": "2", "MAX_STEPS": "6"}
    result = run_cli("launch", str(script), env=env)
    assert result.exit_code == 0, result.output
    assert len(slurm_on_path.submissions()) == 3
    last = slurm_on_path.submissions()[-1]
    snapshot = project.root / "code_snapshots" / "sft-a"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A clean shell, except a NUM_NODES that was unset at launch time.
    job_env = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"], "HOME": str(tmp_path),
               "NUM_NODES": "4"}
    proc = run_continue(snapshot, elsewhere, job_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Submitted batch job 1004\n"
    again = slurm_on_path.submissions()[-1]
    # the same words, but the log file name says run 4 (test_continuation.py has more)
    assert [w.replace("-4.3.out", "-3.3.out") for w in again["argv"]] == last["argv"] != again["argv"]
    assert again["cwd"] == last["cwd"]
    for key in ("COMMAND", "MOUNTS", "HF_HOME", "HF_DATASETS_CACHE", "CONTAINER", "GPUS_PER_NODE", "FOO",
                "SANDBOX_CONTAINER", "SANDBOX_COMMAND", "SANDBOX_ENV_VARS", "STEPS_PER_RUN", "MAX_STEPS"):
        assert again["env"][key] == last["env"][key], key
    assert "NUM_NODES" not in again["env"]  # the recipe plans 1 node, as at launch
    entry = read_manifest(snapshot).runs[-1]
    assert (entry.job_id, entry.run, entry.via) == ("1004", "4", "continue.sh")


def test_nested_snapshot_dirname_and_base_log_dir_through_launch_continue_status_and_watch(
        project: Project, slurm_on_path: SlurmOnPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what the bisect helper sets, and a shared log folder
    dirname = "code_snapshots_bisect/abc1234-Fix-the-loss"
    logs = tmp_path / "joblogs"
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    env = {**BASE_ENV, "CODE_SNAPSHOT_DIRNAME": dirname, "BASE_LOG_DIR": str(logs)}
    assert run_cli("launch", str(script), env=env).exit_code == 0
    snapshot = project.root / dirname / "sft-a"
    assert (snapshot / "continue.sh").is_file()
    assert slurm_on_path.submissions()[0]["env"]["BASE_LOG_DIR"] == str(logs)  # passed into the job

    shell_env = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"]}
    proc = run_continue(snapshot, tmp_path, shell_env)
    assert proc.returncode == 0, proc.stderr
    assert slurm_on_path.submissions()[-1]["env"]["BASE_LOG_DIR"] == str(logs)  # pinned by continue.sh
    assert [r.base_log_dir for r in read_manifest(snapshot).runs] == [str(logs)] * 2

    write(logs / "1002-logs" / "ray-driver.log", "Metric Checks\n  [PASS] loss\n")  # the continue.sh run
    monkeypatch.chdir(project.root)
    status = run_cli("status", "--code-snapshot-dirname", dirname, "--format", "json")
    assert status.exit_code == 0, status.output
    assert [(row["experiment"], row["metric_checks"]) for row in json.loads(status.stdout)] == [("sft-a", "PASS")]
    watched = run_cli("watch", "--code-snapshot-dirname", dirname, "--watch-interval", "0.01", "sft-a")
    assert watched.exit_code == 0, watched.output
    assert watched.stdout.splitlines()[-5:-3] == ["[WATCH]: Checking sft-a", "[METRIC PASS]    sft-a"]


def test_continue_sh_reports_sbatch_failure(project: Project, slurm_on_path: SlurmOnPath, tmp_path: Path) -> None:
    script = project.add_recipe("sft-a")
    assert run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2"}).exit_code == 0
    env = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"], "FAKE_SBATCH_FAIL_AT": "1"}
    proc = run_continue(project.root / "code_snapshots" / "sft-a", tmp_path, env)
    assert proc.returncode != 0
    assert "Invalid account" in proc.stderr


# ---------------------------------------------------------------- WATCH


def test_watch_prints_verdicts_and_fails_on_metric_fail(project: Project, slurm_on_path: SlurmOnPath,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    b = project.add_recipe("sft-b", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    c = project.add_recipe("sft-c", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    # The driver logs the jobs write (the fake sbatch writes them at submission).
    monkeypatch.setenv("FAKE_DRIVER_LOG_1001", "step 1\nMetric Checks\n  [PASS] train/loss@4 = 0.1 < 0.5\n")
    monkeypatch.setenv("FAKE_DRIVER_LOG_1002", "Metric Checks\n  [FAIL] train/loss@4 = 0.9 < 0.5\n")
    monkeypatch.setenv("FAKE_DRIVER_LOG_1003", "Traceback: out of memory\n")
    monkeypatch.setenv("FAKE_SQUEUE_POLLS", "2")
    monkeypatch.setenv("FAKE_SQUEUE_DOWN", "1")
    result = run_cli("launch", str(a), str(b), str(c), env={**BASE_ENV, "WATCH": "1", "WATCH_INTERVAL": "0.01",
                                                              "SUBMIT_PARALLEL": "1"})
    assert result.exit_code == 1
    snaps = project.root / "code_snapshots"
    log_a, log_b, log_c = (snaps / name / f"{job}-logs" / "ray-driver.log"
                           for name, job in (("sft-a", 1001), ("sft-b", 1002), ("sft-c", 1003)))
    lines = stdout_lines(result)
    total = lines.index("[INFO]: Total GPU hours: 3")
    assert re.fullmatch(r"-rw-r--r-- 1 \S+ \S+ +25 \w{3} [ \d]\d \d\d:\d\d " + re.escape(str(log_c)),
                        lines[-2])
    assert [re.sub(r"^\[[-\d: ]{19}\] ", "[TS] ", line) for line in lines[total:-2]] == [
        "[INFO]: Total GPU hours: 3",
        "[TS] [WATCH]: Tracking 3 jobs: 1001 1002 1003",
        "[TS] [WATCH]: Polling every 0.01s. Press Enter to refresh immediately.",
        "[TS] [WATCH]: Remaining: 3",  # the poll after the failed one
        "[TS] [WATCH]: Remaining: 3",
        "[TS] [WATCH]: Finished jobs: 1001 1002 1003",
        "[TS] [WATCH]: Remaining: 0",
        "[TS] [WATCH]: All tracked jobs have finished.",
        "[WATCH]: Checking sft-a",
        "[METRIC PASS]    sft-a",
        f"{log_a}:Metric Checks",
        f"{log_a}-  [PASS] train/loss@4 = 0.1 < 0.5",
        "[WATCH]: Checking sft-b",
        "[METRIC FAIL]    sft-b",
        f"{log_b}:Metric Checks",
        f"{log_b}-  [FAIL] train/loss@4 = 0.9 < 0.5",
        "[WATCH]: Checking sft-c",
        "[GENERAL FAIL]   sft-c",
    ]
    assert lines[-1] == "[INFO]: One or more tests failed. Exiting with status 1."
    assert "cannot reach Slurm" in result.stderr  # one failed poll, retried (on stderr)


def test_watch_all_pass_exits_zero(project: Project, slurm_on_path: SlurmOnPath,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    monkeypatch.setenv("FAKE_DRIVER_LOG_1001", "step 20 of 40\n")
    monkeypatch.setenv("FAKE_DRIVER_LOG_1002", "Metric Checks\n  [PASS] ok\n")
    result = run_cli("launch", str(a), env={**BASE_ENV, "WATCH": "1", "WATCH_INTERVAL": "0.01"})
    assert result.exit_code == 0, result.output
    assert stdout_lines(result)[-4:] == ["[METRIC PASS]    sft-a",
                                         f"{project.root}/code_snapshots/sft-a/1002-logs/ray-driver.log:Metric Checks",
                                         f"{project.root}/code_snapshots/sft-a/1002-logs/ray-driver.log-  [PASS] ok",
                                         "[INFO]: All tests passed. Exiting with status 0."]


def test_dryrun0_is_a_full_launch(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "0"}, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    assert [job.job_id for job in fake_slurm.submissions()] == ["1001", "1002"]


# ---------------------------------------------------------------- the shim



def test_shim_runs_from_any_directory_and_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "x.sh").write_text("# ===== BEGIN CONFIG =====\nNUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=60\n# ===== END "
                                   "CONFIG =====\n")
    link = tmp_path / "launch-link"
    link.symlink_to(REPO / "tools" / "launch")
    env = {**os.environ, **BASE_ENV, "DRYRUN": "1"}
    for shim in (REPO / "tools" / "launch", link):
        proc = subprocess.run([str(shim), "x.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["[INFO]: 8 GPUhrs to run x.sh",
                                            "[DRY_RUN]: Skipping creation of snapshot and submission of x.sh.",
                                            "[INFO]: Total GPU hours: 8"]


def test_shim_without_dependencies_prints_one_install_line(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # a fresh virtual environment: no click, no PyYAML
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {**os.environ, "NRL_LAUNCH_PYTHON": str(venv / "bin" / "python")}
    proc = subprocess.run([str(REPO / "tools" / "launch"), "--help"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "tools/install" in proc.stderr and "Traceback" not in proc.stderr


def test_shim_in_a_venv_that_sees_the_system_packages(project: Project, slurm_on_path: SlurmOnPath,
                                                      tmp_path: Path) -> None:
    # A venv made with --system-site-packages holding click but not GitPython (the one mutmut runs
    # in): finding click there must not stop site from adding the rest. The base interpreter of
    # the test machine may hold no GitPython, so a .pth file of the venv stands in for the
    # system's packages: only site (never the fast start) reads it.
    import click
    import git

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    [own] = venv.glob("lib/python3.*/site-packages")
    (own / "click").symlink_to(Path(click.__file__).parent)
    (own / "elsewhere.pth").write_text(f"{Path(git.__file__).parent.parent}\n")
    assert own not in Path(git.__file__).parents  # GitPython only from elsewhere
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    env = {**os.environ, **BASE_ENV, "NRL_LAUNCH_PYTHON": str(venv / "bin" / "python3")}
    proc = subprocess.run([str(REPO / "tools" / "launch"), str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr  # was: [ERROR]: cannot launch: No module named 'git'
    assert len(slurm_on_path.submissions()) == 1


def test_shim_does_not_leak_its_search_path_into_jobs(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(REPO / "tools" / "launch"), str(script)], env={**env, **BASE_ENV},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    job_env = slurm_on_path.submissions()[0]["env"]
    assert "PYTHONPATH" not in job_env and not any(k.startswith("NRL_LAUNCH") for k in job_env)


def test_python_dash_m_and_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "nrl_launch", "launch", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "tools")})
    assert proc.returncode == 0 and "CONTAINER" in proc.stdout


def test_installed_console_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The one installed for the interpreter running the tests: another
    # nrl-launch first on PATH (another environment, another checkout) proves
    # nothing, so a broken one is put there first.
    write(tmp_path / "decoy" / "nrl-launch", "#!/bin/sh\necho 'not the installed one' >&2\nexit 1\n", 0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'decoy'}{os.pathsep}{os.environ['PATH']}")
    script = Path(sys.executable).parent / "nrl-launch"
    if not script.is_file():
        pytest.skip(f"{script} is not installed: run tools/install (the README's set-up does)")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert all(command in proc.stdout for command in ("launch", "lint", "status", "watch"))


# ---------------------------------------------------------------- end to end through the tools/launch shim


def shim_env(**extra: str) -> dict[str, str]:
    """A launcher process's environment (fake Slurm first on PATH) without HF_HOME and HF_DATASETS_CACHE:
    a test gives them as options, so the job has them only if the launcher passes them on."""
    env = launcher_env(**extra)
    for name in ("HF_HOME", "HF_DATASETS_CACHE", "PYTHONPATH", "MAX_STEPS", "STEPS_PER_RUN"):
        env.pop(name, None)
    return {**env, **extra}


def test_tools_launch_submits_the_chain_and_continue_sh_repeats_it(project: Project, slurm_on_path: SlurmOnPath,
                                                                   tmp_path: Path) -> None:
    config = ("NUM_NODES=1\nSTEPS_PER_RUN=20\nMAX_STEPS=${MAX_STEPS:-40}\n"
              "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))\nNUM_MINUTES=30\n")
    project.add_recipe("sft-a", config=config)
    proc = subprocess.run([str(REPO / "tools" / "launch"), "--hf-home", "/opt/hf", "--hf-datasets-cache=/opt/ds",
                           "./llm/sft-a.sh"], cwd=project.root / "tests" / "test_suites",
                          env=shim_env(MAX_STEPS="60"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[INFO]: 12 GPUhrs to run ./llm/sft-a.sh",  # 3 runs * 8 GPUs * 30 min
                                        "Submitting 1/3 job with 1 nodes for sft-a.sh", "Submitted batch job 1001",
                                        "Submitting 2/3 job with 1 nodes for sft-a.sh", "Submitted batch job 1002",
                                        "Submitting 3/3 job with 1 nodes for sft-a.sh", "Submitted batch job 1003",
                                        "[INFO]: Total GPU hours: 12"]
    snapshot = project.root / "code_snapshots" / "sft-a"
    jobs = slurm_on_path.submissions()
    stamp = re.search(r"--output=slurm-(\d{6}-\d{6})-", " ".join(jobs[0]["argv"]))
    assert stamp, jobs[0]["argv"]

    def argv(run: int) -> list[str]:
        return ["--nodes=1", "--account=acct", "--job-name=acct:sft-a", "--partition=batch", "--time=0:30:0",
                "--gres=gpu:8", f"--output=slurm-{stamp.group(1)}-%j-sft-a-{run}.3.out", "--dependency=singleton",
                "ray.sub"]

    assert [job["argv"] for job in jobs] == [argv(1), argv(2), argv(3)]
    assert {(job["cwd"], job["env"]["HF_HOME"], job["env"]["HF_DATASETS_CACHE"]) for job in jobs} == {
        (str(snapshot), "/opt/hf", "/opt/ds")}
    # continue.sh from a shell that has none of the launch's variables
    shell = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"], "HOME": str(tmp_path)}
    again = run_continue(snapshot, tmp_path, shell)
    assert again.returncode == 0, again.stderr
    extra = slurm_on_path.submissions()[-1]
    assert extra["argv"] == argv(4) and extra["cwd"] == str(snapshot)
    assert (extra["env"]["HF_HOME"], extra["env"]["MAX_STEPS"]) == ("/opt/hf", "60")  # MAX_STEPS pinned: 3 runs


def test_tools_launch_refuses_an_untracked_recipe(project: Project, slurm_on_path: SlurmOnPath) -> None:
    project.add_recipe("sft-good")
    new = project.add_recipe("sft-new", commit=False)
    proc = subprocess.run([str(REPO / "tools" / "launch"), "./llm/sft-good.sh", "./llm/sft-new.sh"],
                          cwd=project.root / "tests" / "test_suites",
                          env=shim_env(HF_HOME="/hf", HF_DATASETS_CACHE="/d"), capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == (f"[ERROR]: ./llm/sft-new.sh: {new} is not tracked by git (commit it: snapshots must be "
                           "reproducible)\n")
    assert proc.stdout == "" and slurm_on_path.calls() == []
    assert not (project.root / "code_snapshots").exists()


def test_a_launch_killed_while_copying_leaves_no_snapshot_to_reuse(project: Project,
                                                                    slurm_on_path: SlurmOnPath) -> None:
    # Spec section 4: an interrupted snapshot is never mistaken for a complete one.
    for i in range(3000):  # enough files that the copy is still running when the kill arrives
        write(project.root / "data" / f"d{i % 30}" / f"f{i}.txt", f"{i}\n" * 200)
    project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    launch = [str(REPO / "tools" / "launch"), "./llm/sft-a.sh"]
    cwd = project.root / "tests" / "test_suites"
    env = shim_env(HF_HOME="/hf", HF_DATASETS_CACHE="/d")
    snapshot = project.root / "code_snapshots" / "sft-a"
    proc = subprocess.Popen(launch, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = next_stderr_line(proc)
    assert line == f"Creating new code snapshot in {snapshot}\n", line
    proc.kill()
    proc.communicate()
    # Killed before the rename: nothing there. Had the copy finished first, a complete snapshot.
    assert not snapshot.exists() or (snapshot / MANIFEST_NAME).is_file()
    created = not snapshot.exists()
    again = subprocess.run(launch, cwd=cwd, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    said = "Creating new" if created else "Using existing"
    assert f"{said} code snapshot in {snapshot}" in again.stderr
    assert len(list(snapshot.rglob("f*.txt"))) == 3000
    assert not [p for p in snapshot.parent.iterdir() if ".tmp-" in p.name]  # the dead launch's folder is cleaned


# ---------------------------------------------------------------- review fixes


def test_a_snapshot_the_bash_launcher_made_gets_a_manifest_and_continue_sh_works(
        project: Project, slurm_on_path: SlurmOnPath, tmp_path: Path) -> None:
    # What the bash launcher left: the tracked files copied, no manifest. The drop-in reuses it (the
    # contract says so), records its runs, and continue.sh can number the next one.
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    snapshot = project.root / "code_snapshots" / "sft-a"
    for rel in ("ray.sub", "tests/test_suites/llm/sft-a.sh"):
        write(snapshot / rel, (project.root / rel).read_text())
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 0, result.output
    assert f"Using existing code snapshot in {snapshot}" in result.stderr
    assert "its commit is unknown" in result.stderr and "could not record" not in result.stderr
    recorded = read_manifest(snapshot)
    assert recorded.source is not None and recorded.source.commit is None and recorded.experiment == "sft-a"
    assert [(r.job_id, r.run) for r in recorded.runs] == [("1001", "1/2"), ("1002", "2/2")]
    env = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"], "HOME": str(tmp_path)}
    again = run_continue(snapshot, tmp_path, env)
    assert again.returncode == 0, again.stderr
    assert read_manifest(snapshot).runs[-1].run == "3"
    relaunch = run_cli("launch", str(script), env=BASE_ENV)  # the manifest written once stays: it still says unknown
    assert "its commit is unknown" in relaunch.stderr and "wrote a manifest" not in relaunch.stderr


def test_an_empty_snapshot_folder_is_not_taken_for_a_snapshot(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    empty = project.root / "code_snapshots" / "sft-a"
    empty.mkdir(parents=True)  # e.g. left by a tool that crashed before copying
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 0, result.output
    assert f"Creating new code snapshot in {empty}" in result.stderr
    assert (empty / "tests/test_suites/llm/sft-a.sh").is_file() and (empty / "ray.sub").is_file()


def test_a_rejected_relaunch_leaves_continue_sh_alone(project: Project, slurm_on_path: SlurmOnPath,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a")
    assert run_cli("launch", str(script), env=BASE_ENV).exit_code == 0
    continue_sh = project.root / "code_snapshots" / "sft-a" / "continue.sh"
    before = continue_sh.read_text()
    monkeypatch.setenv("FAKE_SBATCH_REJECT", "Invalid account")
    result = run_cli("launch", str(script), env={**BASE_ENV, "ACCOUNT": "other"})
    assert result.exit_code == 1 and "Nothing was submitted" in result.stderr
    assert continue_sh.read_text() == before  # still chains behind the queued runs (same job name)


def test_untracked_batch_script_is_an_error(project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a")
    (project.root / "my.sub").write_text("#!/bin/bash\n")
    result = run_cli("launch", str(script), env={**BASE_ENV, "BATCH_SCRIPT": "my.sub"})
    assert result.exit_code == 2  # an environment problem (BATCH_SCRIPT), found before anything is made
    assert "batch script my.sub is not a tracked file" in result.stderr
    assert not (project.root / "code_snapshots").exists() and slurm_on_path.calls() == []


def test_git_errors_name_the_script_as_typed(tmp_path: Path, slurm_on_path: SlurmOnPath,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.sh").write_text("# ===== BEGIN CONFIG =====\nNUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=5\n# ===== END "
                                   "CONFIG =====\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli("launch", "x.sh", env=BASE_ENV)
    assert result.exit_code == 1
    assert result.stderr.startswith("[ERROR]: x.sh: ") and "not inside a git repository" in result.stderr


def test_ctrl_c_while_submitting_says_what_is_queued(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a")

    def interrupt_second(job: FakeJob) -> None:
        if job.job_id in ("1002", "1004"):  # the second run of this launch, and of the one below
            raise KeyboardInterrupt

    fake_slurm.on_submit = interrupt_second
    settings = make_settings({**BASE_ENV}, launch_stamp="261129-000000")
    with pytest.raises(LauncherError) as info:
        launch([str(script)], settings, environ=dict(os.environ), slurm=fake_slurm.client(),
               out=lambda _: None, err=lambda _: None)
    assert "interrupted while submitting" in str(info.value) and "sft-a: 1001" in str(info.value)
    assert "scancel 1001" in str(info.value)
    # exit 130 as for any Ctrl-C: `git bisect run` would read 1 as "bad commit"
    assert info.value.exit_code == 130
    # the same command again finishes that launch: job 1002 (queued as sbatch got the Ctrl-C) is the
    # missing run 2/2, found in the queue and adopted; nothing is submitted twice
    again = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert again.exit_code == 0, again.output
    assert stdout_lines(again)[1:] == ["Submitting 2/2 job with 1 nodes for sft-a.sh", "Submitted batch job 1002",
                                       "[INFO]: Total GPU hours: 64"]  # what the script costs, as planned
    assert "finishing the launch" in again.stderr and "job 1002 is this run's" in again.stderr
    assert sorted(fake_slurm.jobs) == ["1001", "1002"]
    runs = read_manifest(project.root / "code_snapshots" / "sft-a").runs
    assert [(r.job_id, r.run) for r in runs] == [("1001", "1/2"), ("1002", "2/2")]


def test_watch_resume_hint_names_where_the_snapshots_are(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    settings = make_settings({**BASE_ENV, "WATCH": "1", "CODE_SNAPSHOT_DIRNAME": "snaps"}, launch_stamp="x")

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(LauncherError) as info:
        launch([str(script)], settings, environ=dict(os.environ), slurm=fake_slurm.client(),
               out=lambda _: None, err=lambda _: None, wait=interrupt)
    assert str(info.value).endswith(f"Resume with: nrl-launch watch --project-root {project.root} "
                                    "--code-snapshot-dirname snaps --watch-interval 300 sft-a")
    assert info.value.exit_code == 130


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["launch"], "[ERROR]: Missing argument 'SCRIPT...'."),
        (["launch", "--bogus", "x.sh"], "[ERROR]: No such option '--bogus'"),
        (["--bogus", "x.sh"], "[ERROR]: No such option '--bogus'"),
    ],
)
def test_click_usage_errors_use_the_error_format(args: list[str], fragment: str) -> None:
    result = run_cli(*args, env={"DRYRUN": None})
    assert result.exit_code == 2
    assert result.stderr.startswith(fragment) and "Traceback" not in result.stderr


def test_launch_is_the_default_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.sh").write_text("# ===== BEGIN CONFIG =====\nNUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=60\n# ===== END "
                                   "CONFIG =====\n")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, **BASE_ENV, "DRYRUN": "1", "PYTHONPATH": str(REPO / "tools")}
    proc = subprocess.run([sys.executable, "-m", "nrl_launch", "--dryrun", "1", "x.sh"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[INFO]: Total GPU hours: 8"


def test_shim_ignores_modules_in_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "shlex.py").write_text("raise SystemExit('a file of the current folder was imported')\n")
    (tmp_path / "x.sh").write_text("# ===== BEGIN CONFIG =====\nNUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=60\n# ===== END "
                                   "CONFIG =====\n")
    proc = subprocess.run([str(REPO / "tools" / "launch"), "x.sh"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **BASE_ENV, "DRYRUN": "1"})
    assert proc.returncode == 0, proc.stderr


def test_launch_without_git_on_path_is_one_clear_error(project: Project, tmp_path: Path) -> None:
    script = project.add_recipe("sft-a")
    bindir = tmp_path / "bin-without-git"
    bindir.mkdir()
    (bindir / "bash").symlink_to(shutil.which("bash"))
    env = {**os.environ, **BASE_ENV, "PATH": str(bindir), "NRL_LAUNCH_PYTHON": sys.executable}
    proc = subprocess.run([str(REPO / "tools" / "launch"), str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("[ERROR]: cannot launch:") and "Traceback" not in proc.stderr
    assert not (project.root / "code_snapshots").exists()


def test_dryrun1_path_never_loads_the_pipeline(tmp_path: Path) -> None:
    # The DRYRUN=1 boundary is one import (nrl_launch.pipeline); behind it are
    # GitPython and simple-slurm, which a GPU-hour estimate must not pay for.
    (tmp_path / "x.sh").write_text(config_block(NUM_NODES=1, NUM_RUNS=1, NUM_MINUTES=60))
    probe = ("import sys, runpy; sys.argv = ['nrl-launch', 'launch', 'x.sh']\n"
             "try:\n    runpy.run_module('nrl_launch', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('nrl_launch.pipeline', 'git', 'simple_slurm') if m in sys.modules))")
    env = {**os.environ, **BASE_ENV, "DRYRUN": "1", "PYTHONPATH": str(REPO / "tools")}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "[INFO]: Total GPU hours: 8" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]", done.stdout + done.stderr
    env["DRYRUN"] = "2"  # the same probe on a launch that does load it, so the probe itself is proven
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "nrl_launch.pipeline" in done.stdout.splitlines()[-1]


# ---------------------------------------------------------------- the Slurm seam, in process


def test_launch_through_the_client_seam(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    result = run_cli("launch", str(script), env={**BASE_ENV, "EXTRA_ENV": "FOO=bar"}, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    snapshot = project.root / "code_snapshots" / "sft-a"
    assert fake_slurm.programs() == ["sbatch-test", "sbatch", "sbatch"]
    jobs = fake_slurm.submissions()
    assert [j.job_id for j in jobs] == ["1001", "1002"]
    assert {j.cwd for j in jobs} == {str(snapshot)}
    assert [j.argv[-2] for j in jobs] == ["--dependency=singleton"] * 2
    assert {(j.env["FOO"], j.env["HF_HOME"], j.env["MOUNTS"]) for j in jobs} == {("bar", "/hf",
                                                                                   f"{snapshot}:{snapshot}")}
    assert result.stdout.splitlines()[-2:] == ["Submitted batch job 1002", "[INFO]: Total GPU hours: 2"]


def test_every_missing_variable_in_one_message_with_an_example(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a")
    result = run_cli("launch", str(script), env={"ACCOUNT": "", "HF_HOME": ""}, slurm=fake_slurm)
    assert result.exit_code == 2
    [error, example, *_] = result.stderr.splitlines()
    assert error == ("[ERROR]: CONTAINER must be set (an empty value is allowed); PARTITION must be set (an empty "
                     "value is allowed); HF_HOME must be set and non-empty (it is passed into the job); "
                     "HF_DATASETS_CACHE must be set and non-empty (it is passed into the job). For example:")
    assert example.strip().startswith("CONTAINER=<image or empty> ACCOUNT=<account or empty> PARTITION=")
    assert fake_slurm.calls == []


# ---------------------------------------------------------------- suites as arguments


def test_a_suite_file_launches_every_entry_as_listed(project: Project, fake_slurm: FakeSlurm,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=60\n", commit=False)
    project.add_recipe("vlm_sft-b", config="NUM_NODES=2\nNUM_RUNS=1\nNUM_MINUTES=30\n", kind="vlm", commit=False)
    write(project.root / "tests/test_suites/nightly.txt",
          "# Nightly\n\ntests/test_suites/llm/sft-a.sh  # the SFT one\n# tests/test_suites/llm/off.sh\n"
          "tests/test_suites/vlm/vlm_sft-b.sh\n")
    project.commit("a suite")
    monkeypatch.chdir(project.root / "tests")  # entries are relative to the repository root, not to the cwd
    dry = run_cli("launch", "test_suites/nightly.txt", env={**BASE_ENV, "DRYRUN": "1"})
    assert dry.exit_code == 0, dry.output
    assert stdout_lines(dry) == [
        "[INFO]: 8 GPUhrs to run tests/test_suites/llm/sft-a.sh",
        "[DRY_RUN]: Skipping creation of snapshot and submission of tests/test_suites/llm/sft-a.sh.",
        "[INFO]: 8 GPUhrs to run tests/test_suites/vlm/vlm_sft-b.sh",
        "[DRY_RUN]: Skipping creation of snapshot and submission of tests/test_suites/vlm/vlm_sft-b.sh.",
        "[INFO]: Total GPU hours: 16",
    ]
    full = run_cli("launch", "test_suites/nightly.txt", env=BASE_ENV, slurm=fake_slurm)
    assert full.exit_code == 0, full.output
    # submitted at once (SUBMIT_PARALLEL), printed in the suite's order
    assert sorted(job.cwd.rsplit("/", 1)[-1] for job in fake_slurm.submissions()) == ["sft-a", "vlm_sft-b"]
    assert [line for line in stdout_lines(full) if line.startswith("Submitting")] == [
        "Submitting 1/1 job with 1 nodes for sft-a.sh", "Submitting 1/1 job with 2 nodes for vlm_sft-b.sh"]


def test_a_suite_file_is_read_as_utf8_whatever_the_locale(project: Project, tmp_path: Path) -> None:
    # A CI job without LANG runs in the C locale; Python then reads files as ASCII unless told otherwise.
    project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=60\n")
    write(project.root / "tests/test_suites/nightly.txt", "# Nightly — owned by the RL team ✓\n"
                                                          "tests/test_suites/llm/sft-a.sh\n")
    env = {**shim_env(HF_HOME="/hf", HF_DATASETS_CACHE="/d", DRYRUN="1"), "LC_ALL": "C", "LANG": "C",
           "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    proc = subprocess.run([str(REPO / "tools" / "launch"), "tests/test_suites/nightly.txt"], cwd=project.root,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[INFO]: Total GPU hours: 8"


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        ("tests/test_suites/llm/gone.sh\n", "tests/test_suites/llm/gone.sh: cannot read"),
        ("# only comments\n\n", "nightly.txt: the suite lists no script"),
    ],
)
def test_bad_suite_files(project: Project, fake_slurm: FakeSlurm, suite: str, message: str,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    write(project.root / "tests/test_suites/nightly.txt", suite)
    monkeypatch.chdir(project.root)
    result = run_cli("launch", "tests/test_suites/nightly.txt", env={**BASE_ENV, "DRYRUN": "1"}, slurm=fake_slurm)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stauts"], "[ERROR]: unknown command 'stauts' (did you mean 'status'?)"),
        (["wacth", "exp"], "[ERROR]: unknown command 'wacth' (did you mean 'watch'?)"),
        (["frobnicate"], "[ERROR]: unknown command 'frobnicate'; commands: cancel, launch, lint, logs, report, "
                         "snapshot, status, watch, or a script path to launch"),
    ],
)
def test_a_typo_is_not_taken_for_a_script(args: list[str], message: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(*args, env=BASE_ENV)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)


def test_an_existing_file_with_a_command_like_name_still_launches(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "stauts", config_block(NUM_NODES=1, NUM_RUNS=1, NUM_MINUTES=60))
    monkeypatch.chdir(tmp_path)
    result = run_cli("stauts", env={**BASE_ENV, "DRYRUN": "1"})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "[INFO]: 8 GPUhrs to run stauts"


def test_watch_is_a_flag_and_the_variable_still_works(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_poll = finish_after(0)
    for args, env in (([str(script), "--watch", "--watch-interval", "0.01"], BASE_ENV),
                      ([str(script)], {**BASE_ENV, "WATCH": "yes", "WATCH_INTERVAL": "0.01"})):
        result = run_cli("launch", *args, env=env, slurm=fake_slurm)
        assert result.exit_code == 1, result.output  # the job left no log: GENERAL FAIL
        assert "[WATCH]: Checking sft-a" in result.stdout.splitlines()
    result = run_cli("launch", str(script), "--watch-interval", "0.01", env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 0 and "[WATCH]" not in result.stdout  # without either, no watching


# ---------------------------------------------------------------- pre-flight, relaunch, next steps


def test_preflight_comes_before_any_snapshot_and_names_every_refusal(project: Project, fake_slurm: FakeSlurm) -> None:
    a = project.add_recipe("sft-a", config="NUM_NODES=4\nNUM_RUNS=2\nNUM_MINUTES=60\n")
    b = project.add_recipe("sft-b", config="NUM_NODES=4\nNUM_RUNS=1\nNUM_MINUTES=60\n")
    c = project.add_recipe("sft-c", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=60\n")
    seen: list[list[str]] = []

    def refuse_four_nodes(call: Call) -> Completed:
        seen.append(sorted(os.listdir(call.cwd or ".")))  # what Slurm sees beside the submission
        if call.argv[1] == "--test-only" and "--nodes=4" in call.argv:
            return Completed(1, "", "sbatch: error: Requested node configuration is not available\n")
        return Completed(0, "", "sbatch: Job 9 to start at 2026-01-01T00:00:00\n")

    fake_slurm.answers["sbatch"] = refuse_four_nodes
    result = run_cli("launch", str(a), str(b), str(c), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]
    assert f"{a}: Slurm would reject experiment sft-a: sbatch: error: Requested node configuration" in error
    assert f"{b}: Slurm would reject experiment sft-b" in error and "sft-c" not in error
    assert error.endswith("Nothing was submitted.")
    # one question per distinct submission, the name aside (NUM_RUNS is not in the first run's options)
    assert seen == [["ray.sub"]] * 2  # the batch script, and nothing else yet
    assert not (project.root / "code_snapshots").exists()  # a refused plan leaves no snapshot


def test_preflight_asks_once_for_experiments_that_differ_by_name_only(project: Project, fake_slurm: FakeSlurm) -> None:
    scripts = [str(project.add_recipe(f"sft-{n}", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=60\n"))
               for n in range(6)]
    scripts.append(str(project.add_recipe("sft-long", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=90\n")))
    result = run_cli("launch", *scripts, env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    assert fake_slurm.programs().count("sbatch-test") == 2  # 6 alike, 1 with another --time
    assert len(fake_slurm.submissions()) == 14


def test_relaunching_says_what_the_snapshot_holds_and_runs_its_code(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    first_meta = project.meta()
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    write(project.root / "README.md", "newer docs\n")
    project.commit("Newer docs")
    again = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert again.exit_code == 0, again.output
    snapshot = project.root / "code_snapshots" / "sft-a"
    notes = [line for line in again.stderr.splitlines() if line.startswith("[INFO]: sft-a:")]
    assert notes == [f"[INFO]: sft-a: the snapshot holds commit {first_meta} and 1 recorded run (last verdict: "
                     "none yet); the recipe resumes from its checkpoint there.",
                     f"[INFO]: sft-a: to start over instead: rm -rf {snapshot} (or another CODE_SNAPSHOT_DIRNAME "
                     "than code_snapshots)"]
    commands = [job.env["COMMAND"] for job in fake_slurm.submissions()]
    assert all(f"++git_meta={first_meta} " in command for command in commands)  # the code that runs, not HEAD's
    assert project.meta() != first_meta


def test_a_launch_ends_with_the_next_commands(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "[INFO]: Total GPU hours: 2"  # stdout unchanged
    tail = result.stderr.splitlines()[-3:]
    assert tail[0] == "[INFO]: Next:"
    assert tail[1].split("   #")[0].strip() == (f"nrl-launch status --project-root {project.root} "
                                                "--code-snapshot-dirname code_snapshots sft-a")
    assert tail[2].split("   #")[0].strip() == (f"nrl-launch watch --project-root {project.root} "
                                                "--code-snapshot-dirname code_snapshots --watch-interval 300 sft-a")
    dry = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2"}, slurm=fake_slurm)
    hints = [line for line in dry.stderr.splitlines() if "DRYRUN=2 submits nothing" in line]
    assert hints == [f"[INFO]: sft-a: DRYRUN=2 submits nothing. 'bash {project.root}/code_snapshots/sft-a/continue.sh' "
                     "submits ONE run; launch without DRYRUN for all 2 planned runs."]
    assert "[INFO]: Next:" not in dry.stderr


def test_a_count_in_another_base_is_read_as_bash_does_and_said(project: Project, fake_slurm: FakeSlurm) -> None:
    # the bash launcher computed GPU-hours with $(( )): NUM_NODES=010 is 8 nodes there
    script = project.add_recipe("sft-a", config="NUM_NODES=010\nNUM_RUNS=1\nNUM_MINUTES=60\n")
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"[INFO]: 64 GPUhrs to run {script}"
    assert f"[WARNING]: {script}:4: NUM_NODES=010 is read as 8 (octal), as bash arithmetic does" in result.stderr
    assert fake_slurm.submissions()[0].argv[0] == "--nodes=8"  # what the GPU-hours counted


def test_a_snapshot_another_launch_made_while_this_one_waited_names_its_own_commit(
        project: Project, fake_slurm: FakeSlurm) -> None:
    # This launch plans (no snapshot yet), then waits for the experiment's lock while another launch
    # creates the snapshot from other code: the runs carry that snapshot's commit, not this HEAD's.
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    snapshot = project.root / "code_snapshots" / "sft-a"
    holding = threading.Event()

    def other_launch() -> None:
        with experiment_locks([snapshot], lambda _: None):
            holding.set()
            time.sleep(1.0)  # long enough for the launch below to plan and wait for the lock
            for rel in ("ray.sub", "tests/test_suites/llm/sft-a.sh"):
                write(snapshot / rel, (project.root / rel).read_text())
            write_manifest(snapshot, Manifest("sft-a", source=Source(commit="a" * 40, short_meta="aaaaaaa-older-code")))

    other = threading.Thread(target=other_launch)
    other.start()
    holding.wait()
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    other.join()
    assert result.exit_code == 0, result.output
    assert f"Using existing code snapshot in {snapshot}" in result.stderr
    commands = [job.env["COMMAND"] for job in fake_slurm.submissions()]
    assert len(commands) == 2 and all("++git_meta=aaaaaaa-older-code " in c for c in commands), commands
    assert "++git_meta=aaaaaaa-older-code " in (snapshot / "continue.sh").read_text()


def test_a_launch_whose_stdout_reader_is_gone_submits_everything_and_says_so(project: Project,
                                                                             slurm_on_path: SlurmOnPath) -> None:
    # e.g. `tools/launch … | head -3`: stopping half-way would leave a half-submitted suite
    project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    project.add_recipe("sft-b", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: every write to stdout fails with EPIPE
    try:
        proc = subprocess.run([str(REPO / "tools" / "launch"), "--hf-home", "/hf", "--hf-datasets-cache", "/d",
                               "./llm/sft-a.sh", "./llm/sft-b.sh"], cwd=project.root / "tests" / "test_suites",
                              env=shim_env(), stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "[WARNING]: cannot write to stdout (Broken pipe): the launch goes on, its output is lost" in proc.stderr
    assert proc.stderr.rstrip().endswith("[ERROR]: the launch finished but its output could not be written to stdout "
                                         "(Broken pipe); see what it did with: nrl-launch status")
    assert len(slurm_on_path.submissions()) == 4
    for name in ("sft-a", "sft-b"):
        assert [r.run for r in read_manifest(project.root / "code_snapshots" / name).runs] == ["1/2", "2/2"]


@pytest.mark.parametrize("redirect", [">/dev/full", ">&-"])
def test_dryrun_with_stdout_full_or_closed_is_an_error_not_a_traceback(redirect: str) -> None:
    env = {**os.environ, "DRYRUN": "1", "CONTAINER": "", "ACCOUNT": "a", "PARTITION": "p", "HF_HOME": "/hf",
           "HF_DATASETS_CACHE": "/d"}
    shim = str(REPO / "tools" / "launch")
    proc = subprocess.run(["bash", "-c", f'"$0" tests/test_suites/nightly.txt {redirect}', shim],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith(
        "[ERROR]: the launch finished but its output could not be written to stdout (")


@functools.cache
def _old_pythons() -> list[str]:
    """Interpreters older than 3.10 on this machine (login nodes often have one as python3)."""
    found = [str(p) for p in sorted(Path("/root/.pyenv/versions").glob("[23].*/bin/python"))]
    found += [p for p in (shutil.which(f"python3.{minor}") for minor in range(6, 10)) if p]
    old = []
    for python in dict.fromkeys(found):
        done = subprocess.run([python, "-c", "import sys; print(sys.version_info < (3, 10))"], capture_output=True,
                              text=True)
        if done.stdout.strip() == "True":
            old.append(python)
    return old


@pytest.mark.skipif(not _old_pythons(), reason="no Python older than 3.10 on this machine")
@pytest.mark.parametrize("shim", ["launch", "code_snapshot.sh"])
def test_an_old_python_is_named_not_a_traceback(shim: str) -> None:
    for python in _old_pythons():
        env = {**os.environ, "NRL_LAUNCH_PYTHON": python, "DRYRUN": "1"}
        proc = subprocess.run(["bash", str(REPO / "tools" / shim), "tests/test_suites/nightly.txt"], cwd=REPO, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        assert proc.stderr.startswith(f"[ERROR]: nrl_launch needs Python 3.10 or newer; {python} is "), proc.stderr
