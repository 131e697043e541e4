"""The recipe suite: every nightly recipe really runs (on CPU) and passes its
metric checks; resume is bit-exact; dry runs, forced failures and the
launcher's overrides behave as documented in tests/test_suites/README.md.

Every test works on a copy of ``tests/test_suites/`` and ``examples/`` under
``tmp_path`` so the repository stays clean.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nrl_launch import lint
from nrl_launch.bashcfg.config import parse_recipe
from nrl_launch.recipes.names import parse_name

REPO = Path(__file__).resolve().parents[2]
SUITES = REPO / "tests" / "test_suites"
NIGHTLY = SUITES / "nightly.txt"

sys.path.insert(0, str(REPO / "examples"))
import cpu_trainer  # noqa: E402


def suite_entries(path: Path = NIGHTLY) -> list[str]:
    return [entry for _, entry in lint.parse_suite(path.read_text())]


NIGHTLY_RECIPES = suite_entries()


def recipe_id(rel: str) -> str:
    return Path(rel).stem


def _ignore_outputs(folder: str, names: list[str]) -> list[str]:
    """Skip experiment output folders (llm/<name>/) and caches when copying."""
    here = Path(folder)
    skipped = [n for n in names if n in ("__pycache__", ".pytest_cache")]
    if here.name in ("llm", "vlm") and here.parent.name == "test_suites":
        skipped += [n for n in names if (here / n).is_dir()]
    return skipped


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A minimal project root: tests/test_suites/ and examples/ copied."""
    shutil.copytree(SUITES, tmp_path / "tests" / "test_suites", ignore=_ignore_outputs)
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=_ignore_outputs)
    return tmp_path


def run(root: Path, rel: str, *args: str, cwd: Path | None = None, direct: bool = False,
        **env: str) -> subprocess.CompletedProcess:
    """Run a recipe (path relative to the project root) like a job would."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TEST_DRYRUN", "NRL_FORCE_FAILING_CHECK", "STEPS_PER_RUN",
                            "MAX_STEPS", "NUM_NODES", "GPUS_PER_NODE", "SLURM_JOB_ID")}
    environ["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, whatever the machine has
    environ["PYTHON"] = sys.executable  # skip version-manager shims: faster
    environ.update(env)
    command = [rel, *args] if direct else ["bash", str(root / rel), *args]
    return subprocess.run(command, cwd=cwd or root / "tests" / "test_suites", env=environ,
                          capture_output=True, text=True, timeout=60)


def exp_dir(root: Path, rel: str) -> Path:
    return root / Path(rel).parent / Path(rel).stem


def check_lines(output: str) -> list[str]:
    assert "Metric Checks" in output, output
    section = output.split("Metric Checks", 1)[1]
    return [line.strip() for line in section.splitlines() if re.match(r"\s+\[(PASS|FAIL)\]", line)]


def config_block_values(path: Path) -> dict[str, str]:
    """Evaluate a recipe's CONFIG block with bash in an empty environment."""
    script = (
        "eval \"$(sed -n '/^# =* BEGIN CONFIG/,/^# =* END CONFIG/p' \"$1\")\"\n"
        "printf '%s\\n' \"$NUM_NODES\" \"${GPUS_PER_NODE:-8}\" \"$NUM_MINUTES\" \"$NUM_RUNS\" "
        "\"$STEPS_PER_RUN\" \"$MAX_STEPS\" \"${SEGMENT_SIZE:-}\"\n"
    )
    out = subprocess.run(["env", "-i", "bash", "-c", script, "x", str(path)],
                         capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
    keys = ["NUM_NODES", "GPUS_PER_NODE", "NUM_MINUTES", "NUM_RUNS", "STEPS_PER_RUN",
            "MAX_STEPS", "SEGMENT_SIZE"]
    return dict(zip(keys, out, strict=True))


# --------------------------------------------------------------------------- static checks


def test_repository_lint_is_clean_and_nightly_is_big_enough():
    # names, placement, suites, YAML mirrors, base YAMLs, the CONFIG block and
    # the nightly budget: nrl-launch lint's rules, with pyproject.toml's configuration
    assert lint.run_lint(REPO).findings == ()
    assert len([s for s in NIGHTLY_RECIPES if "/llm/" in s]) >= 6
    assert len([s for s in NIGHTLY_RECIPES if "/vlm/" in s]) >= 2


@pytest.mark.parametrize("rel", NIGHTLY_RECIPES, ids=recipe_id)
def test_recipe_runs_as_a_job_would_need(rel):
    """What lint does not check: executable bash, env-overridable steps, the
    launcher's evaluation equal to bash's, and a YAML the trainer accepts."""
    path = REPO / rel
    assert os.access(path, os.X_OK)
    text = path.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert re.search(r"^STEPS_PER_RUN=\$\{STEPS_PER_RUN:-\d+\}", text, re.M)
    assert re.search(r"^MAX_STEPS=\$\{MAX_STEPS:-\d+\}", text, re.M)

    ours = parse_recipe(text, rel, {})
    values = config_block_values(path)  # bash's own evaluation of the block
    assert (ours.num_nodes, ours.gpus_per_node, ours.num_minutes, ours.num_runs) == (
        int(values["NUM_NODES"]), int(values["GPUS_PER_NODE"]), int(values["NUM_MINUTES"]), int(values["NUM_RUNS"]))
    assert str(ours.segment_size or "") == values["SEGMENT_SIZE"]

    name = parse_name(path.name)
    yaml_path = REPO / "examples/configs/recipes" / path.parent.name / (path.stem + ".yaml")
    config = cpu_trainer.load_config(str(yaml_path))
    assert config["algorithm"] == name.algo.removeprefix("vlm_")
    assert (config["cluster"]["num_nodes"], config["cluster"]["gpus_per_node"]) == (ours.num_nodes, ours.gpus_per_node)
    assert config.get("checks")


def test_suite_covers_the_required_cases():
    texts = {Path(rel).name: (REPO / rel).read_text() for rel in NIGHTLY_RECIPES}
    names = list(texts)
    assert {n.split("-")[0].removeprefix("vlm_") for n in names} == {"sft", "dpo", "grpo"}
    assert any("-long" in n for n in names)
    assert any(re.search(r"\.v\d+\.sh$", n) for n in names)
    assert any(re.search(r"-\d+K\.sh$", n) for n in names)
    assert any("-1n4g-" in n and "\nGPUS_PER_NODE=4" in t for n, t in texts.items())
    assert any("\nSEGMENT_SIZE=" in t for t in texts.values())
    assert any("\nJOB_REAPER_COMMENT='{\"Reaper\":{" in t for t in texts.values())
    assert any('\nNUM_NODES="${NUM_NODES:-1}"' in t for t in texts.values())


# --------------------------------------------------------------------------- real runs


@pytest.mark.parametrize("rel", NIGHTLY_RECIPES, ids=recipe_id)
def test_recipe_runs_its_default_chain_and_passes(sandbox, rel):
    """NUM_RUNS chained runs with the recipe's own defaults end with all PASS."""
    num_runs = int(config_block_values(REPO / rel)["NUM_RUNS"])
    max_steps = int(config_block_values(REPO / rel)["MAX_STEPS"])
    for i in range(num_runs):
        result = run(sandbox, rel, "logger.wandb.name=" + Path(rel).stem,
                     SLURM_JOB_ID=str(1000 + i))
        assert result.returncode == 0, result.stdout + result.stderr
        assert ("Metric Checks" in result.stdout) == (i == num_runs - 1)
    lines = check_lines(result.stdout)
    assert lines and all(line.startswith("[PASS]") for line in lines), lines
    assert all(f"@{max_steps} " in line for line in lines)

    runs = [line.split() for line in (exp_dir(sandbox, rel) / "runs.log").read_text().splitlines()]
    assert [r[2] for r in runs] == [str(1000 + i) for i in range(num_runs)]
    assert int(runs[0][3]) == 1 and int(runs[-1][4]) == max_steps
    for prev, cur in itertools.pairwise(runs):
        assert float(prev[1]) <= float(cur[0])  # one after another
        assert int(cur[3]) == int(prev[4]) + 1  # contiguous steps
    metrics = json.loads((exp_dir(sandbox, rel) / "metrics.json").read_text())
    assert sorted(map(int, metrics["train/loss"])) == list(range(1, max_steps + 1))


@pytest.mark.parametrize("rel", NIGHTLY_RECIPES, ids=recipe_id)
def test_shortened_recipe_passes(sandbox, rel):
    """Tests shorten runs through the environment; checks still PASS at step 2."""
    result = run(sandbox, rel, MAX_STEPS="2", STEPS_PER_RUN="2")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = check_lines(result.stdout)
    assert lines and all(line.startswith("[PASS]") and "@2 " in line for line in lines), lines


RESUME_CASES = [
    "tests/test_suites/llm/sft-qwen2.5-1.5b-1n4g-fsdp2tp1-quick.sh",
    "tests/test_suites/llm/dpo-llama3.1-8b-instruct-2n8g-tp4pp2-sp.sh",
    "tests/test_suites/vlm/vlm_grpo-qwen2.5-vl-3b-instruct-1n8g-dtensor2tp1.sh",
]


@pytest.mark.parametrize("rel", RESUME_CASES, ids=recipe_id)
def test_resume_is_bit_exact_and_extra_runs_exit_early(sandbox, tmp_path, rel):
    other = tmp_path / "other"
    shutil.copytree(sandbox / "tests", other / "tests")
    shutil.copytree(sandbox / "examples", other / "examples")

    first = run(sandbox, rel, MAX_STEPS="12", STEPS_PER_RUN="6")
    second = run(sandbox, rel, MAX_STEPS="12", STEPS_PER_RUN="6")
    single = run(other, rel, MAX_STEPS="12", STEPS_PER_RUN="12")
    for result in (first, second, single):
        assert result.returncode == 0, result.stdout + result.stderr
    assert "Metric Checks" not in first.stdout and "Metric Checks" in second.stdout
    assert check_lines(second.stdout) == check_lines(single.stdout)

    chained = (exp_dir(sandbox, rel) / "metrics.json").read_bytes()
    assert chained == (exp_dir(other, rel) / "metrics.json").read_bytes()
    ckpt_a = json.loads((exp_dir(sandbox, rel) / "ckpts/checkpoint.json").read_text())
    ckpt_b = json.loads((exp_dir(other, rel) / "ckpts/checkpoint.json").read_text())
    assert ckpt_a == ckpt_b and ckpt_a["step"] == 12

    third = run(sandbox, rel, MAX_STEPS="12", STEPS_PER_RUN="6")
    assert third.returncode == 0
    assert "MAX_STEPS=12 reached" in third.stdout
    assert "step 7/" not in third.stdout  # nothing trained again
    # the early exit re-checks the final metrics, so its log has a verdict too
    assert check_lines(third.stdout) == check_lines(single.stdout)
    assert (exp_dir(sandbox, rel) / "metrics.json").read_bytes() == chained
    assert len((exp_dir(sandbox, rel) / "runs.log").read_text().splitlines()) == 2


def test_dryrun_resolves_without_training(sandbox):
    rel = "tests/test_suites/llm/grpo-deepscaler-1.5b-8K.sh"
    result = run(sandbox, rel, "logger.wandb.name=x", TEST_DRYRUN="1", MAX_STEPS="7")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "NUM_NODES=1 GPUS_PER_NODE=8" in out
    assert "MAX_STEPS=7" in out
    expected = sandbox / "examples/configs/recipes/llm/grpo-deepscaler-1.5b-8K.yaml"
    assert f"CONFIG_PATH={expected} (exists)" in out
    assert "max_total_sequence_length: 8192" in out  # the resolved YAML
    assert "Metric Checks" not in out
    assert not exp_dir(sandbox, rel).exists()

    (expected).unlink()
    missing = run(sandbox, rel, TEST_DRYRUN="1")
    assert missing.returncode != 0 and "(MISSING)" in missing.stdout


@pytest.mark.parametrize("how", ["override", "env"])
def test_forced_failing_check(sandbox, how):
    rel = "tests/test_suites/llm/dpo-qwen2.5-1.5b-1n8g-dtensor2tp1-actckpt.sh"
    if how == "override":
        result = run(sandbox, rel, "checks.train/accuracy.min=2", MAX_STEPS="3", STEPS_PER_RUN="3")
    else:
        result = run(sandbox, rel, MAX_STEPS="3", STEPS_PER_RUN="3", NRL_FORCE_FAILING_CHECK="1")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = check_lines(result.stdout)
    assert any(line.startswith("[FAIL] train/accuracy@3 = ") and line.endswith("> 2") for line in lines)
    assert any(line.startswith("[PASS] train/loss@3") for line in lines)
    # the status survives the tee, and run.log has the same section
    assert "[FAIL]" in (exp_dir(sandbox, rel) / "run.log").read_text()


def test_launcher_arguments_are_accepted_like_a_job(sandbox):
    """The job runs the script directly from the snapshot root with these args."""
    rel = "tests/test_suites/vlm/vlm_sft-qwen2.5-vl-3b-instruct-1n8g-dtensor2tp1.sh"
    result = run(sandbox, rel, "logger.wandb.name=x", "++git_meta=a-b", "++container=c",
                 "logger.wandb.project=nemo-rl-release", cwd=sandbox, direct=True,
                 MAX_STEPS="2", STEPS_PER_RUN="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "git_meta=a-b container=c" in result.stdout
    resolved = yaml.safe_load((exp_dir(sandbox, rel) / "logs/resolved_config.yaml").read_text())
    assert resolved["logger"]["wandb"] == {"project": "nemo-rl-release", "name": "x"}
    assert resolved["git_meta"] == "a-b" and resolved["container"] == "c"
    assert resolved["data"]["image_features"] == 8


# --------------------------------------------------------------------------- trainer units


def test_overrides_follow_hydra_style():
    config = {"a": {"b": 1}, "checks": {}}
    for override in ["a.b=3", "+a.c=true", "++d.e=[1, 2]", "checks.train/loss.max=0.5",
                     "++git_meta=abc123-fix: thing", "++container=", "f=x=y", "~a.c"]:
        cpu_trainer.apply_override(config, override)
    assert config == {"a": {"b": 3}, "d": {"e": [1, 2]}, "checks": {"train/loss": {"max": 0.5}},
                      "git_meta": "abc123-fix: thing", "container": "", "f": "x=y"}
    with pytest.raises(cpu_trainer.UsageError):
        cpu_trainer.apply_override(config, "novalue")


def test_checks_report_pass_fail_and_missing():
    metrics = {"train/loss": {"4": 0.25}}
    lines, ok = cpu_trainer.run_checks(
        {"train/loss": {"max": 0.5, "min": 0.3}, "train/reward": {"min": 0.1}}, metrics, 4)
    assert not ok
    assert lines == ["  [PASS] train/loss@4 = 0.2500 < 0.5000",
                     "  [FAIL] train/loss@4 = 0.2500 > 0.3000",
                     "  [FAIL] train/reward@4 = missing > 0.1000"]


def test_suite_entries_keep_their_line_numbers() -> None:
    from nrl_launch.recipes.layout import parse_suite

    text = "# nightly\n\ntests/test_suites/llm/a.sh\n  tests/test_suites/llm/b.sh  # flaky\n"
    assert parse_suite(text) == [(3, "tests/test_suites/llm/a.sh"), (4, "tests/test_suites/llm/b.sh")]


@pytest.mark.parametrize(("rel", "folder", "is_inside"), [
    ("tests/llm/x.sh", "tests/llm", True), ("tests/llm/x.sh", "tests/llm/", True), ("tests/llm", "tests/llm", True),
    ("tests/llm2/x.sh", "tests/llm", False), ("tests/aX/x.sh", "tests/aX", True), ("tests/a/x.sh", "tests/aX", False),
    ("tests/a/x.sh", "tests/a/X", False)])
def test_inside_is_by_path_component(rel: str, folder: str, is_inside: bool) -> None:
    from nrl_launch.recipes.layout import inside

    assert inside(rel, folder) is is_inside


def test_a_recipes_output_folder_is_its_path_without_sh() -> None:
    from nrl_launch.recipes.layout import Layout

    assert Layout.output_dir("tests/test_suites/llm/sft-a.sh") == "tests/test_suites/llm/sft-a"
    assert Layout.output_dir("tests/test_suites/llm/sft.sh.v2") == "tests/test_suites/llm/sft.sh.v2"
