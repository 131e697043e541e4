"""The recipe scripts of a repository: found, read once, name parsed, CONFIG evaluated.

CONFIG blocks are evaluated with :func:`nrl_launch.bashcfg.config.parse_recipe` and an
empty environment: the linter checks what the recipe says, not what the
caller's environment would make of it, and its GPU-hours are the ones
``DRYRUN=1 tools/launch`` prints in such an environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from nrl_launch.bashcfg.config import RecipeConfig, parse_recipe
from nrl_launch.errors import ConfigError
from nrl_launch.lint.files import FileReader
from nrl_launch.lint.report import Collector
from nrl_launch.recipes.layout import Layout
from nrl_launch.recipes.names import RecipeName, RecipeNameError, algo_of, parse_name


@dataclass(frozen=True)
class Recipe:
    """One recipe script and what could be learnt from it (None: unusable)."""

    rel: str
    root: str  # the recipe root it lies under, or the suite folder
    text: str | None
    name: RecipeName | None
    name_error: str | None
    config: RecipeConfig | None

    @property
    def filename(self) -> str:
        """The script's file name."""
        return self.rel.rsplit("/", 1)[-1]

    @property
    def algo(self) -> str:
        """The name's first token (``vlm_grpo``), even when the name does not parse."""
        return algo_of(self.filename)

    def line_of(self, key: str) -> int | None:
        """Line of the last ``KEY=`` assignment in the CONFIG block, else its marker line."""
        if self.config is None:
            return None
        return self.config.assignment_lines.get(key, self.config.config_line)


def load_recipes(reader: FileReader, collector: Collector, layout: Layout, explicit_roots: bool) -> dict[str, Recipe]:
    """Every ``*.sh`` under the suite folder (recursively: in the recipe roots,
    directly in the suite folder or in any other folder of it), by repo-relative path.

    A missing recipe root is a ``layout`` finding when the configuration names
    it (``explicit_roots``); the default roots may be absent.
    """
    tops = [layout.suite_dir]
    for root in layout.recipe_roots:
        root_abs = reader.abs(root)
        if not os.path.isdir(root_abs):
            if explicit_roots or os.path.lexists(root_abs):
                problem = "not a folder" if os.path.lexists(root_abs) else "no such folder"
                origin = ", but recipe-roots in pyproject.toml names it" if explicit_roots else ""
                collector.add(root, None, "layout", f"recipe root: {problem}{origin}")
        elif os.path.islink(root_abs):
            tops.append(root)  # a scan does not follow symlinked folders, but a root may be one
    recipes: dict[str, Recipe] = {}
    for top in tops:
        for rel in reader.find(top, ".sh", skip_outputs=True):
            if rel not in recipes and reader.is_regular(reader.abs(rel), rel):
                recipes[rel] = _load(reader, collector, layout.root_of(rel) or layout.suite_dir, rel)
    return recipes


def _load(reader: FileReader, collector: Collector, root: str, rel: str) -> Recipe:
    text = reader.read(reader.abs(rel), rel)
    filename = rel.rsplit("/", 1)[-1]
    try:
        name, name_error = parse_name(filename), None
    except RecipeNameError as exc:
        name, name_error = None, exc.reason
    config = None if text is None else _evaluate(collector, rel, text)
    return Recipe(rel=rel, root=root, text=text, name=name, name_error=name_error, config=config)


def _evaluate(collector: Collector, rel: str, text: str) -> RecipeConfig | None:
    """The CONFIG block, or None with a ``config`` finding."""
    try:
        return parse_recipe(text, rel, {})
    except ConfigError as exc:
        collector.add(rel, exc.line, "config", exc.message)
    except Exception as exc:  # an evaluator bug must not abort the whole lint
        collector.add(rel, None, "config", f"CONFIG evaluation failed: {type(exc).__name__}: {exc}")
    return None
