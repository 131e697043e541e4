"""The recipe folder layout (nrl_launch.recipes.layout): which path lies inside
which folder, and what that makes of a recipe (its root, its kind, its YAML)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lintkit import script, where, write

from nrl_launch import lint
from nrl_launch.recipes.layout import Layout, inside

INSIDE = [  # (path, folder, inside)
    ("llm", "llm", True),
    ("llm/x.sh", "llm", True),
    ("llm/a/b/x.sh", "llm", True),
    ("llm/x.sh", "llm/", True),
    ("llm2/x.sh", "llm", False),  # a sibling folder whose name starts alike
    ("llm2", "llm", False),
    ("llm.sh", "llm", False),
    ("llm-old/x.sh", "llm", False),
    ("ll/x.sh", "llm", False),
    ("tests/test_suites/llm2/x.sh", "tests/test_suites/llm", False),
    ("tests/test_suites/llm/x.sh", "tests/test_suites/llm", True),
    ("tests/test_suites/llm", "tests/test_suites", True),
    ("tests/test_suitesX/llm", "tests/test_suites", False),
    ("x/llm/y.sh", "llm", False),  # the folder must be a prefix, not any part
    ("", "llm", False),
]


@pytest.mark.parametrize(("rel", "folder", "expected"), INSIDE)
def test_inside_compares_whole_path_components(rel: str, folder: str, expected: bool) -> None:
    assert inside(rel, folder) is expected


LAYOUT = Layout(suite_dir="tests/test_suites", recipe_roots=("tests/test_suites/llm", "tests/test_suites/vlm"))


@pytest.mark.parametrize(("rel", "root", "kind"), [
    ("tests/test_suites/llm/x.sh", "tests/test_suites/llm", "llm"),
    ("tests/test_suites/llm/performance/x.sh", "tests/test_suites/llm", "llm"),
    ("tests/test_suites/vlm/x.sh", "tests/test_suites/vlm", "vlm"),
    ("tests/test_suites/llm2/x.sh", None, None),
    ("tests/test_suites/vlm_old/x.sh", None, None),
    ("tests/test_suites/x.sh", None, None),
    ("tests/test_suites/llm", None, None),  # the root itself holds no recipe of its own name
])
def test_root_and_kind_of_a_path(rel: str, root: str | None, kind: str | None) -> None:
    assert (LAYOUT.root_of(rel), LAYOUT.kind_of(rel)) == (root, kind)


def test_yaml_mirror_both_ways() -> None:
    yaml = "examples/configs/recipes/llm/performance/x.yaml"
    assert LAYOUT.yaml_for("tests/test_suites/llm/performance/x.sh") == yaml
    assert LAYOUT.script_for("examples/configs/recipes/llm2/x.yaml") == "tests/test_suites/llm2/x.sh"


def test_a_root_outside_the_suite_folder_is_refused() -> None:
    with pytest.raises(ValueError, match="not inside the suite folder"):
        Layout(suite_dir="tests/test_suites", recipe_roots=("tests/test_suites2/llm",))


def test_sibling_roots_with_a_common_prefix_do_not_overlap(tmp_path: Path) -> None:
    # "llm" and "llm2" are two recipe roots, and a vlm_ recipe in "vlm2/" is not under "vlm/"
    write(tmp_path, "pyproject.toml", """\
[tool.nrl-launch.lint]
recipe-roots = ["tests/test_suites/llm", "tests/test_suites/llm2", "tests/test_suites/vlm", "tests/test_suites/vlm2"]
""")
    body = script("NUM_NODES=1", "NUM_MINUTES=60")
    recipes = ["llm/grpo-a-1n8g-fsdp2tp1", "llm2/grpo-b-1n8g-fsdp2tp1", "vlm/vlm_grpo-c-1n8g-fsdp2tp1",
               "vlm2/vlm_grpo-d-1n8g-fsdp2tp1"]
    for rel in recipes:
        write(tmp_path, f"tests/test_suites/{rel}.sh", body)
        write(tmp_path, f"examples/configs/recipes/{rel}.yaml", "cluster:\n  num_nodes: 1\n")
    write(tmp_path, "tests/test_suites/nightly.txt", "".join(f"tests/test_suites/{rel}.sh\n" for rel in recipes))
    assert where(lint.run_lint(tmp_path)) == [
        ("tests/test_suites/vlm2/vlm_grpo-d-1n8g-fsdp2tp1.sh", None, "placement")]
