"""A recipe whose path holds a newline or another control character is refused with one error line
before anything is made (issue 22 item 4): its stdout lines, snapshot folder and job name would break."""

from __future__ import annotations

import pytest

from testkit import BASE_ENV, FakeSlurm, Project, recipe_text, run_cli


@pytest.mark.parametrize("dryrun", ["1", "2", "0"])
@pytest.mark.parametrize(("name", "shown"), [("a\nb", "\\n"), ("a\tb", "\\t"), ("a\x1b[31mb", "\\x1b"),
                                             ("a\x7fb", "\\x7f")])
def test_a_recipe_name_with_a_control_character_is_one_error_line(project: Project, fake_slurm: FakeSlurm,
                                                                 dryrun: str, name: str, shown: str) -> None:
    script = project.root / "tests" / "test_suites" / "llm" / f"{name}.sh"
    script.parent.mkdir(parents=True)
    script.write_text(recipe_text("NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"))
    project.commit("a recipe with an odd name")
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": dryrun}, slurm=fake_slurm)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()  # one line, the name shown escaped
    assert line.startswith("[ERROR]: ") and shown in line and "control character" in line
    assert fake_slurm.calls == [] and not (project.root / "code_snapshots").exists()


def test_a_folder_with_a_control_character_is_refused_too(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.root / "tests" / "odd\nfolder" / "sft-a.sh"
    script.parent.mkdir(parents=True)
    script.write_text(recipe_text("NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"))
    project.commit("a recipe in an odd folder")
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "1"}, slurm=fake_slurm)
    assert (result.exit_code, result.stdout, len(result.stderr.splitlines())) == (1, "", 1)


def test_names_that_are_only_unusual_still_launch(project: Project, fake_slurm: FakeSlurm) -> None:
    # a space, non-ASCII letters and a byte that is not UTF-8 are no control characters
    scripts = []
    for name in ("sft a", "sft-é", "sft-\udcff"):
        path = project.root / "tests" / "test_suites" / "llm" / f"{name}.sh"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(recipe_text("NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"))
        scripts.append(str(path))
    result = run_cli("launch", *scripts, env={**BASE_ENV, "DRYRUN": "1"}, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
