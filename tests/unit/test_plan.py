"""Pure planning: the exact sbatch argument list and job environment of every run."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from nrl_launch.bashcfg.config import parse_recipe
from nrl_launch.errors import PlanError
from nrl_launch.plan import (
    Experiment,
    _render_option,
    build_command,
    build_submissions,
    experiment_name,
    plan_experiments,
)
from nrl_launch.settings import LaunchSettings, make_settings
from testkit import BASE_ENV, config_block, write

SNAP = "/proj/code_snapshots/grpo-x-2n8g"
REL = "tests/test_suites/llm/grpo-x-2n8g.sh"
META = "abc1234-Add-a-recipe"


def experiment(**config: object) -> Experiment:
    """An experiment whose CONFIG block assigns ``config``."""
    script = "./llm/grpo-x-2n8g.sh"
    return Experiment(script, "/proj/" + REL, experiment_name(script),
                      parse_recipe(config_block(**config), script, {}))


def settings(**raw: str) -> LaunchSettings:
    return make_settings({**BASE_ENV, **raw}, launch_stamp="261129-101500")


def test_every_run_gets_the_contracts_options_in_order() -> None:
    exp = experiment(NUM_NODES=2, NUM_RUNS=3, NUM_MINUTES=90)
    subs = build_submissions(exp, settings(), SNAP, REL, META)
    assert [s.run_label for s in subs] == ["1/3", "2/3", "3/3"]
    assert subs[1].argv == (
        "--nodes=2",
        "--account=acct",
        "--job-name=acct:grpo-x-2n8g",
        "--partition=batch",
        "--time=0:90:0",
        "--gres=gpu:8",
        "--output=slurm-261129-101500-%j-grpo-x-2n8g-2.3.out",
        "--dependency=singleton",
        "ray.sub",
    )
    assert {s.cwd for s in subs} == {SNAP}
    assert {s.num_nodes for s in subs} == {2}


def test_optional_options() -> None:
    exp = experiment(NUM_NODES=4, GPUS_PER_NODE=4, NUM_RUNS=1, NUM_MINUTES=30, SEGMENT_SIZE=2,
                     JOB_REAPER_COMMENT="'{\"Reaper\":{\"reason\":\"long init\"}}'")
    [sub] = build_submissions(exp, settings(SLURM_JOB_SUFFIX="-nightly", BATCH_SCRIPT="other.sub"), SNAP, REL, META)
    assert sub.argv == (
        "--nodes=4",
        "--segment=2",
        "--account=acct",
        "--job-name=acct:grpo-x-2n8g-nightly",
        "--partition=batch",
        "--time=0:30:0",
        "--gres=gpu:4",
        '--comment={"Reaper":{"reason":"long init"}}',
        "--output=slurm-261129-101500-%j-grpo-x-2n8g-1.1.out",
        "--dependency=singleton",
        "other.sub",
    )
    [sub] = build_submissions(exp, settings(EXCLUDE_GRES="1"), SNAP, REL, META)
    assert not any(a.startswith("--gres") for a in sub.argv)


def test_job_environment_order_and_values() -> None:
    exp = experiment(NUM_NODES=1, GPUS_PER_NODE=2, NUM_RUNS=1, NUM_MINUTES=10)
    s = settings(EXTRA_ENV="FOO=1 'BAR=two words' COMMAND=evil", MOUNTS="/data:/data", SANDBOX_COMMAND="run-sb")
    [sub] = build_submissions(exp, s, SNAP, REL, META)
    names = [name for name, _ in sub.env]
    # EXTRA_ENV first: the contract's own variables come after it and win
    assert names == ["FOO", "BAR", "COMMAND", "HF_HOME", "HF_DATASETS_CACHE", "CONTAINER", "GPUS_PER_NODE",
                     "SANDBOX_CONTAINER", "SANDBOX_COMMAND", "SANDBOX_ENV_VARS", "MOUNTS", "COMMAND"]
    env = dict(sub.env)
    assert env["BAR"] == "two words"
    assert env["COMMAND"] == (f"uv run {REL} logger.wandb.name=grpo-x-2n8g ++git_meta={META} "
                              "++container=nvcr.io/nvidia/nemo-rl:test")
    assert env["MOUNTS"] == f"{SNAP}:{SNAP},/data:/data"
    assert (env["GPUS_PER_NODE"], env["HF_HOME"], env["SANDBOX_COMMAND"], env["SANDBOX_ENV_VARS"]) == \
        ("2", "/hf", "run-sb", "")


@pytest.mark.parametrize(
    ("raw", "tail"),
    [
        ({}, ""),
        ({"EXTRA_SCRIPT_ARGS": "policy.lr=1e-6 'a b=c'"}, " policy.lr=1e-6 'a b=c'"),
        ({"IS_RELEASE": "1"}, " logger.wandb.project=nemo-rl-release"),
        ({"IS_RELEASE": "1", "EXTRA_SCRIPT_ARGS": "x=1"}, " x=1 logger.wandb.project=nemo-rl-release"),
    ],
)
def test_command(raw: dict[str, str], tail: str) -> None:
    command = build_command(REL, "grpo-x-2n8g", META, settings(**raw))
    assert command == f"uv run {REL} logger.wandb.name=grpo-x-2n8g ++git_meta={META} " \
                      f"++container=nvcr.io/nvidia/nemo-rl:test{tail}"


def test_command_quotes_every_word_it_builds() -> None:
    command = build_command("tests/my recipe.sh", "x", "abc-it's", settings(CONTAINER="img:$(id)"))
    assert shlex.split(command) == ["uv", "run", "tests/my recipe.sh", "logger.wandb.name=x",
                                    "++git_meta=abc-it's", "++container=img:$(id)"]


def test_config_inputs_from_the_environment_are_kept_for_continue_sh() -> None:
    text = config_block(NUM_NODES="${NUM_NODES:-1}", MAX_STEPS="${MAX_STEPS:-40}", NUM_RUNS=1, NUM_MINUTES=5)
    exp = Experiment("x.sh", "/p/x.sh", "x", parse_recipe(text, "x.sh", {"MAX_STEPS": "80"}))
    [sub] = build_submissions(exp, settings(), SNAP, REL, META)
    assert dict(sub.config_env) == {"NUM_NODES": None, "MAX_STEPS": "80"}


def test_an_option_name_simple_slurm_does_not_know_is_a_plan_error() -> None:
    # simple-slurm validates option names (values are free text): a typo in
    # our own table of options must stop the plan, not reach sbatch.
    assert _render_option("job_name", "-x") == "--job-name=-x"  # a value starting with "-" stays a value
    with pytest.raises(PlanError, match="simple-slurm rejected sbatch option --jobname"):
        _render_option("jobname", "x")


def test_empty_account_and_partition_leave_the_options_out() -> None:
    # Slurm then uses the user's default account and the default partition
    exp = experiment(NUM_NODES=1, NUM_RUNS=1, NUM_MINUTES=5)
    [sub] = build_submissions(exp, settings(ACCOUNT="", PARTITION=""), SNAP, REL, META)
    assert sub.argv[:3] == ("--nodes=1", "--job-name=:grpo-x-2n8g", "--time=0:5:0")
    assert not any(a.startswith(("--account", "--partition")) for a in sub.argv)


@pytest.mark.parametrize(
    ("script", "name"),
    [
        ("./llm/grpo-x-2n8g.sh", "grpo-x-2n8g"),
        ("/abs/path/sft.v2.sh", "sft.v2"),
        ("llm/run_recipe", "run_recipe"),  # no .sh: the whole basename
        ("llm/x.sh.bak", "x.sh.bak"),
        ("llm/.sh", ""),  # refused later: a hidden, empty snapshot name
    ],
)
def test_experiment_name_is_the_basename_without_dot_sh(script: str, name: str) -> None:
    assert experiment_name(script) == name


def test_no_script_at_all_is_a_plan_error() -> None:
    with pytest.raises(PlanError) as caught:
        plan_experiments([], {})
    assert str(caught.value) == "no SCRIPT given: pass one or more recipe scripts (or suite files, *.txt)"


def test_an_empty_script_argument_is_named_as_such(tmp_path: Path) -> None:
    # `tools/launch "$RECIPE"` with RECIPE unset: say so, not "cannot read: No such file or directory"
    good = tmp_path / "x.sh"
    good.write_text("# ===== BEGIN CONFIG =====\nNUM_NODES=1\nNUM_MINUTES=5\n# ===== END CONFIG =====\n")
    with pytest.raises(PlanError) as caught:
        plan_experiments([str(good), ""], {})
    assert str(caught.value).startswith("an empty SCRIPT argument (an unset variable in the command line?)")


def test_the_same_experiment_twice_is_refused_unless_asked_for(tmp_path: Path) -> None:
    write(tmp_path / "llm" / "x.sh", config_block(NUM_NODES=1, NUM_RUNS=1, NUM_MINUTES=60))
    write(tmp_path / "vlm" / "x.sh", config_block(NUM_NODES=2, NUM_RUNS=1, NUM_MINUTES=60))
    scripts = [str(tmp_path / "llm" / "x.sh"), str(tmp_path / "vlm" / "x.sh")]
    with pytest.raises(PlanError) as caught:
        plan_experiments(scripts, {})
    assert str(caught.value) == f"{scripts[1]}: experiment 'x' is also given as {scripts[0]}; give each experiment once"
    assert [e.config.num_nodes for e in plan_experiments(scripts, {}, allow_duplicates=True)] == [1, 2]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "{suite}: cannot read the suite file: [Errno 2] No such file or directory: '{suite}'"),
        ("folder", "{suite}: cannot read the suite file: [Errno 21] Is a directory: '{suite}'"),
        ("no git", "{suite}: no git repository above the suite file: its entries are relative to the repository "
                   "root"),
    ],
)
def test_suite_files_that_cannot_be_used_say_why(tmp_path: Path, layout: str, message: str) -> None:
    suite = tmp_path / "nightly.txt"
    if layout == "folder":
        suite.mkdir()
    elif layout == "no git":
        write(suite, "tests/test_suites/llm/x.sh\n")
    with pytest.raises(PlanError) as caught:
        plan_experiments([str(suite)], {})
    assert str(caught.value) == message.format(suite=suite)
