"""``nrl-launch lint``: formats, exit status, --strict, --budget, --exec-dryrun,
and finding the repository from any folder."""

from __future__ import annotations

import json
from pathlib import Path

import lintkit
import pytest
from lintkit import CONTEXT, GB200, SFT, SUITES_DIR, write

from testkit import git, run_cli

NIGHTLY = f"{SUITES_DIR}/nightly.txt"


@pytest.fixture
def realworld(tmp_path: Path) -> Path:
    return lintkit.build_realworld(tmp_path / "repo")


def one_error_one_warning(root: Path) -> None:
    (root / SFT.yaml_rel).unlink()  # error: yaml-missing
    write(root, CONTEXT.rel, (root / CONTEXT.rel).read_text().replace("GPUS_PER_NODE=8\n", ""))  # warning


def test_clean_prints_only_the_summary(realworld: Path) -> None:
    result = run_cli("lint", "--root", str(realworld))
    assert result.exit_code == 0, result.output
    files = 2 * len(lintkit.RECIPES) + len(lintkit.BASES) - len(lintkit.UNUSED_BASES) + len(lintkit.SUITE_NAMES)
    assert result.output == f"0 errors, 0 warnings in {files} files\n"


def test_text_format(realworld: Path) -> None:
    one_error_one_warning(realworld)
    result = run_cli("lint", "--root", str(realworld))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[:-1] == [
        f"{CONTEXT.rel}:{lintkit.CONFIG_LINE}: warning: a context-length name (8K) does not say the hardware, so "
        "CONFIG must: assign GPUS_PER_NODE  [context-hardware]",
        f"{SFT.rel}: error: no YAML mirror {SFT.yaml_rel}  [yaml-missing]",
    ]
    assert lines[-1].startswith("1 error, 1 warning in ")


def test_warnings_fail_only_with_strict(realworld: Path) -> None:
    write(realworld, CONTEXT.rel, (realworld / CONTEXT.rel).read_text().replace("GPUS_PER_NODE=8\n", ""))
    assert run_cli("lint", "--root", str(realworld)).exit_code == 0
    assert run_cli("lint", "--root", str(realworld), "--strict").exit_code == 1


def test_json_format_keeps_stdout_one_document(realworld: Path) -> None:
    one_error_one_warning(realworld)
    result = run_cli("lint", "--root", str(realworld), "--format", "json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert [(f["path"], f["rule"], f["severity"]) for f in payload["findings"]] == [
        (CONTEXT.rel, "context-hardware", "warning"), (SFT.rel, "yaml-missing", "error")]
    assert (payload["summary"]["errors"], payload["summary"]["warnings"]) == (1, 1)
    assert payload["summary"]["by_rule"] == {"context-hardware": 1, "yaml-missing": 1}
    assert result.stderr.startswith("1 error, 1 warning in ")


def test_github_format(realworld: Path) -> None:
    one_error_one_warning(realworld)
    write(realworld, NIGHTLY, (realworld / NIGHTLY).read_text() + "tests/test_suites/llm/a,b:c%.sh\n")
    result = run_cli("lint", "--root", str(realworld), "--format", "github")
    lines = result.output.splitlines()
    line = lintkit.suite_text("nightly").count("\n") + 1
    assert lines[:-1] == [
        f"::warning file={CONTEXT.rel},line={lintkit.CONFIG_LINE},title=nrl-lint context-hardware::a context-length "
        "name (8K) does not say the hardware, so CONFIG must: assign GPUS_PER_NODE",
        f"::error file={SFT.rel},title=nrl-lint yaml-missing::no YAML mirror {SFT.yaml_rel}",
        f"::error file={NIGHTLY},line={line},title=nrl-lint suite-entry::tests/test_suites/llm/a,b:c%25.sh: "
        "no such file",
    ]
    assert lines[-1].startswith("2 errors, 1 warning in ")


def test_budget_option_overrides_the_configured_budget(realworld: Path) -> None:
    total = lintkit.suite_total("nightly")
    assert run_cli("lint", "--root", str(realworld), "--budget", f"nightly={total}").exit_code == 0
    result = run_cli("lint", "--root", str(realworld), "--budget", f"nightly={total - 1}")
    assert result.exit_code == 1
    assert f"needs {total} GPU-hours, over its budget of {total - 1} (--budget)" in result.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["--budget", "nightly"], "--budget expects SUITE=HOURS"),
    (["--budget", "weekly=5"], "--budget weekly=…: no suite 'weekly'"),
    (["--budget", "disabled=5"], "suite 'disabled' is disabled"),
    (["--budget", "nightly=5", "--budget", "nightly=6"], "--budget given twice for suite 'nightly'"),
    (["--jobs", "2"], "--jobs and --timeout only apply with --exec-dryrun"),
    (["--format", "xml"], "'xml' is not one of"),
])
def test_usage_errors_exit_2(realworld: Path, args: list[str], fragment: str) -> None:
    result = run_cli("lint", "--root", str(realworld), *args)
    assert result.exit_code == 2
    assert result.output.startswith("[ERROR]: ") and fragment in result.output
    assert "Traceback" not in result.output


def test_configuration_error_names_pyproject(realworld: Path) -> None:
    write(realworld, "pyproject.toml", lintkit.pyproject() + '"tests/*" = ["no-such-rule"]\n')
    result = run_cli("lint", "--root", str(realworld))
    assert result.exit_code == 2
    lines = lintkit.pyproject().count("\n") + 1
    assert result.output.startswith(f"[ERROR]: pyproject.toml:{lines}: [tool.nrl-launch.lint.per-file-ignores] "
                                    "unknown rule 'no-such-rule'")


def test_exec_dryrun(realworld: Path) -> None:
    write(realworld, GB200.rel, (realworld / GB200.rel).read_text().replace("exit 0", "exit 5"))
    assert run_cli("lint", "--root", str(realworld)).exit_code == 0  # not run without the option
    result = run_cli("lint", "--root", str(realworld), "--exec-dryrun", "--jobs", "2", "--timeout", "20")
    assert result.exit_code == 1
    assert f"{GB200.rel}: error: TEST_DRYRUN=1 bash {GB200.rel} exited with status 5" in result.output


def test_finds_the_git_root_from_a_subfolder(realworld: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(realworld, "init", "-q")
    (realworld / SFT.yaml_rel).unlink()
    monkeypatch.chdir(realworld / SUITES_DIR / "llm" / "performance")
    result = run_cli("lint")
    assert result.exit_code == 1
    assert f"{SFT.rel}: error: no YAML mirror" in result.output


def test_outside_git_the_nearest_configuration_decides(realworld: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(realworld)
    assert run_cli("lint").exit_code == 0
    monkeypatch.chdir(realworld / SUITES_DIR)  # the pyproject.toml above has [tool.nrl-launch.lint]
    assert run_cli("lint").exit_code == 0
    (realworld / "pyproject.toml").unlink()  # no configuration anywhere up: the current folder is the root
    result = run_cli("lint")
    assert result.exit_code == 1
    assert result.output.startswith("tests/test_suites: error: no tests/test_suites/ folder")


def test_missing_root_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    result = run_cli("lint", "--root", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert result.output.startswith(".: error: ") and "Traceback" not in result.output


def test_a_configuration_below_the_git_root_decides_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q")
    write(outer, "pyproject.toml", "[tool.ruff]\nline-length = 100\n")
    repo = lintkit.build_realworld(outer / "projects" / "rl")
    write(repo, f"{SUITES_DIR}/pyproject.toml", "[project]\nname = 'not-a-lint-configuration'\n")  # passed over
    monkeypatch.chdir(repo / SUITES_DIR / "llm")
    result = run_cli("lint")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("0 errors, 0 warnings in ")
    (repo / SFT.yaml_rel).unlink()
    assert f"{SFT.rel}: error: no YAML mirror" in run_cli("lint").output  # paths relative to the configured root
    # without a configuration on the way up, the git root is linted
    (repo / "pyproject.toml").unlink()
    assert run_cli("lint").output.startswith("tests/test_suites: error: no tests/test_suites/ folder")


def test_an_unreadable_configuration_on_the_way_up_is_an_error(realworld: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    git(realworld, "init", "-q")
    write(realworld, f"{SUITES_DIR}/pyproject.toml", "[tool.nrl-launch.lint\n")
    monkeypatch.chdir(realworld / SUITES_DIR / "llm")
    result = run_cli("lint")
    assert result.exit_code == 2
    assert result.output.startswith("[ERROR]: ../pyproject.toml: invalid TOML: ")


def test_every_configuration_error_is_one_error_line(realworld: Path) -> None:
    body = lintkit.pyproject().replace('suite-dir = "tests/test_suites"', 'suite_dir = "tests/test_suites"').replace(
        'budget = 4741', 'budget = -1')
    write(realworld, "pyproject.toml", body)
    result = run_cli("lint", "--root", str(realworld))
    assert result.exit_code == 2
    lines = body.splitlines()
    key_line = lines.index('suite_dir = "tests/test_suites"') + 1
    budget_line = next(number for number, line in enumerate(lines, 1) if line.startswith("budget = -1"))
    assert result.output.splitlines() == [
        f"[ERROR]: pyproject.toml:{key_line}: [tool.nrl-launch.lint] "
        "unknown key 'suite_dir' (did you mean 'suite-dir'?); known: suite-dir, recipe-roots, yaml-root, "
        "yaml-requires-script, extra-node-keys, algos, base-check, base-extra-keys, suites, severity, per-file-ignores",
        f"[ERROR]: pyproject.toml:{budget_line}: "
        "[tool.nrl-launch.lint.suites.nightly] budget must be a whole number >= 0, got -1 (see 'nrl-launch lint "
        "--help')",
    ]


def test_every_bad_inline_comment_at_once(realworld: Path) -> None:
    write(realworld, SFT.rel, (realworld / SFT.rel).read_text() + "# nrl-lint: disable=everything\n")
    write(realworld, GB200.yaml_rel, "# nrl-lint: enable=name\n" + (realworld / GB200.yaml_rel).read_text())
    result = run_cli("lint", "--root", str(realworld), "--exec-dryrun")
    assert result.exit_code == 2
    assert [line.split(": ")[1] for line in result.output.splitlines()] == [
        f"{GB200.yaml_rel}:1", f"{SFT.rel}:{(realworld / SFT.rel).read_text().count(chr(10))}"]
