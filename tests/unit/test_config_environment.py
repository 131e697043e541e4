"""A wrong value that the CONFIG block read from the caller's environment is reported as the
environment's, not only as an error of the recipe's line (issue 22 item 8)."""

from __future__ import annotations

import pytest

from nrl_launch.bashcfg.config import parse_recipe
from nrl_launch.errors import ConfigError
from testkit import BASE_ENV, Project, run_cli

RECIPE = """#!/bin/bash
# ===== BEGIN CONFIG =====
NUM_NODES=${NUM_NODES:-1}
STEPS_PER_RUN=${STEPS_PER_RUN:-60}
MAX_STEPS=${MAX_STEPS:-120}
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))
NUM_MINUTES=240
# ===== END CONFIG =====
"""


@pytest.mark.parametrize(
    ("environ", "line", "message", "note"),
    [
        ({"NUM_NODES": "abc"}, 3, "NUM_NODES must be a positive integer, got 'abc'",
         "NUM_NODES='abc' comes from the environment"),
        ({"STEPS_PER_RUN": "0"}, 6, "division by 0", "STEPS_PER_RUN='0' comes from the environment"),
        ({"MAX_STEPS": "-5", "STEPS_PER_RUN": "2"}, 6, "NUM_RUNS must be a positive integer",
         "MAX_STEPS='-5', STEPS_PER_RUN='2' come from the environment"),
    ],
)
def test_a_wrong_value_from_the_environment_says_so(environ: dict[str, str], line: int, message: str,
                                                   note: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_recipe(RECIPE, "r.sh", environ)
    assert info.value.line == line
    assert message in str(info.value) and note in str(info.value), str(info.value)
    assert "unset or fix" in str(info.value)


def test_an_error_of_the_recipe_itself_says_nothing_of_the_environment() -> None:
    with pytest.raises(ConfigError) as info:
        parse_recipe(RECIPE.replace("${NUM_NODES:-1}", "abc"), "r.sh", {"MAX_STEPS": "40"})
    assert "environment" not in str(info.value)
    # an environment variable that is set but not what went wrong is not named either
    with pytest.raises(ConfigError) as info:
        parse_recipe(RECIPE.replace("NUM_MINUTES=240", "NUM_MINUTES=0"), "r.sh", {"NUM_NODES": "2"})
    assert "environment" not in str(info.value)


def test_through_the_launcher(project: Project) -> None:
    script = project.root / "tests" / "test_suites" / "llm" / "sft-a.sh"
    script.parent.mkdir(parents=True)
    script.write_text(RECIPE)
    project.commit("a recipe that reads the environment")
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "1", "STEPS_PER_RUN": "0"})
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"[ERROR]: {script}:6: ") and "STEPS_PER_RUN='0' comes from the environment" in line
