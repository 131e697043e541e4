"""One planted defect per rule in the real-world fixture gives exactly that finding.

Every error rule has a case in ERROR_CASES and every warning rule one in
WARNING_CASES (checked below), so a new rule cannot come without its test.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import lintkit
import pytest
from lintkit import (
    CONTEXT,
    GB200,
    GYM,
    SFT,
    SUITES_DIR,
    VLM,
    Spec,
    add_recipe,
    append,
    errors,
    replace_in,
    where,
    write,
)

from nrl_launch import lint
from nrl_launch.lint.rules import ERROR, RULES, WARNING

NIGHTLY = f"{SUITES_DIR}/nightly.txt"
RELEASE = f"{SUITES_DIR}/release.txt"
Plant = Callable[[Path], None]
Expected = tuple[str, int | None]


def line_of(root: Path, rel: str, text: str) -> int:
    """1-based line of the first line of ``rel`` that contains ``text``."""
    lines = (root / rel).read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if text in line)


NEW = Spec("llm/grpo-qwen3-8b-1n8g-fsdp2tp1-extra", "nightly", 1, 8)
NIGHTLY_LINES = lintkit.suite_text("nightly").count("\n")  # a line appended to nightly.txt gets this + 1


# ---------------------------------------------------------------- the planted errors


def plant_layout(root: Path) -> None:
    shutil.rmtree(root / lintkit.YAML_ROOT)


def plant_file(root: Path) -> None:
    write(root, SFT.rel, b"\x7fELF\x02\x01\x01\x00binary")


def plant_config(root: Path) -> None:
    replace_in(root, SFT.rel, "NUM_NODES=1", "NUM_NODES=$(hostname | wc -c)")


def plant_suite_file(root: Path) -> None:
    append(root, "pyproject.toml", "\n[tool.nrl-launch.lint.suites.weekly]\n")


def plant_suite_entry(root: Path) -> None:
    append(root, NIGHTLY, "tests/test_suites/llm/grpo-removed-1n8g-fsdp2tp1.sh  # gone\n")


def plant_suite_missing(root: Path) -> None:
    replace_in(root, NIGHTLY, CONTEXT.rel, f"# {CONTEXT.rel}")


def plant_suite_duplicate(root: Path) -> None:
    append(root, RELEASE, f"{SFT.rel}\n")


def plant_suite_gpus(root: Path) -> None:
    replace_in(root, NIGHTLY, SFT.rel + "\n", "")
    append(root, f"{SUITES_DIR}/nightly_gb200.txt", f"{SFT.rel}\n")


def plant_suite_subset(root: Path) -> None:
    # nightly_mcore runs nightly recipes again: one of release is not one of them
    append(root, f"{SUITES_DIR}/nightly_mcore.txt", f"{lintkit.NO_CLUSTER.rel}\n")


def plant_budget(root: Path) -> None:
    budget = lintkit.BUDGETS["nightly"]
    replace_in(root, "pyproject.toml", f"budget = {budget}", f"budget = {lintkit.suite_total('nightly') - 1}")


def plant_algo_unknown(root: Path) -> None:
    add_recipe(root, replace(NEW, path="llm/reinforce-qwen3-8b-1n8g-fsdp2tp1"))


def plant_yaml_missing(root: Path) -> None:
    (root / VLM.yaml_rel).unlink()


def plant_yaml_orphan(root: Path) -> None:
    write(root, "examples/configs/recipes/llm/performance/grpo-qwen3-235b-16n4g.yaml", "cluster:\n  num_nodes: 16\n")


def plant_yaml_invalid(root: Path) -> None:
    write(root, GB200.yaml_rel, "defaults: ../../grpo_math_1B.yaml\ncluster: [4, 4\n")


def plant_yaml_defaults(root: Path) -> None:
    # grpo_math_1B.yaml -> grpo_common.yaml -> grpo_math_1B.yaml
    write(root, "examples/configs/grpo_common.yaml", "defaults: grpo_math_1B.yaml\n")
    write(root, "examples/configs/grpo_math_1B.yaml",
          "defaults: grpo_common.yaml\n" + lintkit.BASES["examples/configs/grpo_math_1B.yaml"])


def plant_dryrun(root: Path) -> None:
    replace_in(root, GB200.rel, "exit 0", "exit 3")


ERROR_CASES: dict[str, tuple[Plant, Callable[[Path], list[Expected]]]] = {
    "layout": (plant_layout, lambda r: [(lintkit.YAML_ROOT, None)]),
    "file": (plant_file, lambda r: [(SFT.rel, None)]),
    "config": (plant_config, lambda r: [(SFT.rel, 6)]),
    "suite-file": (plant_suite_file, lambda r: [(f"{SUITES_DIR}/weekly.txt", None)]),
    "suite-entry": (plant_suite_entry, lambda r: [(NIGHTLY, NIGHTLY_LINES + 1)]),
    "suite-missing": (plant_suite_missing, lambda r: [(CONTEXT.rel, None)]),
    "suite-duplicate": (plant_suite_duplicate, lambda r: [(RELEASE, lintkit.suite_text("release").count("\n") + 1)]),
    "suite-gpus": (plant_suite_gpus, lambda r: [(SFT.rel, 7)]),
    "suite-subset": (plant_suite_subset, lambda r: [(f"{SUITES_DIR}/nightly_mcore.txt",
                                                     lintkit.suite_text("nightly_mcore").count("\n") + 1)]),
    "budget": (plant_budget, lambda r: [(NIGHTLY, None)]),
    "algo-unknown": (plant_algo_unknown, lambda r: [("tests/test_suites/llm/reinforce-qwen3-8b-1n8g-fsdp2tp1.sh",
                                                     None)]),
    "yaml-missing": (plant_yaml_missing, lambda r: [(VLM.rel, None)]),
    "yaml-orphan": (plant_yaml_orphan, lambda r: [("examples/configs/recipes/llm/performance/"
                                                   "grpo-qwen3-235b-16n4g.yaml", None)]),
    "yaml-invalid": (plant_yaml_invalid, lambda r: [(GB200.yaml_rel, 3)]),
    "yaml-defaults": (plant_yaml_defaults, lambda r: [("examples/configs/grpo_common.yaml", 1)]),
    "dryrun": (plant_dryrun, lambda r: [(GB200.rel, None)]),
}


def test_every_error_rule_has_a_planted_case() -> None:
    assert sorted(ERROR_CASES) == sorted(r.id for r in RULES.values() if r.severity == ERROR)


@pytest.mark.parametrize("rule_id", sorted(ERROR_CASES))
def test_planted_error(tmp_path: Path, rule_id: str) -> None:
    root = lintkit.build_realworld(tmp_path / "repo")
    plant, expected = ERROR_CASES[rule_id]
    plant(root)
    dryrun = lint.DryrunOptions(jobs=4, timeout=30) if rule_id == "dryrun" else None
    report = lint.run_lint(root, dryrun=dryrun)
    assert errors(report) == [(path, line, rule_id) for path, line in expected(root)]
    assert report.failed()


NIGHTLY_TOTAL = lintkit.suite_total("nightly")
ERROR_MESSAGES = {
    "config": "command substitution \"$(…)\" is not allowed in the CONFIG block",
    "suite-gpus": "GPUS_PER_NODE=8 but suite 'nightly_gb200' (tests/test_suites/nightly_gb200.txt:",
    "budget": f"suite 'nightly' needs {NIGHTLY_TOTAL} GPU-hours, over its budget of {NIGHTLY_TOTAL - 1} "
              "(pyproject.toml); biggest: ",
    "suite-duplicate": f"{SFT.rel} is already listed at {NIGHTLY}:",
    "dryrun": f"TEST_DRYRUN=1 bash {GB200.rel} exited with status 3: dry run: 4 nodes",
    "algo-unknown": "algo 'reinforce' (the name's first token) is not in [tool.nrl-launch.lint.algos]",
    "suite-file": "suite 'weekly' is configured in pyproject.toml but its file does not exist",
    "suite-missing": "listed in no suite (suites: nightly, release, nightly_gb200, release_gb200, performance, "
                     "performance_gb200, disabled); to keep a recipe that must not run, list it in "
                     "tests/test_suites/disabled.txt",
    "suite-subset": f"{lintkit.NO_CLUSTER.rel} is not listed in nightly (it is listed in release): suite "
                    "'nightly_mcore' only runs recipes of nightly again (subset-of in pyproject.toml)",
    "layout": "no YAML mirror root here: YAML mirrors not checked (yaml-root in pyproject.toml)",
    "yaml-defaults": "defaults cycle: examples/configs/grpo_math_1B.yaml -> examples/configs/grpo_common.yaml -> "
                     "examples/configs/grpo_math_1B.yaml",
}


@pytest.mark.parametrize("rule_id", sorted(ERROR_MESSAGES))
def test_planted_error_message(tmp_path: Path, rule_id: str) -> None:
    """What the message must say for a reader to act on it."""
    root = lintkit.build_realworld(tmp_path / "repo")
    ERROR_CASES[rule_id][0](root)
    dryrun = lint.DryrunOptions(timeout=30) if rule_id == "dryrun" else None
    finding, = (f for f in lint.run_lint(root, dryrun=dryrun).findings if f.rule == rule_id)
    assert ERROR_MESSAGES[rule_id] in finding.message


def test_configured_recipe_root_must_exist(tmp_path: Path) -> None:
    root = lintkit.build_realworld(tmp_path / "repo")
    shutil.rmtree(root / SUITES_DIR / "vlm")
    report = lint.run_lint(root)
    layout, = (f for f in report.findings if f.rule == "layout")
    assert (layout.path, layout.message) == (f"{SUITES_DIR}/vlm", "recipe root: no such folder, but recipe-roots in "
                                                                  "pyproject.toml names it")
    # without the configuration a missing default root is fine (this project's behaviour)
    (root / "pyproject.toml").unlink()
    assert "layout" not in {f.rule for f in lint.run_lint(root).findings}


def test_dryrun_timeout_kills_the_script(tmp_path: Path) -> None:
    root = lintkit.build_realworld(tmp_path / "repo")
    marker = tmp_path / "still-running"
    replace_in(root, GB200.rel, "exit 0", f"(sleep 1; touch {marker}) & sleep 30")
    report = lint.run_lint(root, dryrun=lint.DryrunOptions(jobs=2, timeout=0.5))
    finding, = report.findings
    assert (finding.path, finding.rule) == (GB200.rel, "dryrun")
    assert "did not finish within 0.5 s" in finding.message
    time.sleep(1.5)
    assert not marker.exists()  # the script's children were killed with it


# ---------------------------------------------------------------- the planted warnings


def plant_name(root: Path) -> None:
    add_recipe(root, replace(NEW, path="llm/grpo-qwen3-8b-1n8g-FSDP2"))


def plant_name_cluster(root: Path) -> None:
    add_recipe(root, replace(NEW, path="llm/grpo-qwen3-8b-instruct"))


def plant_name_version(root: Path) -> None:
    replace_in(root, "pyproject.toml", 'name-version = "off"', 'name-version = "warning"')
    (root / lintkit.VERSION_FIRST.rel).rename(root / lintkit.VERSION_FIRST.rel.replace(".v3-tq_simple",
                                                                                        "-tq_simple.v3"))
    (root / lintkit.VERSION_FIRST.yaml_rel).rename(root / lintkit.VERSION_FIRST.yaml_rel.replace(
        ".v3-tq_simple", "-tq_simple.v3"))
    replace_in(root, NIGHTLY, ".v3-tq_simple", "-tq_simple.v3")
    add_recipe(root, replace(NEW, path="llm/grpo-qwen3-8b-1n8g-fsdp2tp1.v2-extra"))


def plant_name_strategy(root: Path) -> None:
    add_recipe(root, replace(NEW, path="llm/grpo-qwen3-8b-1n8g"))


def plant_placement(root: Path) -> None:
    moved = replace(VLM, path=VLM.path.replace("vlm/", "llm/"))
    for old, new in ((VLM.rel, moved.rel), (VLM.yaml_rel, moved.yaml_rel)):
        (root / old).rename(root / new)
    replace_in(root, NIGHTLY, VLM.rel, moved.rel)
    write(root, moved.yaml_rel, moved.yaml_text())


def plant_yaml_base(root: Path) -> None:
    replace_in(root, CONTEXT.yaml_rel, "../../grpo_math_1B.yaml", "../../dpo.yaml")


def plant_cluster_config(root: Path) -> None:
    replace_in(root, SFT.rel, "NUM_NODES=1", "NUM_NODES=2")


def plant_cluster_yaml(root: Path) -> None:
    replace_in(root, GYM.yaml_rel, "gpus_per_node: 8", "gpus_per_node: 4")


def plant_context_hardware(root: Path) -> None:
    replace_in(root, CONTEXT.rel, "GPUS_PER_NODE=8\n", "")


def plant_suite_unconfigured(root: Path) -> None:
    write(root, f"{SUITES_DIR}/weekly.txt", f"# weekly\n{SFT.rel}\n")


WARNING_CASES: dict[str, tuple[Plant, Expected]] = {
    "name": (plant_name, ("tests/test_suites/llm/grpo-qwen3-8b-1n8g-FSDP2.sh", None)),
    "name-cluster": (plant_name_cluster, ("tests/test_suites/llm/grpo-qwen3-8b-instruct.sh", None)),
    "name-version": (plant_name_version, ("tests/test_suites/llm/grpo-qwen3-8b-1n8g-fsdp2tp1.v2-extra.sh", None)),
    "name-strategy": (plant_name_strategy, ("tests/test_suites/llm/grpo-qwen3-8b-1n8g.sh", None)),
    "placement": (plant_placement, (VLM.rel.replace("vlm/", "llm/"), None)),
    "yaml-base": (plant_yaml_base, (CONTEXT.yaml_rel, 1)),
    "cluster-config": (plant_cluster_config, (SFT.rel, 6)),
    "cluster-yaml": (plant_cluster_yaml, (GYM.yaml_rel, 4)),
    "context-hardware": (plant_context_hardware, (CONTEXT.rel, lintkit.CONFIG_LINE)),
    "suite-unconfigured": (plant_suite_unconfigured, (f"{SUITES_DIR}/weekly.txt", None)),
}


def test_every_warning_rule_has_a_planted_case() -> None:
    assert sorted(WARNING_CASES) == sorted(r.id for r in RULES.values() if r.severity == WARNING)


@pytest.mark.parametrize("rule_id", sorted(WARNING_CASES))
def test_planted_warning(tmp_path: Path, rule_id: str) -> None:
    root = lintkit.build_realworld(tmp_path / "repo")
    plant, (path, line) = WARNING_CASES[rule_id]
    plant(root)
    report = lint.run_lint(root)
    assert where(report) == [(path, line, rule_id)]
    assert report.findings[0].severity == "warning"
    assert not report.failed() and report.failed(strict=True)


def test_warning_messages_say_what_was_expected(tmp_path: Path) -> None:
    root = lintkit.build_realworld(tmp_path / "repo")
    for rule_id in ("placement", "yaml-base", "cluster-config", "cluster-yaml", "context-hardware"):
        WARNING_CASES[rule_id][0](root)
    messages = {f.rule: f.message for f in lint.run_lint(root).findings}
    assert messages["placement"] == ("'vlm_grpo' recipes belong under tests/test_suites/vlm/: the algo's 'vlm_' "
                                     "prefix names the kind")
    assert messages["yaml-base"] == ("'grpo' recipes merge into examples/configs/grpo_math_1B.yaml "
                                     "([tool.nrl-launch.lint.algos], base-check = \"merges\"), but this YAML sets "
                                     "keys the base does not have: dpo (inherited from examples/configs/dpo.yaml:1)")
    assert messages["cluster-config"] == ("the name says 1n8g but CONFIG has NUM_NODES=2; the launcher requests "
                                          "what CONFIG says")
    assert messages["cluster-yaml"] == "cluster.gpus_per_node=4 but the name says 6n8g"
    assert messages["context-hardware"] == ("a context-length name (8K) does not say the hardware, so CONFIG must: "
                                            "assign GPUS_PER_NODE")


def test_llm_algo_under_the_vlm_root_is_misplaced(tmp_path: Path) -> None:
    root = lintkit.build_realworld(tmp_path / "repo")
    add_recipe(root, replace(NEW, path="vlm/grpo-qwen3-8b-1n8g-fsdp2tp1-extra"))
    finding, = lint.run_lint(root).findings
    assert (finding.rule, finding.path) == ("placement", "tests/test_suites/vlm/grpo-qwen3-8b-1n8g-fsdp2tp1-extra.sh")
    assert finding.message == ("tests/test_suites/vlm/ holds 'vlm_…' recipes only; 'grpo' has no 'vlm_' prefix, "
                               "so the recipe belongs under tests/test_suites/llm/")
