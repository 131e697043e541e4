"""A repository of the real-world shapes (lintkit.build_realworld) lints clean.

Issue 10: run over a real recipe repository, the lint must give no false
errors, and with the repository's conventions in pyproject.toml nothing at all.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import lintkit
import pytest
from lintkit import GB200, GYM, NO_CLUSTER, PERF_GB200, RECIPES, SFT, SUITE_NAMES, VERSION_FIRST, where, write

from nrl_launch import lint


@pytest.fixture
def realworld(tmp_path: Path) -> Path:
    return lintkit.build_realworld(tmp_path / "repo")


def test_every_real_world_shape_lints_clean(realworld: Path) -> None:
    report = lint.run_lint(realworld)
    assert where(report) == []
    assert (report.scripts, report.suites) == (len(RECIPES), len(SUITE_NAMES))
    assert report.yamls == len(RECIPES) + len(lintkit.BASES)


def test_without_the_conventions_only_the_deliberate_bends_warn(realworld: Path) -> None:
    write(realworld, "pyproject.toml", lintkit.pyproject(conventions=False))
    write(realworld, NO_CLUSTER.rel, NO_CLUSTER.script_text().replace("# nrl-lint: disable=name-cluster", "#"))
    report = lint.run_lint(realworld)
    assert report.errors == 0
    assert where(report) == sorted([
        (NO_CLUSTER.rel, None, "name-cluster"),
        (VERSION_FIRST.rel, None, "name-version"),
        (PERF_GB200.rel, None, "name-strategy"),
        ("tests/test_suites/llm/performance/dapo-qwen3-32b-2n4g.sh", None, "name-strategy"),
        ("tests/test_suites/llm/performance/grpo-qwen3-32b-4n8g.sh", None, "name-strategy"),
    ])
    messages = {f.rule: f.message for f in report.findings}
    assert "expected it last ('…-tq_simple.v3.sh')" in messages["name-version"]
    assert "no <N>n<G>g token" in messages["name-cluster"]


def test_without_any_configuration_the_unknown_algos_are_errors(realworld: Path) -> None:
    # the defaults describe this project: dapo, mopd, prorlv2, gdpo are not known there
    (realworld / "pyproject.toml").unlink()
    report = lint.run_lint(realworld)
    unknown = sorted({f.path.rsplit("/", 1)[-1].split("-")[0] for f in report.findings if f.rule == "algo-unknown"})
    assert unknown == ["dapo", "gdpo", "mopd", "prorlv2"]


def test_exec_dryrun_runs_launched_recipes_only(realworld: Path) -> None:
    # the disabled recipe's dry run fails: it is accounted for but never launched
    report = lint.run_lint(realworld, dryrun=lint.DryrunOptions(jobs=4, timeout=30))
    assert where(report) == []
    outcome = subprocess.run(["bash", str(realworld / lintkit.DISABLED.rel)], env={"TEST_DRYRUN": "1"},
                             capture_output=True)
    assert outcome.returncode == 1


def test_extra_node_keys_add_to_cluster_nodes(realworld: Path) -> None:
    # 6n8g = cluster.num_nodes 1 + env.gym.num_gpu_nodes 5; without the key the YAML says 1 node
    write(realworld, "pyproject.toml", lintkit.pyproject().replace('extra-node-keys = ["env.*.num_gpu_nodes"]', ""))
    report = lint.run_lint(realworld)
    found = {f.path: f for f in report.findings}
    assert sorted(found) == [GYM.yaml_rel, "examples/configs/recipes/llm/grpo-qwen3-8b-4n8g-megatron-gymlite.yaml"]
    assert found[GYM.yaml_rel].message == "cluster.num_nodes=1 but the name says 6n8g"
    assert {f.rule for f in report.findings} == {"cluster-yaml"}


def test_inherited_extra_node_key_counts_and_is_overridden(realworld: Path) -> None:
    # the gymlite recipe inherits env.gym.num_gpu_nodes: 3 from grpo_gym.yaml (1 + 3 = 4n8g);
    # the gym recipe overrides it with 5 (1 + 5 = 6n8g): with 4 instead, the total is wrong
    write(realworld, GYM.yaml_rel, GYM.yaml_text().replace("num_gpu_nodes: 5", "num_gpu_nodes: 4"))
    finding, = lint.run_lint(realworld).findings
    assert (finding.path, finding.line, finding.rule, finding.severity) == (GYM.yaml_rel, 3, "cluster-yaml", "warning")
    assert finding.message == ("cluster.num_nodes=1 + env.gym.num_gpu_nodes=4 = 5 nodes but the name says 6n8g")


def test_output_folders_are_not_recipe_folders(realworld: Path) -> None:
    # lintkit puts ckpts/resume.sh inside two output folders: they are no recipes
    assert (realworld / f"tests/test_suites/{SFT.path}/ckpts/resume.sh").is_file()
    assert where(lint.run_lint(realworld)) == []
    # a real nested folder of recipes (no sibling <name>.sh) is scanned
    nested = "tests/test_suites/llm/performance/extra/grpo-qwen3-8b-1n8g-fsdp2tp1.sh"
    write(realworld, nested, GB200.script_text())
    assert ("tests/test_suites/llm/performance/extra/grpo-qwen3-8b-1n8g-fsdp2tp1.sh", None, "suite-missing") in where(
        lint.run_lint(realworld))


def test_suite_hours_are_the_launchers(realworld: Path) -> None:
    report = lint.run_lint(realworld)
    hours = {h.name: (h.hours, h.budget) for h in report.suite_hours}
    assert "disabled" not in hours  # never launched, never counted
    assert hours["nightly"] == (lintkit.suite_total("nightly"), lintkit.BUDGETS["nightly"])
    assert hours["nightly_gb200"] == (lintkit.suite_total("nightly_gb200"), None)
    payload = json.loads(lint.render(report, "json"))
    assert {s["suite"]: s["gpu_hours"] for s in payload["summary"]["suite_hours"]} == {
        name: lintkit.suite_total(name) for name in SUITE_NAMES if name != "disabled"}
