"""A repository of the real-world shapes (lintkit.build_realworld) lints clean.

Issue 10: run over a real recipe repository, the lint must give no false
errors, and with the repository's conventions in pyproject.toml nothing at all.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import lintkit
import pytest
from lintkit import (
    CONTEXT,
    GB200,
    GYM,
    MEGATRON,
    NO_CLUSTER,
    PERF_GB200,
    RECIPES,
    SFT,
    SUITE_NAMES,
    SUITES_DIR,
    UPGRADE,
    VERSION_FIRST,
    append,
    replace_in,
    script,
    where,
    write,
)

from nrl_launch import lint


@pytest.fixture
def realworld(tmp_path: Path) -> Path:
    return lintkit.build_realworld(tmp_path / "repo")


def test_every_real_world_shape_lints_clean(realworld: Path) -> None:
    report = lint.run_lint(realworld)
    assert where(report) == []
    assert (report.scripts, report.suites) == (len(RECIPES), len(SUITE_NAMES))
    assert report.yamls == len(RECIPES) + len(lintkit.BASES) - len(lintkit.UNUSED_BASES)


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


# ---------------------------------------------------------------- upstream NeMo-RL's conventions (issue 22)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "lint.md"


def docs_example() -> str:
    """The TOML of docs/lint.md's real-world example (its blocks, joined)."""
    text = DOCS.read_text()
    section = text[text.index("### Example: a repository of upstream NeMo-RL's layout"):]
    section = section[:section.index("\n## ")]
    return "".join(re.findall(r"```toml\n(.*?)```", section, re.S))


def test_the_documented_example_is_the_configuration_the_fixture_passes_with(realworld: Path) -> None:
    assert docs_example() == lintkit.CONFIG + lintkit.CONVENTIONS.lstrip("\n")
    write(realworld, "pyproject.toml", docs_example())
    assert where(lint.run_lint(realworld)) == []


def config_without(*lines: str) -> str:
    body = lintkit.pyproject()
    for line in lines:
        assert line in body, line
        body = body.replace(line, "")
    return body


SUBSET_ENTRIES = [(f"{SUITES_DIR}/{name}.txt", spec) for name in lintkit.SUBSETS for spec in lintkit.members(name)]


def test_subset_suites_configured_as_plain_suites_are_false_duplicates(realworld: Path) -> None:
    write(realworld, "pyproject.toml", config_without('subset-of = "nightly"\n', 'subset-of = "nightly_gb200"\n'))
    report = lint.run_lint(realworld)
    assert {f.rule for f in report.findings} == {"suite-duplicate"}
    assert sorted((f.path, f.message.split(" ")[0]) for f in report.findings) == sorted(
        (suite, spec.rel) for suite, spec in SUBSET_ENTRIES)
    assert len(SUBSET_ENTRIES) == 4


def test_subset_suites_left_out_leave_their_entries_unchecked(realworld: Path) -> None:
    body = config_without('[tool.nrl-launch.lint.suites.nightly_mcore]  # runs some nightly recipes again\n'
                          'subset-of = "nightly"\n', '[tool.nrl-launch.lint.suites.nightly_mcore_gb200]\n'
                          'subset-of = "nightly_gb200"\ngpus-per-node = 4\n')
    write(realworld, "pyproject.toml", body)
    append(realworld, f"{SUITES_DIR}/nightly_mcore.txt", "tests/test_suites/llm/gone.sh\n")
    assert where(lint.run_lint(realworld)) == [(f"{SUITES_DIR}/{name}.txt", None, "suite-unconfigured")
                                               for name in ("nightly_mcore", "nightly_mcore_gb200")]


def test_subset_suite_entries_are_checked(realworld: Path) -> None:
    mcore, mcore_gb200 = (f"{SUITES_DIR}/{name}.txt" for name in lintkit.SUBSETS)
    first = lintkit.suite_text("nightly_mcore").count("\n") + 1
    append(realworld, mcore, "tests/test_suites/llm/gone.sh\n"  # no such recipe
           f"{NO_CLUSTER.rel}\n"  # a release recipe, not a nightly one
           f"{lintkit.FULL.rel}\n")  # listed twice in the subset suite itself
    append(realworld, mcore_gb200, f"{SFT.rel}\n")  # a nightly recipe, not one of nightly_gb200 (and 8 GPUs)
    report = lint.run_lint(realworld)
    full_line = lintkit.suite_text("nightly_mcore").splitlines().index(lintkit.FULL.rel) + 1
    assert where(report) == [
        (SFT.rel, 7, "suite-gpus"),
        (mcore, first, "suite-entry"),
        (mcore, first + 1, "suite-subset"),
        (mcore, first + 2, "suite-duplicate"),
        (mcore_gb200, lintkit.suite_text("nightly_mcore_gb200").count("\n") + 1, "suite-subset"),
    ]
    messages = {(f.path, f.rule): f.message for f in report.findings}
    assert messages[(mcore, "suite-duplicate")] == f"{lintkit.FULL.rel} is already listed at {mcore}:{full_line}"
    assert "suite 'nightly_mcore_gb200' (tests/test_suites/nightly_mcore_gb200.txt:" in messages[(SFT.rel,
                                                                                                   "suite-gpus")]


def test_subset_suites_have_hours_of_their_own_and_add_to_no_other(realworld: Path) -> None:
    hours = {h.name: h.hours for h in lint.run_lint(realworld).suite_hours}
    assert hours["nightly"] == sum(spec.gpu_hours for spec in RECIPES if spec.suite == "nightly")
    assert hours["nightly_mcore"] == sum(spec.gpu_hours for spec in lintkit.members("nightly_mcore")) > 0
    # --budget works on a subset suite like on any launched one
    report = lint.run_lint(realworld, budgets={"nightly_mcore": hours["nightly_mcore"] - 1})
    assert where(report) == [(f"{SUITES_DIR}/nightly_mcore.txt", None, "budget")]


def test_recipe_outside_the_recipe_roots_is_checked(realworld: Path) -> None:
    assert (realworld / UPGRADE.rel).is_file() and not UPGRADE.rel.startswith(("tests/test_suites/llm/",
                                                                              "tests/test_suites/vlm/"))
    (realworld / UPGRADE.yaml_rel).unlink()
    replace_in(realworld, f"{SUITES_DIR}/disabled.txt", UPGRADE.rel + "\n", "")
    assert where(lint.run_lint(realworld)) == [(UPGRADE.rel, None, "suite-missing"), (UPGRADE.rel, None,
                                                                                      "yaml-missing")]


def test_inherits_reads_the_algo_map_as_defaults_ancestry(realworld: Path) -> None:
    # upstream's map means "merges into"; read as "inherits from", full configs and recipes
    # deriving from another parent of the base would warn
    write(realworld, "pyproject.toml", config_without(
        'base-check = "merges"  # every key a recipe YAML sets is a key of its algo\'s base YAML\n',
        'base-extra-keys = ["policy.draft", "policy.generation.vllm_kwargs"]  # keys recipes may add to it\n'))
    report = lint.run_lint(realworld)
    full_configs = [spec for spec in RECIPES if spec.base is None]
    assert where(report) == sorted((spec.yaml_rel, None, "yaml-base") for spec in full_configs)
    assert len(full_configs) == 2
    assert report.findings[0].message.endswith("but this YAML inherits nothing (no defaults:)")


def test_merges_names_each_key_the_base_lacks(realworld: Path) -> None:
    yaml = lintkit.FULL.yaml_rel
    write(realworld, yaml, (realworld / yaml).read_text() + "policy_extra:\n  x: 1\nloss_fn:\n  kl: 0.1\n")
    replace_in(realworld, yaml, "  model_name: llama-1b\n", "  model_name: llama-1b\n  draftt: {}\n")
    finding, = lint.run_lint(realworld).findings
    assert (finding.path, finding.line, finding.rule, finding.severity) == (yaml, 5, "yaml-base", "warning")
    assert finding.message.endswith("but this YAML sets keys the base does not have: policy.draftt (line 5), "
                                    "policy_extra (line 9), loss_fn (line 11)")


def test_merges_follows_inherited_keys_and_allowed_extras(realworld: Path) -> None:
    # a parent of the recipe adds a key the base lacks: named where it is set
    replace_in(realworld, "examples/configs/grpo_math_1B_megatron.yaml", "policy:\n",
               "policy:\n  megatron_cfg:\n    enabled: true\n")
    # the allowed policy.generation.vllm_kwargs of MEGATRON is fine; without the allowance it is not
    finding, = lint.run_lint(realworld).findings
    assert (finding.path, finding.line) == (MEGATRON.yaml_rel, 1)  # its defaults: line
    assert finding.message.endswith("keys the base does not have: policy.megatron_cfg (inherited from "
                                    "examples/configs/grpo_math_1B_megatron.yaml:3)")
    write(realworld, "pyproject.toml", lintkit.pyproject().replace('"policy.draft", "policy.generation.vllm_kwargs"',
                                                                   '"policy.draft"'))
    replace_in(realworld, "examples/configs/grpo_math_1B_megatron.yaml", "  megatron_cfg:\n    enabled: true\n", "")
    finding, = lint.run_lint(realworld).findings
    assert (finding.path, finding.line) == (MEGATRON.yaml_rel, 7)
    assert finding.message.endswith("policy.generation.vllm_kwargs (line 7)")


@pytest.mark.parametrize(("base", "recipe", "allowed", "unknown"), [
    ("a: {b: 1}\n", "a: {b: 2}\n", "", []),
    ("a: {b: 1}\n", "a: {c: 2}\n", "", ["a.c"]),
    ("a: null\n", "a: {c: 2}\n", "", []),  # a mapping replaces a null
    ("a: 1\n", "a: {c: 2}\n", "", []),  # and any other value
    ("a: {b: 1}\n", "a: 5\n", "", []),  # a value replaces a mapping
    ("a: {}\n", "a: {c: 2}\n", "", ["a.c"]),  # an empty mapping has no keys
    ("a: [1]\n", "a: [1, 2, 3]\n", "", []),  # lists replace
    ("a: {b: {c: 1}}\n", "a: {b: {d: 1}, e: 2}\n", "", ["a.b.d", "a.e"]),
    ("a: {b: 1}\n", "a: {c: {d: 1}}\n", "a.c", []),  # an allowed key, with what is below it
    ("a: {b: 1}\n", "a: {c: {d: 1}, e: 1}\n", "a.*", []),
    ("a: {b: 1}\n", "x: {y: {z: 1, w: 2}}\n", "x.y.z", ["x.y.w"]),  # the way to an allowed key is allowed
    ("a: {b: 1}\n", "x: 3\n", "x.y", ["x"]),  # but only as a mapping on the way
])
def test_merge_table(tmp_path: Path, base: str, recipe: str, allowed: str, unknown: list[str]) -> None:
    write(tmp_path, "examples/configs/base.yaml", base)
    extra = f'base-extra-keys = ["{allowed}"]\n' if allowed else ""
    write(tmp_path, "pyproject.toml", f'[tool.nrl-launch.lint]\nbase-check = "merges"\n{extra}\n'
                                      '[tool.nrl-launch.lint.algos]\ngrpo = "examples/configs/base.yaml"\n')
    write(tmp_path, "tests/test_suites/llm/grpo-x-1n8g-fsdp2tp1.sh", script("NUM_NODES=1", "NUM_MINUTES=60"))
    write(tmp_path, "tests/test_suites/nightly.txt", "tests/test_suites/llm/grpo-x-1n8g-fsdp2tp1.sh\n")
    write(tmp_path, "examples/configs/recipes/llm/grpo-x-1n8g-fsdp2tp1.yaml", recipe)
    findings = lint.run_lint(tmp_path).findings
    named = findings[0].message.split("does not have: ")[1] if findings else ""
    assert [key.split(" (")[0] for key in named.split(", ") if key] == unknown


def test_yaml_requires_script_counts_shared_parents(realworld: Path) -> None:
    shared = f"{lintkit.YAML_ROOT}/llm/grpo-common.yaml"
    write(realworld, shared, "defaults: ../../grpo_math_1B.yaml\n")
    replace_in(realworld, CONTEXT.yaml_rel, "defaults: ../../grpo_math_1B.yaml", "defaults: grpo-common.yaml")
    finding, = lint.run_lint(realworld).findings
    assert (finding.path, finding.rule) == (shared, "yaml-orphan")
    assert finding.message == ("no script tests/test_suites/llm/grpo-common.sh (yaml-requires-script: every YAML "
                               "under examples/configs/recipes/ mirrors a recipe, defaults: parents too)")
    write(realworld, "pyproject.toml", config_without("yaml-requires-script = true  # every recipe YAML has its "
                                                      "script\n"))
    assert lint.run_lint(realworld).findings == ()  # a shared parent is no orphan by default


def test_every_configuration_error_at_once(realworld: Path) -> None:
    body = (lintkit.pyproject()
            .replace("vlm_mpo = \"examples/configs/vlm_mpo.yaml\"", "vlm_mpo = \"examples/configs/vlm_mpo_3B.yaml\"")
            .replace('subset-of = "nightly_gb200"', 'subset-of = "nightly_gb300"')
            .replace("gpus-per-node = 4\n[tool.nrl-launch.lint.suites.release_gb200]",
                     "gpus_per_node = 4\n[tool.nrl-launch.lint.suites.release_gb200]"))
    write(realworld, "pyproject.toml", body)
    with pytest.raises(lint.LintConfigError) as caught:
        lint.run_lint(realworld)
    lines = body.splitlines()
    assert [(path, line, message.split("] ", 1)[1]) for path, line, message in caught.value.problems] == [
        ("pyproject.toml", lines.index('vlm_mpo = "examples/configs/vlm_mpo_3B.yaml"') + 1,
         "vlm_mpo = 'examples/configs/vlm_mpo_3B.yaml': no such file in the repository"),
        ("pyproject.toml", lines.index("gpus_per_node = 4") + 1,
         "unknown key 'gpus_per_node' (did you mean 'gpus-per-node'?); known: budget, gpus-per-node, disabled, "
         "subset-of"),
        ("pyproject.toml", lines.index('subset-of = "nightly_gb300"') + 1,
         "subset-of names 'nightly_gb300', which is not a configured suite (did you mean 'nightly_gb200'?)"),
    ]
