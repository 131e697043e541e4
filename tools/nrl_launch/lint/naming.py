"""Name rules: the naming grammar, the algo map and placement under the recipe roots.

* ``name``: the name does not parse (:mod:`nrl_launch.recipes.names`); ``name-cluster``,
  ``name-version``, ``name-strategy``: it parses but bends the grammar in one
  of the tolerated ways (:data:`DEVIATION_RULES`).
* ``algo-unknown``: the name's first token is not in the configured algo map.
* ``placement``: kinds and algo prefixes agree. A kind (a recipe root's
  name, ``vlm``) that some configured algo uses as a prefix (``vlm_grpo``)
  holds exactly the recipes whose algo has that prefix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from nrl_launch.lint.options import LintConfig
from nrl_launch.lint.recipes import Recipe
from nrl_launch.lint.report import Collector
from nrl_launch.recipes import names

DEVIATION_RULES = {
    names.CLUSTER_MISSING: "name-cluster",
    names.VERSION_POSITION: "name-version",
    names.STRATEGY_MISSING: "name-strategy",
}


def check_names(collector: Collector, config: LintConfig, recipes: Mapping[str, Recipe]) -> None:
    """Every name rule for every recipe."""
    layout = config.layout
    prefixed = {kind for kind in layout.kinds if any(algo.startswith(f"{kind}_") for algo in config.algos)}
    plain_roots = [root for root, kind in zip(layout.recipe_roots, layout.kinds, strict=True) if kind not in prefixed]
    for recipe in recipes.values():
        if recipe.name_error is not None:
            collector.add(recipe.rel, None, "name", recipe.name_error)
        for deviation in recipe.name.deviations if recipe.name else ():
            collector.add(recipe.rel, None, DEVIATION_RULES[deviation.code], deviation.message)
        if recipe.algo not in config.algos:
            collector.add(recipe.rel, None, "algo-unknown", _unknown_algo(config, recipe))
        _check_placement(collector, config, prefixed, plain_roots, recipe)


def _unknown_algo(config: LintConfig, recipe: Recipe) -> str:
    """What is wrong with an algo that the map does not know, and what would be right."""
    algo = recipe.algo
    known = sorted(config.algos)
    second = recipe.filename.removesuffix(".sh").split("-")[1:2]
    glued = f"{algo}_{second[0]}" if second else ""
    close = [glued] if glued in config.algos else difflib.get_close_matches(algo, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = ("[tool.nrl-launch.lint.algos] in pyproject.toml" if config.source
             else "the default algo map (configure [tool.nrl-launch.lint.algos] in pyproject.toml)")
    return f"algo {algo!r} (the name's first token) is not in {where}{hint}; known: {', '.join(known)}"


def _check_placement(collector: Collector, config: LintConfig, prefixed: set[str], plain_roots: list[str],
                     recipe: Recipe) -> None:
    layout = config.layout
    kind = layout.kind_of(recipe.rel)
    own = next((k for k in sorted(prefixed) if recipe.algo.startswith(f"{k}_")), None)
    if own is not None and own != kind:
        expected = layout.recipe_roots[layout.kinds.index(own)]
        collector.add(recipe.rel, None, "placement",
                      f"'{recipe.algo}' recipes belong under {expected}/: the algo's '{own}_' prefix names the kind")
    elif own is None and kind in prefixed:
        where = " or ".join(f"{root}/" for root in plain_roots) or "another recipe root"
        collector.add(recipe.rel, None, "placement",
                      f"{recipe.root}/ holds '{kind}_…' recipes only; '{recipe.algo}' has no '{kind}_' prefix, "
                      f"so the recipe belongs under {where}")
