"""The linter without configuration (this project's defaults) on small
repositories built in tmp_path: each rule, and robustness against odd files."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from pathlib import Path

import pytest
from lintkit import CONFIG_LINE, script, where, write

from nrl_launch import lint
from nrl_launch.errors import UsageProblem

SFT = "tests/test_suites/llm/sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.sh"
GRPO = "tests/test_suites/llm/grpo-qwen2.5-7b-instruct-2n8g-megatron-tp2.v2.sh"
VLM = "tests/test_suites/vlm/vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-dtensor2tp1.v1.sh"
SFT_YAML = "examples/configs/recipes/llm/sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.yaml"
GRPO_YAML = "examples/configs/recipes/llm/grpo-qwen2.5-7b-instruct-2n8g-megatron-tp2.v2.yaml"
VLM_YAML = "examples/configs/recipes/vlm/vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-dtensor2tp1.v1.yaml"
NIGHTLY = "tests/test_suites/nightly.txt"

SFT_SCRIPT = script("NUM_NODES=1", "GPUS_PER_NODE=8", "NUM_RUNS=1", "NUM_MINUTES=60")  # 8 GPUh
GRPO_SCRIPT = script(  # 2 runs * 2 nodes * 8 GPUs * 120 min = 64 GPUh
    'NUM_NODES="${NUM_NODES:-2}"',
    "STEPS_PER_RUN=50  # step_time ~ 95sec",
    "MAX_STEPS=100",
    "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up",
    "NUM_MINUTES=120",
)
VLM_SCRIPT = script("NUM_NODES=1", "GPUS_PER_NODE=2", "NUM_RUNS=1", "NUM_MINUTES=30")  # 1 GPUh

NIGHTLY_TEXT = f"""\
# Nightly suite

# llm
{SFT}
{GRPO}   # two runs

{VLM}
"""
NIGHTLY_LINES = {SFT: 4, GRPO: 5, VLM: 7}


def make_repo(root: Path) -> Path:
    """A clean mini repository: 2 llm + 1 vlm recipes, YAML mirrors with parents, a suite."""
    write(root, "tests/test_suites/llm/common.env", "# helpers sourced by every recipe\n")
    write(root, SFT, SFT_SCRIPT)
    write(root, GRPO, GRPO_SCRIPT)
    write(root, VLM, VLM_SCRIPT)
    write(root, NIGHTLY, NIGHTLY_TEXT)
    write(root, "examples/configs/sft.yaml",
          "sft:\n  max_num_steps: 10\ncluster:\n  gpus_per_node: 8\n  num_nodes: 1\n")
    write(root, "examples/configs/grpo_math_1B.yaml", "grpo:\n  num_steps: 10\ncluster:\n  gpus_per_node: 8\n  "
                                                      "num_nodes: 1\n")
    write(root, "examples/configs/vlm_grpo_3B.yaml", "defaults: grpo_math_1B.yaml\ncluster:\n  gpus_per_node: 2\n")
    write(root, SFT_YAML, "defaults: ../../sft.yaml\nsft:\n  max_num_steps: 100\n")
    write(root, GRPO_YAML, "defaults:\n  - ../../grpo_math_1B.yaml\ncluster:\n  num_nodes: 2\n")
    write(root, VLM_YAML, "defaults: [../../vlm_grpo_3B.yaml]\ncluster:\n  num_nodes: 1\n")
    return root


def only(report: lint.LintReport) -> lint.Finding:
    assert len(report.findings) == 1, report.findings
    return report.findings[0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def test_clean_repository(repo: Path) -> None:
    report = lint.run_lint(repo, budgets={"nightly": 73})
    assert report.findings == ()
    assert (report.scripts, report.suites, report.yamls) == (3, 1, 6)
    assert report.files == 10  # 3 scripts, 1 suite, 6 YAMLs
    assert lint.render(report, "text") == ""
    assert lint.summary(report) == "0 errors, 0 warnings in 10 files"


def test_root_given_as_relative_path(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo.parent)
    assert lint.run_lint(Path("repo")).findings == ()


# ---------------------------------------------------------------- one rule at a time (default config)


def test_name_without_cluster_token_is_a_warning(repo: Path) -> None:
    bad = "tests/test_suites/llm/sft-llama3.1-8b-fsdp2tp1.sh"
    write(repo, bad, SFT_SCRIPT)
    write(repo, "examples/configs/recipes/llm/sft-llama3.1-8b-fsdp2tp1.yaml", "sft: {}\n")
    write(repo, NIGHTLY, NIGHTLY_TEXT + bad + "\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule, finding.severity) == (bad, None, "name-cluster", "warning")
    assert "no <N>n<G>g token" in finding.message


def test_name_that_does_not_parse(repo: Path) -> None:
    bad = "tests/test_suites/llm/sft-llama3.1-8b-1n8g-FSDP2.sh"
    write(repo, bad, SFT_SCRIPT)
    write(repo, "examples/configs/recipes/llm/sft-llama3.1-8b-1n8g-FSDP2.yaml", "sft: {}\n")
    write(repo, NIGHTLY, NIGHTLY_TEXT + bad + "\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.rule, finding.severity) == (bad, "name", "warning")
    assert finding.message == "invalid strategy 'FSDP2' (lowercase letters, digits, '_' and '.')"


def test_default_algos_are_todays(repo: Path) -> None:
    for algo in ("rm", "ppo", "distillation", "vlm_dpo"):
        assert algo in lint.LintConfig().algos
    bad = "tests/test_suites/llm/dapo-qwen2.5-7b-1n8g-fsdp2tp1.sh"
    write(repo, bad, SFT_SCRIPT)
    write(repo, "examples/configs/recipes/llm/dapo-qwen2.5-7b-1n8g-fsdp2tp1.yaml", "grpo: {}\n")
    write(repo, NIGHTLY, NIGHTLY_TEXT + bad + "\n")
    finding = only(lint.run_lint(repo))
    assert (finding.rule, finding.severity) == ("algo-unknown", "error")
    assert "the default algo map (configure [tool.nrl-launch.lint.algos] in pyproject.toml)" in finding.message


def test_placement(repo: Path) -> None:
    moved = "tests/test_suites/llm/" + Path(VLM).name
    (repo / VLM).rename(repo / moved)
    (repo / VLM_YAML).rename(repo / "examples/configs/recipes/llm" / Path(VLM_YAML).name)
    write(repo, "examples/configs/recipes/llm/x", "")  # a stray non-YAML file is ignored
    write(repo, NIGHTLY, NIGHTLY_TEXT.replace(VLM, moved))
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (moved, None, "placement")
    assert "tests/test_suites/vlm/" in finding.message


def test_placement_llm_script_in_vlm_folder(repo: Path) -> None:
    moved = "tests/test_suites/vlm/" + Path(SFT).name
    (repo / SFT).rename(repo / moved)
    (repo / SFT_YAML).rename(repo / "examples/configs/recipes/vlm" / Path(SFT_YAML).name)
    write(repo, NIGHTLY, NIGHTLY_TEXT.replace(SFT, moved))
    assert where(lint.run_lint(repo)) == [(moved, None, "placement")]


def test_yaml_missing(repo: Path) -> None:
    (repo / SFT_YAML).unlink()
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (SFT, None, "yaml-missing")
    assert SFT_YAML in finding.message


def test_yaml_orphan(repo: Path) -> None:
    orphan = "examples/configs/recipes/llm/dpo-llama3.1-8b-instruct-4n8g-fsdp2tp4.yaml"
    write(repo, orphan, "dpo: {}\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (orphan, None, "yaml-orphan")


def test_recipe_yaml_used_as_parent_is_not_an_orphan(repo: Path) -> None:
    base = "examples/configs/recipes/llm/sft-base.yaml"
    write(repo, base, "cluster:\n  gpus_per_node: 8\n")
    write(repo, SFT_YAML, "defaults: sft-base.yaml\n")
    assert lint.run_lint(repo).findings == ()


def test_suite_missing(repo: Path) -> None:
    write(repo, NIGHTLY, NIGHTLY_TEXT.replace(GRPO, "# " + GRPO))
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (GRPO, None, "suite-missing")
    assert "listed in no suite (suites: nightly)" in finding.message


def test_every_txt_is_a_suite_without_configuration(repo: Path) -> None:
    write(repo, "tests/test_suites/release.txt", f"{SFT}\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == ("tests/test_suites/release.txt", 1, "suite-duplicate")
    assert finding.message == f"{SFT} is already listed at {NIGHTLY}:{NIGHTLY_LINES[SFT]}"


def test_suite_duplicate_in_one_suite(repo: Path) -> None:
    write(repo, NIGHTLY, NIGHTLY_TEXT + f"./{VLM}  # again\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (NIGHTLY, 8, "suite-duplicate")
    assert f"{NIGHTLY}:{NIGHTLY_LINES[VLM]}" in finding.message


def test_suite_entry(repo: Path) -> None:
    write(
        repo,
        NIGHTLY,
        NIGHTLY_TEXT
        + "tests/test_suites/llm/nope.sh\n"  # line 8
        + "tests/test_suites/llm/common.env\n"  # 9: exists, not a recipe
        + "/abs/path.sh\n"  # 10
        + "../elsewhere.sh\n",  # 11
    )
    report = lint.run_lint(repo)
    assert where(report) == [(NIGHTLY, line, "suite-entry") for line in (8, 9, 10, 11)]
    messages = [f.message for f in report.findings]
    assert "no such file" in messages[0]
    assert messages[1] == ("tests/test_suites/llm/common.env: not a recipe script (expected a *.sh under "
                           "tests/test_suites/)")
    assert "absolute path" in messages[2]
    assert "outside the repository" in messages[3]


def test_cluster_config_nodes(repo: Path) -> None:
    write(repo, SFT, script("NUM_NODES=2", "GPUS_PER_NODE=8", "NUM_RUNS=1", "NUM_MINUTES=60"))
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule, finding.severity) == (SFT, 6, "cluster-config", "warning")
    assert "1n8g" in finding.message and "NUM_NODES=2" in finding.message


def test_cluster_config_default_gpus(repo: Path) -> None:
    write(repo, VLM, script("NUM_NODES=1", "NUM_RUNS=1", "NUM_MINUTES=30"))
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (VLM, CONFIG_LINE, "cluster-config")
    assert "GPUS_PER_NODE=8 (the default)" in finding.message


def test_cluster_yaml_local(repo: Path) -> None:
    write(repo, GRPO_YAML, "defaults:\n  - ../../grpo_math_1B.yaml\ncluster:\n  num_nodes: 4\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (GRPO_YAML, 4, "cluster-yaml")
    assert finding.message == "cluster.num_nodes=4 but the name says 2n8g"


def test_cluster_yaml_inherited(repo: Path) -> None:
    write(repo, "examples/configs/sft.yaml", "cluster:\n  gpus_per_node: 4\n  num_nodes: 1\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (SFT_YAML, None, "cluster-yaml")
    assert finding.message == ("cluster.gpus_per_node=4 (inherited from examples/configs/sft.yaml:2) "
                               "but the name says 1n8g")


def test_cluster_yaml_later_parent_wins(repo: Path) -> None:
    write(repo, "examples/configs/four.yaml", "cluster:\n  num_nodes: 4\n")
    write(repo, SFT_YAML, "defaults: [../../four.yaml, ../../sft.yaml]\n")
    assert lint.run_lint(repo).findings == ()
    write(repo, SFT_YAML, "defaults: [../../sft.yaml, ../../four.yaml]\n")
    assert where(lint.run_lint(repo)) == [(SFT_YAML, None, "cluster-yaml")]


def test_cluster_yaml_mapping_replaced_by_null_hides_inherited_keys(repo: Path) -> None:
    write(repo, "examples/configs/sft.yaml", "cluster:\n  gpus_per_node: 4\n  num_nodes: 3\n")
    write(repo, SFT_YAML, "defaults: ../../sft.yaml\ncluster: null\n")
    assert lint.run_lint(repo).findings == ()
    write(repo, SFT_YAML, "defaults: ../../sft.yaml\ncluster:\n  other: 1\n")  # a mapping merges instead
    assert [f.rule for f in lint.run_lint(repo).findings] == ["cluster-yaml", "cluster-yaml"]


def test_cluster_yaml_ignores_interpolations(repo: Path) -> None:
    write(repo, GRPO_YAML, "cluster:\n  num_nodes: ${oc.env:NODES}\n  gpus_per_node: '8'\n")
    assert lint.run_lint(repo).findings == ()


CONTEXT = "tests/test_suites/llm/grpo-deepscaler-1.5b-8K.sh"
CONTEXT_YAML = "examples/configs/recipes/llm/grpo-deepscaler-1.5b-8K.yaml"


def add_context_recipe(repo: Path, text: str, yaml_text: str = "grpo: {}\n") -> None:
    write(repo, CONTEXT, text)
    write(repo, CONTEXT_YAML, yaml_text)
    write(repo, NIGHTLY, NIGHTLY_TEXT + CONTEXT + "\n")


def test_context_length_with_hardware_is_clean(repo: Path) -> None:
    add_context_recipe(repo, script("NUM_NODES=1", "GPUS_PER_NODE=8", "NUM_MINUTES=60"))
    assert lint.run_lint(repo).findings == ()


def test_context_hardware(repo: Path) -> None:
    add_context_recipe(repo, script("NUM_NODES=1", "NUM_MINUTES=60"))
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (CONTEXT, CONFIG_LINE, "context-hardware")
    assert "GPUS_PER_NODE" in finding.message and "8K" in finding.message


def test_context_length_yaml_compared_with_config(repo: Path) -> None:
    add_context_recipe(
        repo, script("NUM_NODES=2", "GPUS_PER_NODE=8", "NUM_MINUTES=60"), "cluster:\n  num_nodes: 1\n"
    )
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (CONTEXT_YAML, 2, "cluster-yaml")
    assert finding.message == "cluster.num_nodes=1 but CONFIG has NUM_NODES=2, GPUS_PER_NODE=8"


def test_config(repo: Path) -> None:
    write(repo, SFT, script("NUM_NODES=1", "NUM_RUNS=$(date)", "NUM_MINUTES=60"))
    assert where(lint.run_lint(repo)) == [(SFT, 7, "config")]


def test_config_missing_block(repo: Path) -> None:
    write(repo, SFT, "#!/bin/bash\necho no config\n")
    report = lint.run_lint(repo)
    assert [(f.path, f.rule) for f in report.findings] == [(SFT, "config")]


def test_config_ignores_callers_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUM_NODES", "7")
    assert lint.run_lint(repo).findings == ()


# ---------------------------------------------------------------- budgets


def test_budget_within(repo: Path) -> None:
    assert lint.run_lint(repo, budgets={"nightly": 73}).findings == ()


def test_budget_exceeded(repo: Path) -> None:
    finding = only(lint.run_lint(repo, budgets={"nightly": 72}))
    assert (finding.path, finding.line, finding.rule) == (NIGHTLY, None, "budget")
    assert finding.message == ("suite 'nightly' needs 73 GPU-hours, over its budget of 72 (--budget); biggest: "
                               f"{Path(GRPO).name} 64, {Path(SFT).name} 8, {Path(VLM).name} 1")


def test_budget_counts_apart_entries_without_config(repo: Path) -> None:
    write(repo, SFT, "#!/bin/bash\n")
    report = lint.run_lint(repo, budgets={"nightly": 64})
    assert report.findings[0].rule == "config"
    assert [h.hours for h in report.suite_hours] == [65]
    write(repo, VLM, script("NUM_NODES=1", "GPUS_PER_NODE=2", "NUM_RUNS=1", "NUM_MINUTES=90"))  # 3 GPUh
    finding = next(f for f in lint.run_lint(repo, budgets={"nightly": 64}).findings if f.rule == "budget")
    assert "needs 67 GPU-hours" in finding.message
    assert "(1 entries without a valid CONFIG not counted)" in finding.message


def test_budget_unknown_suite_is_a_usage_problem(repo: Path) -> None:
    with pytest.raises(UsageProblem, match="no suite 'weekly' \\(suites: nightly\\)"):
        lint.run_lint(repo, budgets={"weekly": 10})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("nightly=500", ("nightly", 500)), (" release=0 ", ("release", 0)), ("a.b-c_d=12", ("a.b-c_d", 12))],
)
def test_parse_budget(text: str, expected: tuple[str, int]) -> None:
    assert lint.parse_budget(text) == expected


@pytest.mark.parametrize(
    "text", ["nightly", "=5", "nightly=", "nightly=-1", "nightly=1.5", "nightly=abc", "a=b=1", "", "x y=1"]
)
def test_parse_budget_errors(text: str) -> None:
    with pytest.raises(UsageProblem, match="SUITE=HOURS"):
        lint.parse_budget(text)


# ---------------------------------------------------------------- robustness


def test_empty_directory(tmp_path: Path) -> None:
    assert where(lint.run_lint(tmp_path)) == [("tests/test_suites", None, "layout")]


def test_missing_root(tmp_path: Path) -> None:
    assert where(lint.run_lint(tmp_path / "nope")) == [(".", None, "layout")]


def test_suites_folder_is_a_file(tmp_path: Path) -> None:
    write(tmp_path, "tests/test_suites", "not a folder")
    assert where(lint.run_lint(tmp_path)) == [("tests/test_suites", None, "layout")]


def test_missing_recipes_folder(repo: Path) -> None:
    shutil.rmtree(repo / "examples")
    assert where(lint.run_lint(repo)) == [("examples/configs/recipes", None, "layout")]


def test_no_suites_and_no_vlm_folder(tmp_path: Path) -> None:
    (tmp_path / "tests/test_suites/llm").mkdir(parents=True)
    assert lint.run_lint(tmp_path).findings == ()


def test_invalid_yaml(repo: Path) -> None:
    write(repo, SFT_YAML, "defaults: ../../sft.yaml\ncluster: [1, 2\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.rule) == (SFT_YAML, "yaml-invalid")
    assert finding.line is not None


def test_yaml_not_a_mapping(repo: Path) -> None:
    write(repo, SFT_YAML, "- a\n- b\n")
    assert where(lint.run_lint(repo)) == [(SFT_YAML, 1, "yaml-invalid")]


def test_empty_yaml_is_fine(repo: Path) -> None:
    write(repo, SFT_YAML, "")
    assert lint.run_lint(repo).findings == ()


def test_binary_script(repo: Path) -> None:
    write(repo, SFT, b"\x7fELF\x00\x01\x02")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (SFT, None, "file")
    assert "binary" in finding.message


def test_non_utf8_script(repo: Path) -> None:
    write(repo, SFT, SFT_SCRIPT.replace("SCRIPT_DIR", "SCRIPT_D\xc9R").encode("latin-1"))
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (SFT, 3, "file")
    assert "UTF-8" in finding.message


def test_non_utf8_yaml_and_suite(repo: Path) -> None:
    write(repo, SFT_YAML, b"cluster:\n  name: \xff\n")
    write(repo, "tests/test_suites/weekly.txt", b"\xfe\xff\n")
    assert where(lint.run_lint(repo)) == [
        (SFT_YAML, 2, "file"),
        ("tests/test_suites/weekly.txt", 1, "file"),
    ]


def test_directory_named_like_a_script(repo: Path) -> None:
    (repo / "tests/test_suites/llm/x.sh").mkdir()
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == ("tests/test_suites/llm/x.sh", None, "file")
    assert "directory" in finding.message


def test_output_folder_next_to_its_recipe_is_skipped(repo: Path) -> None:
    output = "tests/test_suites/llm/" + Path(SFT).stem
    write(repo, f"{output}/logs/inner.sh", "garbage")
    assert lint.run_lint(repo).findings == ()
    (repo / SFT).rename(repo / "elsewhere.sh")  # without its recipe the folder is an ordinary one
    write(repo, NIGHTLY, NIGHTLY_TEXT.replace(SFT, "# " + SFT))
    (repo / SFT_YAML).unlink()
    found = where(lint.run_lint(repo))
    assert (f"{output}/logs/inner.sh", None, "suite-missing") in found


def test_suite_entry_inside_an_output_folder(repo: Path) -> None:
    inner = "tests/test_suites/llm/" + Path(SFT).stem + "/ckpts/resume.sh"
    write(repo, inner, "#!/bin/bash\n")
    write(repo, NIGHTLY, NIGHTLY_TEXT + inner + "\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == (NIGHTLY, 8, "suite-entry")
    assert finding.message == f"{inner}: inside the output folder of {SFT}, not a recipe"


def test_nested_recipe_folders_are_scanned(repo: Path) -> None:
    nested = "tests/test_suites/llm/performance/grpo-qwen3-32b-4n8g-megatron.sh"
    write(repo, nested, script("NUM_NODES=4", "NUM_MINUTES=30"))
    write(repo, NIGHTLY, NIGHTLY_TEXT + nested + "\n")
    assert where(lint.run_lint(repo)) == [(nested, None, "yaml-missing")]
    write(repo, "examples/configs/recipes/llm/performance/grpo-qwen3-32b-4n8g-megatron.yaml", "cluster: {}\n")
    assert lint.run_lint(repo).findings == ()


@pytest.mark.parametrize("rel", [
    "tests/test_suites/grpo-qwen3-8b-1n8g-megatron.sh",  # directly in the suite folder
    "tests/test_suites/dependency_upgrade_tests/grpo-qwen3-8b-1n8g-megatron.sh",  # in a folder that is no root
])
def test_recipes_outside_the_recipe_roots_are_recipes(repo: Path, rel: str) -> None:
    # upstream's own suite test globs tests/test_suites/**/*.sh: every script there is a recipe
    yaml = rel.replace("tests/test_suites/", "examples/configs/recipes/").replace(".sh", ".yaml")
    write(repo, rel, script("NUM_NODES=1", "NUM_MINUTES=60"))
    assert where(lint.run_lint(repo)) == [(rel, None, "suite-missing"), (rel, None, "yaml-missing")]
    parent = posixpath.relpath("examples/configs/grpo_math_1B.yaml", posixpath.dirname(yaml))
    write(repo, yaml, f"defaults: {parent}\ncluster:\n  num_nodes: 2\n")
    write(repo, NIGHTLY, NIGHTLY_TEXT + rel + "\n")
    report = lint.run_lint(repo)
    assert where(report) == [(yaml, 3, "cluster-yaml")]  # its YAML is checked like any recipe's
    assert report.suite_hours[0].hours == 73 + 8  # and it counts in its suite
    write(repo, rel, script("NUM_NODES=1", "NUM_MINUTES=$(date)"))
    assert where(lint.run_lint(repo)) == [(yaml, 3, "cluster-yaml"), (rel, CONFIG_LINE + 2, "config")]


def test_directory_named_like_a_suite(repo: Path) -> None:
    (repo / "tests/test_suites/weekly.txt").mkdir()
    assert where(lint.run_lint(repo)) == [("tests/test_suites/weekly.txt", None, "file")]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop(repo: Path) -> None:
    os.symlink("loop.sh", repo / "tests/test_suites/llm/loop.sh")
    os.symlink("loop.yaml", repo / "examples/configs/recipes/llm/loop.yaml")
    assert where(lint.run_lint(repo)) == [
        ("examples/configs/recipes/llm/loop.yaml", None, "file"),
        ("examples/configs/recipes/llm/loop.yaml", None, "yaml-orphan"),
        ("tests/test_suites/llm/loop.sh", None, "file"),
    ]


def test_symlinked_script_is_read_through(repo: Path) -> None:
    real = repo / "elsewhere.sh"
    (repo / SFT).rename(real)
    os.symlink(real, repo / SFT)
    assert lint.run_lint(repo).findings == ()


def test_symlinked_folder_is_not_entered(repo: Path) -> None:
    os.symlink("..", repo / "tests/test_suites/llm/up")  # would loop forever if followed
    assert lint.run_lint(repo).findings == ()


def lint_as_nobody(repo: Path) -> str:
    """``run_lint(repo)`` rendered as JSON, run in a forked child that dropped
    root's privileges to ``nobody`` (the child inherits the imported modules,
    so it needs no access to the interpreter's own files)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, lint.render(lint.run_lint(repo), "json").encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    return output


def test_unreadable_script() -> None:
    """A script its reader may not open is a ``file`` finding. Root reads a
    mode-000 file anyway, so as root the lint runs as ``nobody``."""
    base = Path(tempfile.mkdtemp(prefix="lint-perm-"))  # world-traversable, unlike pytest's tmp_path
    try:
        base.chmod(0o755)
        repo = make_repo(base / "repo")
        (repo / SFT).chmod(0)
        output = lint_as_nobody(repo) if os.geteuid() == 0 else lint.render(lint.run_lint(repo), "json")
    finally:
        shutil.rmtree(base)
    findings = json.loads(output)["findings"]
    assert [(f["path"], f["line"], f["rule"], f["message"]) for f in findings] == [
        (SFT, None, "file", "cannot read: Permission denied")]


def test_defaults_cycle(repo: Path) -> None:
    write(repo, "examples/configs/sft.yaml", "defaults: sft_base.yaml\ncluster:\n  num_nodes: 1\n")
    write(repo, "examples/configs/sft_base.yaml", "defaults: sft.yaml\n")
    finding = only(lint.run_lint(repo))
    assert (finding.path, finding.line, finding.rule) == ("examples/configs/sft_base.yaml", 1, "yaml-defaults")
    assert finding.message == ("defaults cycle: examples/configs/sft.yaml -> examples/configs/sft_base.yaml -> "
                               "examples/configs/sft.yaml")


def test_defaults_self_cycle_with_inherited_key(repo: Path) -> None:
    write(repo, SFT_YAML, "defaults: sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.yaml\n")
    assert where(lint.run_lint(repo)) == [(SFT_YAML, 1, "yaml-defaults")]


def test_defaults_missing_parent(repo: Path) -> None:
    write(repo, SFT_YAML, "defaults:\n  - ../../sft.yaml\n  - ../../nope.yaml\n  - 3\n  - ../../../../../etc/x.yaml\n")
    report = lint.run_lint(repo)
    assert where(report) == [(SFT_YAML, line, "yaml-defaults") for line in (3, 4, 5)]
    assert "not found" in report.findings[0].message
    assert "outside the repository" in report.findings[2].message


def test_defaults_wrong_type(repo: Path) -> None:
    write(repo, SFT_YAML, "defaults:\n  a: b\n")
    assert where(lint.run_lint(repo)) == [(SFT_YAML, 2, "yaml-defaults")]


def test_defaults_parent_invalid(repo: Path) -> None:
    write(repo, "examples/configs/sft.yaml", "cluster: {\n")
    report = lint.run_lint(repo)
    assert [(f.path, f.rule) for f in report.findings] == [("examples/configs/sft.yaml", "yaml-invalid")]


def test_each_file_read_once(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    write(repo, SFT_YAML, "defaults: [../../sft.yaml, ../../grpo_math_1B.yaml]\n")
    lint.run_lint(repo, budgets={"nightly": 100})
    assert len(opened) == len(set(opened)) == 10


def test_defaults_cycle_through_a_symlink(repo: Path) -> None:
    os.symlink(Path(SFT_YAML).name, repo / "examples/configs/recipes/llm/link.yaml")
    write(repo, SFT_YAML, "defaults: link.yaml\n")
    report = lint.run_lint(repo)
    assert {f.rule for f in report.findings} == {"yaml-defaults"}
    assert all("cycle" in f.message for f in report.findings)


def test_undecodable_file_name(repo: Path) -> None:
    os.close(os.open(os.path.join(os.fsencode(repo / "tests/test_suites/llm"), b"sft-\xff-1n8g-x.sh"),
                     os.O_CREAT | os.O_WRONLY))
    report = lint.run_lint(repo)
    assert {f.rule for f in report.findings} == {"config", "suite-missing", "yaml-missing"}
    lint.render(report, "text").encode("utf-8")
    json.loads(lint.render(report, "json"))


def test_fifo_is_never_opened(repo: Path) -> None:
    os.mkfifo(repo / "tests/test_suites/llm/fifo.sh")
    os.mkfifo(repo / "tests/test_suites/weekly.txt")
    assert where(lint.run_lint(repo)) == [
        ("tests/test_suites/llm/fifo.sh", None, "file"),
        ("tests/test_suites/weekly.txt", None, "file"),
    ]


# ---------------------------------------------------------------- the repository itself

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_repository_is_lint_clean_with_its_configuration() -> None:
    config = lint.load_config(REPO_ROOT)
    assert config.source == "pyproject.toml"
    report = lint.run_lint(REPO_ROOT, config)
    assert lint.render(report, "text") == ""
    assert report.scripts > 0 and report.suites > 0
    nightly, = report.suite_hours
    assert nightly.budget is not None and nightly.hours <= nightly.budget
