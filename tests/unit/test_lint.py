"""Repository checker (nrl_launch.lint) on small repositories built in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from nrl_launch import lint
from nrl_launch.errors import UsageProblem

SFT = "tests/test_suites/llm/sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.sh"
GRPO = "tests/test_suites/llm/grpo-qwen2.5-7b-instruct-2n8g-megatron-tp2.v2.sh"
VLM = "tests/test_suites/vlm/vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-dtensor2tp1.v1.sh"
SFT_YAML = "examples/configs/recipes/llm/sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.yaml"
GRPO_YAML = "examples/configs/recipes/llm/grpo-qwen2.5-7b-instruct-2n8g-megatron-tp2.v2.yaml"
VLM_YAML = "examples/configs/recipes/vlm/vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-dtensor2tp1.v1.yaml"
NIGHTLY = "tests/test_suites/nightly.txt"
CONFIG_LINE = 5  # line of the BEGIN CONFIG marker in script()


def script(*assignments: str) -> str:
    """A recipe script whose CONFIG block holds ``assignments`` (first one on line 6)."""
    lines = [
        "#!/bin/bash",
        'SCRIPT_DIR=$( cd -- "$( dirname -- "${BASH_SOURCE[0]}" )" &> /dev/null && pwd)',
        "source $SCRIPT_DIR/common.env",
        "",
        "# ===== BEGIN CONFIG =====",
        *assignments,
        "# ===== END CONFIG =====",
        "",
        "exit_if_max_steps_reached",
        'uv run examples/run.py --config $CONFIG_PATH "$@"',
    ]
    return "\n".join(lines) + "\n"


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


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


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


def triples(report: lint.LintReport) -> list[tuple[str, int | None, str]]:
    return [(f.path, f.line, f.rule) for f in report.findings]


def only(report: lint.LintReport) -> lint.Finding:
    assert len(report.findings) == 1, report.findings
    return report.findings[0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def test_clean_repository(repo: Path) -> None:
    report = lint.run_lint(repo, {"nightly": 73})
    assert report.findings == ()
    assert report.ok
    assert (report.scripts, report.suites) == (3, 1)
    assert lint.render(report, "text") == ""
    payload = json.loads(lint.render(report, "json"))
    assert payload["findings"] == []
    assert payload["summary"]["findings"] == 0
    assert payload["summary"]["scripts"] == 3


def test_root_given_as_relative_path(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo.parent)
    assert lint.run_lint(Path("repo"), {}).findings == ()


# ---------------------------------------------------------------- one rule at a time


def test_name(repo: Path) -> None:
    bad = "tests/test_suites/llm/sft-llama3.1-8b-fsdp2tp1.sh"
    write(repo, bad, SFT_SCRIPT)
    write(repo, "examples/configs/recipes/llm/sft-llama3.1-8b-fsdp2tp1.yaml", "sft: {}\n")
    write(repo, NIGHTLY, NIGHTLY_TEXT + bad + "\n")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (bad, None, "name")
    assert "no <N>n<G>g cluster token" in finding.message


def test_placement(repo: Path) -> None:
    moved = "tests/test_suites/llm/" + Path(VLM).name
    (repo / VLM).rename(repo / moved)
    (repo / VLM_YAML).rename(repo / "examples/configs/recipes/llm" / Path(VLM_YAML).name)
    write(repo, "examples/configs/recipes/llm/x", "")  # a stray non-YAML file is ignored
    write(repo, NIGHTLY, NIGHTLY_TEXT.replace(VLM, moved))
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (moved, None, "placement")
    assert "tests/test_suites/vlm/" in finding.message


def test_placement_llm_script_in_vlm_folder(repo: Path) -> None:
    moved = "tests/test_suites/vlm/" + Path(SFT).name
    (repo / SFT).rename(repo / moved)
    (repo / SFT_YAML).rename(repo / "examples/configs/recipes/vlm" / Path(SFT_YAML).name)
    write(repo, NIGHTLY, NIGHTLY_TEXT.replace(SFT, moved))
    assert triples(lint.run_lint(repo, {})) == [(moved, None, "placement")]


def test_yaml_missing(repo: Path) -> None:
    (repo / SFT_YAML).unlink()
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (SFT, None, "yaml-missing")
    assert SFT_YAML in finding.message


def test_yaml_orphan(repo: Path) -> None:
    orphan = "examples/configs/recipes/llm/dpo-llama3.1-8b-instruct-4n8g-fsdp2tp4.yaml"
    write(repo, orphan, "dpo: {}\n")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (orphan, None, "yaml-orphan")


def test_recipe_yaml_used_as_parent_is_not_an_orphan(repo: Path) -> None:
    base = "examples/configs/recipes/llm/sft-base.yaml"
    write(repo, base, "cluster:\n  gpus_per_node: 8\n")
    write(repo, SFT_YAML, "defaults: sft-base.yaml\n")
    assert lint.run_lint(repo, {}).findings == ()


def test_suite_missing(repo: Path) -> None:
    write(repo, NIGHTLY, NIGHTLY_TEXT.replace(GRPO, "# " + GRPO))
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (GRPO, None, "suite-missing")


def test_suite_duplicate_across_suites(repo: Path) -> None:
    write(repo, "tests/test_suites/release.txt", f"{SFT}\n")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == ("tests/test_suites/release.txt", 1, "suite-duplicate")
    assert f"{NIGHTLY}:{NIGHTLY_LINES[SFT]}" in finding.message
    assert SFT in finding.message


def test_suite_duplicate_in_one_suite(repo: Path) -> None:
    write(repo, NIGHTLY, NIGHTLY_TEXT + f"./{VLM}  # again\n")
    finding = only(lint.run_lint(repo, {}))
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
    report = lint.run_lint(repo, {})
    assert triples(report) == [(NIGHTLY, line, "suite-entry") for line in (8, 9, 10, 11)]
    messages = [f.message for f in report.findings]
    assert "no such file" in messages[0]
    assert "not a recipe script" in messages[1]
    assert "absolute path" in messages[2]
    assert "outside the repository" in messages[3]


def test_cluster_config_nodes(repo: Path) -> None:
    write(repo, SFT, script("NUM_NODES=2", "GPUS_PER_NODE=8", "NUM_RUNS=1", "NUM_MINUTES=60"))
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (SFT, 6, "cluster-config")
    assert "1n8g" in finding.message and "NUM_NODES=2" in finding.message


def test_cluster_config_default_gpus(repo: Path) -> None:
    write(repo, VLM, script("NUM_NODES=1", "NUM_RUNS=1", "NUM_MINUTES=30"))
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (VLM, CONFIG_LINE, "cluster-config")
    assert "GPUS_PER_NODE=8 (the default)" in finding.message


def test_cluster_yaml_local(repo: Path) -> None:
    write(repo, GRPO_YAML, "defaults:\n  - ../../grpo_math_1B.yaml\ncluster:\n  num_nodes: 4\n")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (GRPO_YAML, 4, "cluster-yaml")
    assert "cluster.num_nodes=4" in finding.message and "2n8g" in finding.message


def test_cluster_yaml_inherited(repo: Path) -> None:
    write(repo, "examples/configs/sft.yaml", "cluster:\n  gpus_per_node: 4\n  num_nodes: 1\n")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (SFT_YAML, None, "cluster-yaml")
    assert "inherited from examples/configs/sft.yaml:2" in finding.message


def test_cluster_yaml_later_parent_wins(repo: Path) -> None:
    write(repo, "examples/configs/four.yaml", "cluster:\n  num_nodes: 4\n")
    write(repo, SFT_YAML, "defaults: [../../four.yaml, ../../sft.yaml]\n")
    assert lint.run_lint(repo, {}).findings == ()
    write(repo, SFT_YAML, "defaults: [../../sft.yaml, ../../four.yaml]\n")
    assert triples(lint.run_lint(repo, {})) == [(SFT_YAML, None, "cluster-yaml")]


def test_cluster_yaml_ignores_interpolations(repo: Path) -> None:
    write(repo, GRPO_YAML, "cluster:\n  num_nodes: ${oc.env:NODES}\n  gpus_per_node: '8'\n")
    assert lint.run_lint(repo, {}).findings == ()


CONTEXT = "tests/test_suites/llm/grpo-deepscaler-1.5b-8K.sh"
CONTEXT_YAML = "examples/configs/recipes/llm/grpo-deepscaler-1.5b-8K.yaml"


def add_context_recipe(repo: Path, text: str, yaml_text: str = "grpo: {}\n") -> None:
    write(repo, CONTEXT, text)
    write(repo, CONTEXT_YAML, yaml_text)
    write(repo, NIGHTLY, NIGHTLY_TEXT + CONTEXT + "\n")


def test_context_length_with_hardware_is_clean(repo: Path) -> None:
    add_context_recipe(repo, script("NUM_NODES=1", "GPUS_PER_NODE=8", "NUM_MINUTES=60"))
    assert lint.run_lint(repo, {}).findings == ()


def test_context_hardware(repo: Path) -> None:
    add_context_recipe(repo, script("NUM_NODES=1", "NUM_MINUTES=60"))
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (CONTEXT, CONFIG_LINE, "context-hardware")
    assert "GPUS_PER_NODE" in finding.message and "8K" in finding.message


def test_context_length_yaml_compared_with_config(repo: Path) -> None:
    add_context_recipe(
        repo, script("NUM_NODES=2", "GPUS_PER_NODE=8", "NUM_MINUTES=60"), "cluster:\n  num_nodes: 1\n"
    )
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (CONTEXT_YAML, 2, "cluster-yaml")
    assert "CONFIG has 2n8g" in finding.message


def test_config(repo: Path) -> None:
    write(repo, SFT, script("NUM_NODES=1", "NUM_RUNS=$(date)", "NUM_MINUTES=60"))
    assert triples(lint.run_lint(repo, {})) == [(SFT, 7, "config")]


def test_config_missing_block(repo: Path) -> None:
    write(repo, SFT, "#!/bin/bash\necho no config\n")
    report = lint.run_lint(repo, {})
    assert [(f.path, f.rule) for f in report.findings] == [(SFT, "config")]


def test_config_ignores_callers_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUM_NODES", "7")
    assert lint.run_lint(repo, {}).findings == ()


# ---------------------------------------------------------------- budgets


def test_budget_within(repo: Path) -> None:
    assert lint.run_lint(repo, {"nightly": 73}).findings == ()


def test_budget_exceeded(repo: Path) -> None:
    finding = only(lint.run_lint(repo, {"nightly": 72}))
    assert (finding.path, finding.line, finding.rule) == (NIGHTLY, None, "budget")
    assert "73" in finding.message and "72" in finding.message


def test_budget_unknown_suite(repo: Path) -> None:
    finding = only(lint.run_lint(repo, {"weekly": 10}))
    assert (finding.path, finding.line, finding.rule) == ("tests/test_suites/weekly.txt", None, "budget")
    assert "nightly" in finding.message


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


# ---------------------------------------------------------------- rendering


def test_render_text_sorted_by_path_then_line(repo: Path) -> None:
    (repo / SFT_YAML).unlink()
    write(repo, NIGHTLY, NIGHTLY_TEXT + "b.sh\na.sh\n")
    text = lint.render(lint.run_lint(repo, {}), "text")
    assert text.splitlines() == [
        f"{SFT}: yaml-missing: no YAML mirror {SFT_YAML}",
        f"{NIGHTLY}:8: suite-entry: b.sh: no such file",
        f"{NIGHTLY}:9: suite-entry: a.sh: no such file",
    ]


def test_render_json(repo: Path) -> None:
    (repo / SFT_YAML).unlink()
    payload = json.loads(lint.render(lint.run_lint(repo, {}), "json"))
    assert payload["findings"] == [
        {"path": SFT, "line": None, "rule": "yaml-missing", "message": f"no YAML mirror {SFT_YAML}"}
    ]
    assert payload["summary"]["findings"] == 1
    assert payload["summary"]["by_rule"] == {"yaml-missing": 1}


def test_render_unknown_format(repo: Path) -> None:
    with pytest.raises(UsageProblem):
        lint.render(lint.run_lint(repo, {}), "xml")


def test_rules_are_documented() -> None:
    assert {"name", "placement", "yaml-missing", "yaml-orphan", "suite-missing", "suite-duplicate",
            "suite-entry", "cluster-config", "cluster-yaml", "context-hardware", "config",
            "budget"} <= set(lint.RULES)


# ---------------------------------------------------------------- robustness


def test_empty_directory(tmp_path: Path) -> None:
    assert triples(lint.run_lint(tmp_path, {"nightly": 1})) == [("tests/test_suites", None, "layout")]


def test_missing_root(tmp_path: Path) -> None:
    assert triples(lint.run_lint(tmp_path / "nope", {})) == [(".", None, "layout")]


def test_suites_folder_is_a_file(tmp_path: Path) -> None:
    write(tmp_path, "tests/test_suites", "not a folder")
    assert triples(lint.run_lint(tmp_path, {})) == [("tests/test_suites", None, "layout")]


def test_missing_recipes_folder(repo: Path) -> None:
    shutil.rmtree(repo / "examples")
    assert triples(lint.run_lint(repo, {})) == [("examples/configs/recipes", None, "layout")]


def test_no_suites_and_no_vlm_folder(tmp_path: Path) -> None:
    (tmp_path / "tests/test_suites/llm").mkdir(parents=True)
    assert lint.run_lint(tmp_path, {}).findings == ()


def test_invalid_yaml(repo: Path) -> None:
    write(repo, SFT_YAML, "defaults: ../../sft.yaml\ncluster: [1, 2\n")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.rule) == (SFT_YAML, "yaml-invalid")
    assert finding.line is not None


def test_yaml_not_a_mapping(repo: Path) -> None:
    write(repo, SFT_YAML, "- a\n- b\n")
    assert triples(lint.run_lint(repo, {})) == [(SFT_YAML, 1, "yaml-invalid")]


def test_empty_yaml_is_fine(repo: Path) -> None:
    write(repo, SFT_YAML, "")
    assert lint.run_lint(repo, {}).findings == ()


def test_binary_script(repo: Path) -> None:
    write(repo, SFT, b"\x7fELF\x00\x01\x02")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (SFT, None, "file")
    assert "binary" in finding.message


def test_non_utf8_script(repo: Path) -> None:
    write(repo, SFT, SFT_SCRIPT.replace("source", "sourc\xe9").encode("latin-1"))
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == (SFT, 3, "file")
    assert "UTF-8" in finding.message


def test_non_utf8_yaml_and_suite(repo: Path) -> None:
    write(repo, SFT_YAML, b"cluster:\n  name: \xff\n")
    write(repo, "tests/test_suites/weekly.txt", b"\xfe\xff\n")
    assert triples(lint.run_lint(repo, {})) == [
        (SFT_YAML, 2, "file"),
        ("tests/test_suites/weekly.txt", 1, "file"),
    ]


def test_directory_named_like_a_script(repo: Path) -> None:
    (repo / "tests/test_suites/llm/x.sh").mkdir()
    (repo / "tests/test_suites/llm/sft-run-output").mkdir()  # experiment folders are ignored
    write(repo, "tests/test_suites/llm/sft-run-output/inner.sh", "garbage")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == ("tests/test_suites/llm/x.sh", None, "file")
    assert "directory" in finding.message


def test_directory_named_like_a_suite(repo: Path) -> None:
    (repo / "tests/test_suites/weekly.txt").mkdir()
    assert triples(lint.run_lint(repo, {})) == [("tests/test_suites/weekly.txt", None, "file")]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop(repo: Path) -> None:
    os.symlink("loop.sh", repo / "tests/test_suites/llm/loop.sh")
    os.symlink("loop.yaml", repo / "examples/configs/recipes/llm/loop.yaml")
    assert triples(lint.run_lint(repo, {})) == [
        ("examples/configs/recipes/llm/loop.yaml", None, "file"),
        ("examples/configs/recipes/llm/loop.yaml", None, "yaml-orphan"),
        ("tests/test_suites/llm/loop.sh", None, "file"),
    ]


def test_symlinked_script_is_read_through(repo: Path) -> None:
    real = repo / "elsewhere.sh"
    (repo / SFT).rename(real)
    os.symlink(real, repo / SFT)
    assert lint.run_lint(repo, {}).findings == ()


def test_unreadable_script(repo: Path) -> None:
    (repo / SFT).chmod(0)
    # root (as in CI) still reads a mode-000 file: then there is nothing to report
    expected = [] if os.geteuid() == 0 else [(SFT, None, "file")]
    assert triples(lint.run_lint(repo, {})) == expected


def test_defaults_cycle(repo: Path) -> None:
    write(repo, "examples/configs/sft.yaml", "defaults: sft_base.yaml\ncluster:\n  num_nodes: 1\n")
    write(repo, "examples/configs/sft_base.yaml", "defaults: sft.yaml\n")
    finding = only(lint.run_lint(repo, {}))
    assert (finding.path, finding.line, finding.rule) == ("examples/configs/sft_base.yaml", 1, "yaml-defaults")
    assert "cycle" in finding.message and "examples/configs/sft.yaml" in finding.message


def test_defaults_self_cycle_with_inherited_key(repo: Path) -> None:
    write(repo, SFT_YAML, "defaults: sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.yaml\n")
    assert triples(lint.run_lint(repo, {})) == [(SFT_YAML, 1, "yaml-defaults")]


def test_defaults_missing_parent(repo: Path) -> None:
    write(repo, SFT_YAML, "defaults:\n  - ../../sft.yaml\n  - ../../nope.yaml\n  - 3\n  - ../../../../../etc/x.yaml\n")
    report = lint.run_lint(repo, {})
    assert triples(report) == [(SFT_YAML, line, "yaml-defaults") for line in (3, 4, 5)]
    assert "not found" in report.findings[0].message
    assert "outside the repository" in report.findings[2].message


def test_defaults_wrong_type(repo: Path) -> None:
    write(repo, SFT_YAML, "defaults:\n  a: b\n")
    assert triples(lint.run_lint(repo, {})) == [(SFT_YAML, 2, "yaml-defaults")]


def test_defaults_parent_invalid(repo: Path) -> None:
    write(repo, "examples/configs/sft.yaml", "cluster: {\n")
    report = lint.run_lint(repo, {})
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
    lint.run_lint(repo, {"nightly": 100})
    assert len(opened) == len(set(opened))


# ---------------------------------------------------------------- the repository itself

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_repository_is_lint_clean() -> None:
    report = lint.run_lint(REPO_ROOT, {})
    assert lint.render(report, "text") == ""
    assert report.scripts > 0 and report.suites > 0


def test_defaults_cycle_through_a_symlink(repo: Path) -> None:
    os.symlink(Path(SFT_YAML).name, repo / "examples/configs/recipes/llm/link.yaml")
    write(repo, SFT_YAML, "defaults: link.yaml\n")
    report = lint.run_lint(repo, {})
    assert {f.rule for f in report.findings} == {"yaml-defaults"}
    assert all("cycle" in f.message for f in report.findings)


def test_undecodable_file_name(repo: Path) -> None:
    os.close(os.open(os.path.join(os.fsencode(repo / "tests/test_suites/llm"), b"sft-\xff-1n8g-x.sh"),
                     os.O_CREAT | os.O_WRONLY))
    report = lint.run_lint(repo, {})
    assert {f.rule for f in report.findings} == {"config", "suite-missing", "yaml-missing"}
    lint.render(report, "text").encode("utf-8")
    json.loads(lint.render(report, "json"))


def test_fifo_is_never_opened(repo: Path) -> None:
    os.mkfifo(repo / "tests/test_suites/llm/fifo.sh")
    os.mkfifo(repo / "tests/test_suites/weekly.txt")
    assert triples(lint.run_lint(repo, {})) == [
        ("tests/test_suites/llm/fifo.sh", None, "file"),
        ("tests/test_suites/weekly.txt", None, "file"),
    ]


# ---------------------------------------------------------------- the `nrl-launch lint` command


def invoke(*args: str):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from nrl_launch.cli import main

    return CliRunner().invoke(main, ["lint", *args])


def test_cli_clean(repo: Path) -> None:
    result = invoke("--root", str(repo))
    assert result.exit_code == 0, result.output
    assert "rule" not in result.output


def test_cli_findings_exit_1(repo: Path) -> None:
    (repo / SFT_YAML).unlink()
    result = invoke("--root", str(repo))
    assert result.exit_code == 1
    assert f"{SFT}: yaml-missing: no YAML mirror {SFT_YAML}" in result.output


def test_cli_json(repo: Path) -> None:
    (repo / SFT_YAML).unlink()
    result = invoke("--root", str(repo), "--format", "json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert [(f["path"], f["line"], f["rule"]) for f in payload["findings"]] == [(SFT, None, "yaml-missing")]


def test_cli_budget(repo: Path) -> None:
    assert invoke("--root", str(repo), "--budget", "nightly=73").exit_code == 0
    result = invoke("--root", str(repo), "--budget", "nightly=72")
    assert result.exit_code == 1
    assert f"{NIGHTLY}: budget: suite 'nightly' needs 73 GPU-hours, over its budget of 72" in result.output
    result = invoke("--root", str(repo), "--budget", "nightly=10", "--budget", "weekly=5")
    assert result.exit_code == 1
    assert "tests/test_suites/weekly.txt: budget:" in result.output


def test_cli_bad_budget_is_a_usage_error(repo: Path) -> None:
    result = invoke("--root", str(repo), "--budget", "nightly")
    assert result.exit_code == 2
    assert "SUITE=HOURS" in result.output


def test_cli_empty_root(tmp_path: Path) -> None:
    result = invoke("--root", str(tmp_path))
    assert result.exit_code == 1
    assert "tests/test_suites: layout:" in result.output
    assert "Traceback" not in result.output
