"""``[tool.nrl-launch.lint]``, inline ``# nrl-lint:`` comments, and the rule table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lintkit
import pytest
from lintkit import CONTEXT, SFT, SUITES_DIR, where, write

from nrl_launch import lint
from nrl_launch.lint.naming import DEVIATION_RULES
from nrl_launch.lint.options import LintConfig, LintConfigError, inline_disables
from nrl_launch.lint.pyproject import load_config
from nrl_launch.lint.report import Collector
from nrl_launch.lint.rules import RULES, UnknownRuleError
from nrl_launch.recipes.layout import Layout
from nrl_launch.recipes.names import DEVIATIONS

REPO = Path(__file__).resolve().parents[2]
LINT_PACKAGE = REPO / "tools" / "nrl_launch" / "lint"


def config_from(tmp_path: Path, body: str) -> LintConfig:
    """load_config of a repository whose pyproject.toml is ``body``, with the
    base YAML the algo tables below name."""
    write(tmp_path, "examples/configs/grpo.yaml", "grpo: {}\n")
    write(tmp_path, "pyproject.toml", body)
    return load_config(tmp_path)


SECTION = "[tool.nrl-launch.lint]\n"

# pyproject.toml -> (line of the problem or None, what the message must say)
BAD_CONFIGS = {
    SECTION + "suite_dir = 'x'\n": (2, "[tool.nrl-launch.lint] unknown key 'suite_dir' (did you mean 'suite-dir'?)"),
    SECTION + "suite-dir = '/abs'\n": (2, "suite-dir = '/abs' must be a relative path inside the repository"),
    SECTION + "suite-dir = '../up'\n": (2, "must be a relative path inside the repository"),
    SECTION + "suite-dir = 3\n": (2, "suite-dir must be a non-empty string"),
    SECTION + "recipe-roots = ['elsewhere/llm']\n": (
        2, "recipe root 'elsewhere/llm' must be a folder inside suite-dir 'tests/test_suites'"),
    SECTION + "recipe-roots = ['tests/test_suites/llm', 'tests/test_suites/llm/perf']\n": (
        2, "recipe roots 'tests/test_suites/llm' and 'tests/test_suites/llm/perf' overlap"),
    SECTION + "recipe-roots = []\n": (2, "recipe-roots must be a non-empty list of strings"),
    SECTION + "extra-node-keys = ['env..nodes']\n": (2, "'env..nodes' is not a dotted key"),
    SECTION + "extra-node-keys = ['cluster.*']\n": (2, "'cluster.*' matches cluster.num_nodes"),
    SECTION + "\n[tool.nrl-launch.lint.algos]\ngrpo = 'examples/configs/nope.yaml'\n": (
        4, "[tool.nrl-launch.lint.algos] grpo = 'examples/configs/nope.yaml': no such file"),
    SECTION + "\n[tool.nrl-launch.lint.algos]\n'vlm-grpo' = 'examples/configs/grpo.yaml'\n": (
        4, "algo 'vlm-grpo' must be a name's first token"),
    SECTION + "\n[tool.nrl-launch.lint.algos]\ngrpo = 7\n": (4, "grpo must be a base YAML path or a list of them"),
    SECTION + "algos = {}\n": (2, "algos names no algo"),
    SECTION + "\n[tool.nrl-launch.lint.suites.nightly]\ngpus_per_node = 4\n": (
        4, "[tool.nrl-launch.lint.suites.nightly] unknown key 'gpus_per_node' (did you mean 'gpus-per-node'?)"),
    SECTION + "\n[tool.nrl-launch.lint.suites.nightly]\nbudget = -1\n": (4, "budget must be a whole number >= 0"),
    SECTION + "\n[tool.nrl-launch.lint.suites.nightly]\nbudget = true\n": (4, "budget must be a whole number"),
    SECTION + "\n[tool.nrl-launch.lint.suites.gb200]\ngpus-per-node = 0\n": (4, "gpus-per-node must be a whole "
                                                                                 "number >= 1"),
    SECTION + "\n[tool.nrl-launch.lint.suites.disabled]\ndisabled = 'yes'\n": (4, "disabled must be true or false"),
    SECTION + "\n[tool.nrl-launch.lint.suites.disabled]\ndisabled = true\nbudget = 5\n": (
        5, "a disabled suite is never launched: a budget means nothing there"),
    SECTION + "\n[tool.nrl-launch.lint.suites]\n'night ly' = {}\n": (4, "suite name 'night ly' may only use"),
    SECTION + "suites = {nightly = 3}\n": (2, "nightly must be a table, got int"),
    SECTION + "\n[tool.nrl-launch.lint.severity]\nnames = 'off'\n": (4, "unknown rule 'names' (did you mean 'name'?)"),
    SECTION + "\n[tool.nrl-launch.lint.severity]\nname = 'ignore'\n": (
        4, "name = 'ignore': severity must be one of error, warning, off"),
    SECTION + "\n[tool.nrl-launch.lint.per-file-ignores]\n'tests/*' = ['nope']\n": (4, "unknown rule 'nope'"),
    SECTION + "\n[tool.nrl-launch.lint.per-file-ignores]\n'tests/*' = 'name'\n": (4, "must be a non-empty list"),
    "[tool.nrl-launch]\nlint = 3\n": (2, "the section must be a table, got int"),
    SECTION + "yaml-requires-script = 'yes'\n": (2, "yaml-requires-script must be true or false"),
    SECTION + "base-check = 'derives'\n": (2, "base-check = 'derives': must be one of 'inherits', 'merges'"),
    SECTION + "base-extra-keys = ['policy.draft']\n": (2, "base-extra-keys only applies with base-check = 'merges'"),
    SECTION + "base-check = 'merges'\nbase-extra-keys = ['policy..draft']\n": (
        3, "'policy..draft' is not a dotted key"),
    SECTION + "\n[tool.nrl-launch.lint.suites.mcore]\nsubset-of = 'nightly'\n": (
        4, "subset-of names 'nightly', which is not a configured suite"),
    SECTION + "\n[tool.nrl-launch.lint.suites.mcore]\nsubset-of = 'mcore'\n": (
        4, "suite 'mcore' cannot be a subset of itself"),
    SECTION + "\n[tool.nrl-launch.lint.suites.mcore]\nsubset-of = 7\n": (
        4, "subset-of must be a suite name or a list of them"),
    SECTION + "\n[tool.nrl-launch.lint.suites.a]\n[tool.nrl-launch.lint.suites.b]\nsubset-of = 'a'\n"
              "[tool.nrl-launch.lint.suites.c]\nsubset-of = ['b']\n": (7, "subset-of names 'b', which is a subset "
                                                                          "suite itself"),
    SECTION + "\n[tool.nrl-launch.lint.suites.off]\ndisabled = true\n[tool.nrl-launch.lint.suites.b]\n"
              "subset-of = 'off'\n": (6, "subset-of names 'off', which is disabled (never launched)"),
    SECTION + "\n[tool.nrl-launch.lint.suites.a]\n[tool.nrl-launch.lint.suites.b]\ndisabled = true\n"
              "subset-of = 'a'\n": (6, "a disabled suite is never launched: it cannot be a subset of another"),
    SECTION + "suite-dir = \n": (None, "invalid TOML: "),
}


@pytest.mark.parametrize("body", list(BAD_CONFIGS), ids=range(len(BAD_CONFIGS)))
def test_bad_configuration_names_file_and_line(tmp_path: Path, body: str) -> None:
    line, fragment = BAD_CONFIGS[body]
    with pytest.raises(LintConfigError) as caught:
        config_from(tmp_path, body)
    assert (caught.value.path, caught.value.line) == ("pyproject.toml", line)
    assert fragment in caught.value.message
    assert str(caught.value).startswith("pyproject.toml" + ("" if line is None else f":{line}") + ": ")


def test_line_of_a_table_written_inline(tmp_path: Path) -> None:
    body = SECTION + "suite-dir = 'tests/test_suites'\nsuites = { nightly = { budget = -2 } }\n"
    with pytest.raises(LintConfigError) as caught:
        config_from(tmp_path, body)
    assert caught.value.line == 3  # found through the parent table's key


def test_no_section_means_the_defaults(tmp_path: Path) -> None:
    assert config_from(tmp_path, "[tool.ruff]\nline-length = 100\n") == LintConfig()
    assert load_config(tmp_path / "no-such-folder") == LintConfig()


def test_a_full_configuration(tmp_path: Path) -> None:
    config = config_from(tmp_path, SECTION + """\
suite-dir = "suites"
recipe-roots = ["suites/llm/", "suites/./vlm"]
yaml-root = "configs/recipes"
extra-node-keys = ["env.*.num_gpu_nodes", "generation.colocated.resources.num_nodes"]
yaml-requires-script = true
base-check = "merges"
base-extra-keys = ["policy.draft", "env.*.extra"]

[tool.nrl-launch.lint.algos]
grpo = "examples/configs/grpo.yaml"
dapo = ["examples/configs/grpo.yaml"]
mopd = []

[tool.nrl-launch.lint.suites.nightly]
budget = 500
[tool.nrl-launch.lint.suites.nightly_gb200]
gpus-per-node = 4
[tool.nrl-launch.lint.suites.disabled]
disabled = true
[tool.nrl-launch.lint.suites.mcore]
subset-of = ["nightly", "nightly_gb200"]
budget = 100

[tool.nrl-launch.lint.severity]
cluster-yaml = "error"
name = "off"

[tool.nrl-launch.lint.per-file-ignores]
"suites/llm/perf/*.sh" = ["name-strategy", "cluster-config"]
""")
    assert config.layout == Layout(suite_dir="suites", recipe_roots=("suites/llm", "suites/vlm"),
                                   yaml_root="configs/recipes")
    assert config.roots_configured
    assert config.extra_node_keys == (("env", "*", "num_gpu_nodes"), ("generation", "colocated", "resources",
                                                                      "num_nodes"))
    assert config.algos == {"grpo": ("examples/configs/grpo.yaml",), "dapo": ("examples/configs/grpo.yaml",),
                            "mopd": ()}
    assert [(s.name, s.budget, s.gpus_per_node, s.disabled, s.subset_of) for s in config.suites or ()] == [
        ("nightly", 500, None, False, ()), ("nightly_gb200", None, 4, False, ()), ("disabled", None, None, True, ()),
        ("mcore", 100, None, False, ("nightly", "nightly_gb200"))]
    assert (config.yaml_requires_script, config.base_check) == (True, "merges")
    assert config.base_extra_keys == (("policy", "draft"), ("env", "*", "extra"))
    assert (config.severity("cluster-yaml"), config.severity("name"), config.severity("placement")) == (
        "error", "off", "warning")
    assert config.ignored("suites/llm/perf/x.sh", "cluster-config")
    assert config.ignored("suites/llm/perf/deeper/x.sh", "name-strategy")  # '*' crosses folders
    assert not config.ignored("suites/llm/x.sh", "cluster-config")
    assert not config.ignored("suites/llm/perf/x.sh", "name")


def test_default_roots_follow_a_configured_suite_dir(tmp_path: Path) -> None:
    config = config_from(tmp_path, SECTION + "suite-dir = 'ci/suites'\n")
    assert config.layout.recipe_roots == ("ci/suites/llm", "ci/suites/vlm")
    assert not config.roots_configured


# ---------------------------------------------------------------- severities and ignores at work


@pytest.fixture
def realworld(tmp_path: Path) -> Path:
    return lintkit.build_realworld(tmp_path / "repo")


def test_severity_turns_a_warning_into_an_error_and_off(realworld: Path) -> None:
    write(realworld, CONTEXT.rel, (realworld / CONTEXT.rel).read_text().replace("GPUS_PER_NODE=8\n", ""))
    finding, = lint.run_lint(realworld).findings
    assert (finding.rule, finding.severity) == ("context-hardware", "warning")
    body = lintkit.pyproject().replace('name-version = "off"', 'name-version = "off"\ncontext-hardware = "error"')
    write(realworld, "pyproject.toml", body)
    report = lint.run_lint(realworld)
    assert [(f.rule, f.severity) for f in report.findings] == [("context-hardware", "error")]
    assert report.failed()
    write(realworld, "pyproject.toml", body.replace('context-hardware = "error"', 'context-hardware = "off"'))
    assert lint.run_lint(realworld).findings == ()


def test_an_error_rule_can_be_a_warning(realworld: Path) -> None:
    (realworld / SFT.yaml_rel).unlink()
    body = lintkit.pyproject().replace('name-version = "off"', 'name-version = "off"\nyaml-missing = "warning"')
    write(realworld, "pyproject.toml", body)
    report = lint.run_lint(realworld)
    assert [(f.rule, f.severity) for f in report.findings] == [("yaml-missing", "warning")]
    assert not report.failed()


def test_per_file_ignores_match_the_findings_path(realworld: Path) -> None:
    (realworld / SFT.yaml_rel).unlink()
    body = lintkit.pyproject() + '"tests/test_suites/llm/sft-*" = ["yaml-missing"]\n'
    write(realworld, "pyproject.toml", body)
    assert lint.run_lint(realworld).findings == ()
    write(realworld, "pyproject.toml", body.replace("sft-*", "dpo-*"))
    assert where(lint.run_lint(realworld)) == [(SFT.rel, None, "yaml-missing")]


def test_inline_comment_turns_rules_off_for_its_file_only(realworld: Path) -> None:
    (realworld / SFT.yaml_rel).unlink()
    (realworld / CONTEXT.yaml_rel).unlink()
    text = (realworld / SFT.rel).read_text()
    write(realworld, SFT.rel, text.replace("# a recipe", "# a recipe\n# nrl-lint: disable=suite-gpus, yaml-missing"))
    assert where(lint.run_lint(realworld)) == [(CONTEXT.rel, None, "yaml-missing")]


def test_inline_comment_in_a_yaml_and_a_suite(realworld: Path) -> None:
    nightly = f"{SUITES_DIR}/nightly.txt"
    write(realworld, nightly, (realworld / nightly).read_text() + "tests/test_suites/llm/gone.sh\n")
    write(realworld, lintkit.GYM.yaml_rel, lintkit.GYM.yaml_text().replace("num_gpu_nodes: 5", "num_gpu_nodes: 9"))
    assert sorted(f.rule for f in lint.run_lint(realworld).findings) == ["cluster-yaml", "suite-entry"]
    write(realworld, nightly, "# nrl-lint: disable=suite-entry  (kept for the release branch)\n"
          + (realworld / nightly).read_text())
    write(realworld, lintkit.GYM.yaml_rel, "# nrl-lint: disable=cluster-yaml\n" + (realworld / lintkit.GYM.yaml_rel)
          .read_text())
    assert lint.run_lint(realworld).findings == ()


@pytest.mark.parametrize(("line", "expected"), [
    ("# nrl-lint: disable=name", {"name"}),
    ("NUM_NODES=2  # nrl-lint: disable=cluster-config,suite-gpus", {"cluster-config", "suite-gpus"}),
    ("#nrl-lint:disable=name , placement   because we say so", {"name", "placement"}),
    ("echo 'no directive here'", set()),
])
def test_inline_directives(line: str, expected: set[str]) -> None:
    assert inline_disables(f"#!/bin/bash\n{line}\n", "x.sh") == expected


@pytest.mark.parametrize(("line", "fragment"), [
    ("# nrl-lint: disable=nmae", "unknown rule 'nmae' in nrl-lint comment (did you mean 'name'?)"),
    ("# nrl-lint: enable=name", "expected '# nrl-lint: disable=<rule>[,<rule>] [reason]'"),
    ("# nrl-lint: disable=", "expected '# nrl-lint: disable="),
    ("# nrl-lint: disable=name,", "expected '# nrl-lint: disable="),
])
def test_bad_inline_directive_names_file_and_line(line: str, fragment: str) -> None:
    with pytest.raises(LintConfigError) as caught:
        inline_disables(f"#!/bin/bash\n\n{line}\n", "tests/test_suites/llm/x.sh")
    assert (caught.value.path, caught.value.line) == ("tests/test_suites/llm/x.sh", 3)
    assert fragment in caught.value.message


def test_bad_inline_directive_stops_the_lint(realworld: Path) -> None:
    write(realworld, SFT.rel, (realworld / SFT.rel).read_text() + "# nrl-lint: disable=everything\n")
    with pytest.raises(LintConfigError, match=re.escape(f"{SFT.rel}:")):
        lint.run_lint(realworld)


# ---------------------------------------------------------------- the rule table


def test_unknown_rule_id_is_a_programming_error() -> None:
    collector = Collector(LintConfig())
    with pytest.raises(UnknownRuleError, match="'no-such-rule' is not declared"):
        collector.add("x.sh", None, "no-such-rule", "message")
    collector.add("x.sh", None, "name", "message")
    assert [f.rule for f in collector.findings()] == ["name"]


def _rule_ids_used_in_the_lint_package() -> set[str]:
    """Every string literal passed as the rule of a ``….add(path, line, rule, message)`` call."""
    used: set[str] = set()
    for source in LINT_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add"
                    and len(node.args) == 4 and isinstance(node.args[2], ast.Constant)):
                used.add(str(node.args[2].value))
    return used


def test_every_rule_id_in_the_code_is_declared_and_every_declared_rule_is_used() -> None:
    used = _rule_ids_used_in_the_lint_package() | set(DEVIATION_RULES.values())
    assert used == set(RULES)
    assert set(DEVIATION_RULES) == set(DEVIATIONS)


def test_docs_describe_every_rule_and_key() -> None:
    docs = (REPO / "docs" / "lint.md").read_text()
    rows = set(re.findall(r"^\| `([a-z-]+)` \| (?:error|warning) \|", docs, re.M))
    assert rows == set(RULES)
    for rule in RULES.values():
        assert re.search(rf"^\| `{rule.id}` \| {rule.severity} \|", docs, re.M), rule.id
    for key in ("suite-dir", "recipe-roots", "yaml-root", "yaml-requires-script", "extra-node-keys", "base-check",
                "base-extra-keys", "budget", "gpus-per-node", "disabled", "subset-of", "# nrl-lint: disable="):
        assert f"| `{key}" in docs or f"↳ `{key}`" in docs or f"`{key}<rule>" in docs, key
    for table in ("algos]", "suites.<name>]", "severity]", "per-file-ignores]"):
        assert f"| `[…lint.{table}` |" in docs, table
