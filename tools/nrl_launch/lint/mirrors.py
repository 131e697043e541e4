"""YAML mirrors: every recipe script has its YAML and every recipe YAML its
script (``yaml-missing``, ``yaml-orphan``), and a recipe YAML derives from its
algo's base YAML (``yaml-base``).

A YAML under the mirror roots without a script is not an orphan when another
YAML names it in ``defaults:``: it is a shared parent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nrl_launch.lint.files import FileReader
from nrl_launch.lint.options import LintConfig
from nrl_launch.lint.recipes import Recipe
from nrl_launch.lint.report import Collector
from nrl_launch.lint.yamltree import YamlTree


def check_mirrors(reader: FileReader, collector: Collector, config: LintConfig, recipes: Mapping[str, Recipe],
                  tree: YamlTree) -> dict[str, str]:
    """Load every recipe YAML into ``tree``, check the mirrors both ways and the
    base YAMLs; returns recipe rel -> its YAML's absolute path."""
    layout = config.layout
    if not os.path.isdir(reader.abs(layout.yaml_root)):
        if recipes:
            collector.add(layout.yaml_root, None, "layout", "no YAML mirror root here: YAML mirrors not checked "
                                                            "(yaml-root in pyproject.toml)")
        return {}
    yamls: dict[str, str] = {}
    for root in layout.yaml_roots:
        if os.path.isdir(reader.abs(root)):
            yamls.update((rel, reader.abs(rel)) for rel in reader.find(root, ".yaml", skip_outputs=False))
    for abs_path in yamls.values():
        tree.load(abs_path)
    tree.check_cycles()
    referenced = tree.referenced()
    for rel, abs_path in yamls.items():
        script = layout.script_for(rel)
        if script not in recipes and os.path.normpath(abs_path) not in referenced:
            collector.add(rel, None, "yaml-orphan", f"no script {script}, and no YAML names this one in defaults:")
    mirrored = {}
    for recipe in recipes.values():
        yaml_rel = layout.yaml_for(recipe.rel)
        if yaml_rel in yamls:
            mirrored[recipe.rel] = yamls[yaml_rel]
        else:
            collector.add(recipe.rel, None, "yaml-missing", f"no YAML mirror {yaml_rel}")
    _check_bases(reader, collector, config, recipes, tree, mirrored)
    return mirrored


def _check_bases(reader: FileReader, collector: Collector, config: LintConfig, recipes: Mapping[str, Recipe],
                 tree: YamlTree, mirrored: Mapping[str, str]) -> None:
    """``yaml-base``: the recipe YAML inherits (directly or not) one of its algo's base YAMLs."""
    for rel, yaml_abs in mirrored.items():
        algo = recipes[rel].algo
        bases = config.algos.get(algo, ())
        if not bases or tree.docs.get(os.path.normpath(yaml_abs)) is None:
            continue  # no base configured, or the YAML is unusable (already a finding)
        ancestors = tree.ancestors(yaml_abs)
        if any(os.path.normpath(reader.abs(base)) in ancestors for base in bases):
            continue
        inherits = ", ".join(sorted(reader.rel(a) for a in ancestors)) or "nothing (no defaults:)"
        wanted = " or ".join(bases)
        collector.add(reader.rel(yaml_abs), tree.defaults_line(yaml_abs), "yaml-base",
                      f"'{algo}' recipes derive from {wanted} ([tool.nrl-launch.lint.algos]), but this YAML "
                      f"inherits {inherits}")
