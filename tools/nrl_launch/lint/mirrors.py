"""YAML mirrors: every recipe script has its YAML and every recipe YAML its
script (``yaml-missing``, ``yaml-orphan``), and a recipe YAML agrees with its
algo's base YAML (``yaml-base``).

Every ``*.yaml`` under the YAML root is a recipe YAML. One without a script
is not an orphan when another YAML names it in ``defaults:`` (a shared
parent), unless ``yaml-requires-script`` asks every one to have its script.

What "agrees with its base YAML" means is the ``base-check`` key: with
``inherits`` the recipe YAML names the base in ``defaults:`` (at any depth);
with ``merges`` every key it sets, own or inherited, is a key of the base
(with the base's own ``defaults:`` merged in): an OmegaConf merge into the
base in struct mode succeeds, as upstream NeMo-RL's suite test checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nrl_launch.lint.files import FileReader
from nrl_launch.lint.options import MERGES, KeyPath, LintConfig
from nrl_launch.lint.recipes import Recipe
from nrl_launch.lint.report import Collector
from nrl_launch.lint.yamltree import KeyNode, YamlTree, unknown_keys

_KEYS_SHOWN = 3  # unknown keys named in a yaml-base message


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
    yamls = {rel: reader.abs(rel) for rel in reader.find(layout.yaml_root, ".yaml", skip_outputs=False)}
    for abs_path in yamls.values():
        tree.load(abs_path)
    tree.check_cycles()
    referenced = tree.referenced()
    for rel, abs_path in yamls.items():
        script = layout.script_for(rel)
        if script in recipes:
            continue
        if os.path.normpath(abs_path) not in referenced:
            collector.add(rel, None, "yaml-orphan", f"no script {script}, and no YAML names this one in defaults:")
        elif config.yaml_requires_script:
            collector.add(rel, None, "yaml-orphan", f"no script {script} (yaml-requires-script: every YAML under "
                                                    f"{layout.yaml_root}/ mirrors a recipe, defaults: parents too)")
    mirrored = {}
    for recipe in recipes.values():
        yaml_rel = layout.yaml_for(recipe.rel)
        if yaml_rel in yamls:
            mirrored[recipe.rel] = yamls[yaml_rel]
        else:
            collector.add(recipe.rel, None, "yaml-missing", f"no YAML mirror {yaml_rel}")
    for rel, yaml_abs in mirrored.items():
        bases = config.algos.get(recipes[rel].algo, ())
        if bases and tree.docs.get(os.path.normpath(yaml_abs)) is not None:  # else: no base, or unusable YAML
            check = _check_merges if config.base_check == MERGES else _check_inherits
            check(reader, collector, config, recipes[rel].algo, bases, tree, yaml_abs)
    return mirrored


def _check_inherits(reader: FileReader, collector: Collector, config: LintConfig, algo: str, bases: tuple[str, ...],
                    tree: YamlTree, yaml_abs: str) -> None:
    """``yaml-base`` (inherits): the recipe YAML inherits (directly or not) one of the base YAMLs."""
    ancestors = tree.ancestors(yaml_abs)
    if any(os.path.normpath(reader.abs(base)) in ancestors for base in bases):
        return
    inherits = ", ".join(sorted(reader.rel(a) for a in ancestors)) or "nothing (no defaults:)"
    collector.add(reader.rel(yaml_abs), tree.defaults_line(yaml_abs), "yaml-base",
                  f"'{algo}' recipes derive from {' or '.join(bases)} ([tool.nrl-launch.lint.algos]), but this YAML "
                  f"inherits {inherits}")


def _check_merges(reader: FileReader, collector: Collector, config: LintConfig, algo: str, bases: tuple[str, ...],
                  tree: YamlTree, yaml_abs: str) -> None:
    """``yaml-base`` (merges): every key of the recipe YAML, own or inherited, is a key of one of the bases."""
    keys = tree.resolved(yaml_abs)
    missing: list[tuple[str, list[tuple[KeyPath, KeyNode]]]] = []
    for base in bases:
        base_abs = reader.abs(base)
        tree.load(base_abs)
        if tree.docs.get(os.path.normpath(base_abs)) is None:
            return  # an unusable base YAML is a finding of its own
        unknown = unknown_keys(keys, tree.resolved(base_abs), config.base_extra_keys)
        if not unknown:
            return
        missing.append((base, unknown))
    base, unknown = min(missing, key=lambda item: len(item[1]))
    rel = reader.rel(yaml_abs)
    shown = ", ".join(_describe(path, node, rel) for path, node in unknown[:_KEYS_SHOWN])
    more = f", and {len(unknown) - _KEYS_SHOWN} more" if len(unknown) > _KEYS_SHOWN else ""
    target, lacking = (bases[0], "the base") if len(bases) == 1 else (f"one of {' or '.join(bases)}",
                                                                     f"the closest, {base},")
    first = unknown[0][1]
    collector.add(rel, first.line if first.rel == rel else tree.defaults_line(yaml_abs), "yaml-base",
                  f"'{algo}' recipes merge into {target} ([tool.nrl-launch.lint.algos], base-check = "
                  f"\"merges\"), but this YAML sets keys {lacking} does not have: {shown}{more}")


def _describe(path: KeyPath, node: KeyNode, rel: str) -> str:
    where = f"line {node.line}" if node.rel == rel else f"inherited from {node.rel}:{node.line}"
    return f"{'.'.join(path)} ({where})"
