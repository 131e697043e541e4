"""The recipe folder layout: where suites, recipe scripts and their YAML live.

The one home for these paths. ``nrl-launch lint`` builds a :class:`Layout`
from ``[tool.nrl-launch.lint]`` (see docs/lint.md); ``nrl-launch status`` uses
:data:`DEFAULT_LAYOUT`. All paths are POSIX and relative to the repository root.

* The **suite folder** (``tests/test_suites``) holds the suite files
  ``<name>.txt``.
* The **recipe roots** (``tests/test_suites/llm``, ``tests/test_suites/vlm``)
  are folders inside the suite folder holding recipe scripts ``*.sh``, nested
  folders included. A root's path below the suite folder is its **kind**
  (``llm``, ``vlm``).
* The **YAML mirror root** (``examples/configs/recipes``) mirrors the suite
  folder: the recipe ``<suite folder>/<p>.sh`` has its YAML at
  ``<YAML root>/<p>.yaml`` (``tests/test_suites/llm/performance/x.sh`` ->
  ``examples/configs/recipes/llm/performance/x.yaml``).
* A recipe ``<folder>/<stem>.sh`` writes its outputs (logs, checkpoints) to the
  **output folder** ``<folder>/<stem>/``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

_SUITE_COMMENT_RE = re.compile(r"(?:^|\s)#.*$")


def parse_suite(text: str) -> list[tuple[int, str]]:
    """``(line number, entry)`` of a suite file's text: one recipe script per
    line, relative to the repository root; ``#`` starts a comment (whole-line,
    or trailing after a blank); blank lines are ignored."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        entry = _SUITE_COMMENT_RE.sub("", raw).strip()
        if entry:
            entries.append((number, entry))
    return entries


@dataclass(frozen=True)
class Layout:
    """Where a repository keeps suites, recipes and recipe YAMLs (module docstring)."""

    suite_dir: str = "tests/test_suites"
    recipe_roots: tuple[str, ...] = ("tests/test_suites/llm", "tests/test_suites/vlm")
    yaml_root: str = "examples/configs/recipes"

    def __post_init__(self) -> None:
        # The configuration layer reports these with file and line; reaching
        # here with a bad layout is a programming error.
        for root in self.recipe_roots:
            if not inside(root, self.suite_dir):
                raise ValueError(f"recipe root {root!r} is not inside the suite folder {self.suite_dir!r}")

    @property
    def kinds(self) -> tuple[str, ...]:
        """Each recipe root's path below the suite folder (``("llm", "vlm")``)."""
        return tuple(posixpath.relpath(root, self.suite_dir) for root in self.recipe_roots)

    @property
    def yaml_roots(self) -> tuple[str, ...]:
        """The YAML mirror of each recipe root (``examples/configs/recipes/llm``…)."""
        return tuple(f"{self.yaml_root}/{kind}" for kind in self.kinds)

    def suite_file(self, name: str) -> str:
        """The suite file of suite ``name`` (``tests/test_suites/nightly.txt``)."""
        return f"{self.suite_dir}/{name}.txt"

    def root_of(self, rel: str) -> str | None:
        """The recipe root that contains ``rel``, or None."""
        return next((root for root in self.recipe_roots if inside(rel, root) and rel != root), None)

    def kind_of(self, rel: str) -> str | None:
        """The kind of the recipe root that contains ``rel``, or None."""
        root = self.root_of(rel)
        return None if root is None else posixpath.relpath(root, self.suite_dir)

    def yaml_for(self, script_rel: str) -> str:
        """The YAML mirror of a recipe script inside the suite folder."""
        below = posixpath.relpath(script_rel, self.suite_dir)
        return f"{self.yaml_root}/{below.removesuffix('.sh')}.yaml"

    def script_for(self, yaml_rel: str) -> str:
        """The recipe script a YAML under the mirror root mirrors."""
        below = posixpath.relpath(yaml_rel, self.yaml_root)
        return f"{self.suite_dir}/{below.removesuffix('.yaml')}.sh"

    @staticmethod
    def output_dir(script_rel: str) -> str:
        """The folder a recipe writes its outputs to: ``<folder>/<stem>``."""
        return script_rel.removesuffix(".sh")


def inside(rel: str, folder: str) -> bool:
    """True when the relative POSIX path ``rel`` is ``folder`` or below it."""
    return rel == folder or rel.startswith(folder.rstrip("/") + "/")


DEFAULT_LAYOUT = Layout()
