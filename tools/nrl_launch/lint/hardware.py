"""Hardware stated more than once must agree: the name's ``<N>n<G>g``, the
CONFIG block, the YAML, and the suite's ``gpus-per-node``.

* ``cluster-config``: the name's nodes / GPUs per node against CONFIG
  ``NUM_NODES`` / ``GPUS_PER_NODE`` (default 8);
* ``context-hardware``: a context-length name (``…-8K.sh``) has no
  ``<N>n<G>g``, so its CONFIG must assign both ``NUM_NODES`` and ``GPUS_PER_NODE``;
* ``cluster-yaml``: the YAML's total nodes — ``cluster.num_nodes`` plus every
  configured extra node key (``env.*.num_gpu_nodes``…), own or inherited
  through ``defaults:`` — and ``cluster.gpus_per_node`` against the name, or
  against CONFIG for a name without ``<N>n<G>g``. Values that are not integers
  (interpolations) are not compared; a null extra key counts nothing;
* ``suite-gpus``: CONFIG ``GPUS_PER_NODE`` against the ``gpus-per-node`` of
  every suite listing the recipe (GB200 suites run on 4-GPU nodes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nrl_launch.lint.options import CLUSTER_GPUS, CLUSTER_NODES, KeyPath
from nrl_launch.lint.recipes import Recipe
from nrl_launch.lint.report import Collector
from nrl_launch.lint.suites import Suite
from nrl_launch.lint.yamltree import Leaf


def check_config_hardware(collector: Collector, recipe: Recipe) -> None:
    """``cluster-config`` and ``context-hardware`` for one recipe."""
    name, cfg = recipe.name, recipe.config
    if name is None or cfg is None:
        return
    if name.nodes is not None and name.gpus is not None:
        if cfg.num_nodes != name.nodes:
            collector.add(recipe.rel, recipe.line_of("NUM_NODES"), "cluster-config",
                          f"the name says {name.cluster} but CONFIG has NUM_NODES={cfg.num_nodes}; the launcher "
                          "requests what CONFIG says")
        if cfg.gpus_per_node != name.gpus:
            default = "" if "GPUS_PER_NODE" in cfg.values else " (the default)"
            collector.add(recipe.rel, recipe.line_of("GPUS_PER_NODE"), "cluster-config",
                          f"the name says {name.cluster} but CONFIG has GPUS_PER_NODE={cfg.gpus_per_node}{default}; "
                          "the launcher requests what CONFIG says")
    elif name.context_length is not None:
        missing = [key for key in ("NUM_NODES", "GPUS_PER_NODE") if key not in cfg.values]
        if missing:
            collector.add(recipe.rel, cfg.config_line, "context-hardware",
                          f"a context-length name ({name.context_length}) does not say the hardware, so CONFIG "
                          f"must: assign {' and '.join(missing)}")


def check_yaml_hardware(collector: Collector, recipe: Recipe, yaml_rel: str, view: Mapping[KeyPath, Leaf]) -> None:
    """``cluster-yaml`` for one recipe, given its YAML's inherited watched keys."""
    name, cfg = recipe.name, recipe.config
    if name is not None and name.nodes is not None and name.gpus is not None:
        nodes, gpus, source = name.nodes, name.gpus, f"the name says {name.cluster}"
    elif cfg is not None:
        nodes, gpus = cfg.num_nodes, cfg.gpus_per_node
        source = f"CONFIG has NUM_NODES={nodes}, GPUS_PER_NODE={gpus}"
    else:
        return
    node_leaf = view.get(CLUSTER_NODES)
    if node_leaf is not None:
        extras = [(path, leaf) for path, leaf in sorted(view.items())
                  if path not in (CLUSTER_NODES, CLUSTER_GPUS) and leaf.text != "null"]
        _compare(collector, yaml_rel, [(CLUSTER_NODES, node_leaf), *extras], nodes, "nodes", source)
    gpu_leaf = view.get(CLUSTER_GPUS)
    if gpu_leaf is not None:
        _compare(collector, yaml_rel, [(CLUSTER_GPUS, gpu_leaf)], gpus, "GPUs per node", source)


def _compare(collector: Collector, yaml_rel: str, parts: list[tuple[KeyPath, Leaf]], want: int, what: str,
             source: str) -> None:
    """Report when the parts' sum differs from ``want`` (parts that are not integers: no verdict)."""
    values = [leaf.value for _, leaf in parts]
    if any(value is None for value in values) or sum(v for v in values if v is not None) == want:
        return
    own = [leaf for _, leaf in parts if leaf.rel == yaml_rel]
    described = " + ".join(_describe(path, leaf, yaml_rel) for path, leaf in parts)
    total = "" if len(parts) == 1 else f" = {sum(v for v in values if v is not None)} {what}"
    collector.add(yaml_rel, own[0].line if own else None, "cluster-yaml", f"{described}{total} but {source}")


def _describe(path: KeyPath, leaf: Leaf, yaml_rel: str) -> str:
    where = "" if leaf.rel == yaml_rel else f" (inherited from {leaf.where()})"
    return f"{'.'.join(path)}={leaf.text}{where}"


def check_suite_gpus(collector: Collector, recipes: Mapping[str, Recipe], suites: Iterable[Suite]) -> None:
    """``suite-gpus`` for every suite with ``gpus-per-node``."""
    for suite in suites:
        want = suite.settings.gpus_per_node
        if want is None:
            continue
        for number, entry in suite.entries:
            recipe = recipes.get(entry)
            cfg = recipe.config if recipe is not None else None
            if recipe is None or cfg is None or cfg.gpus_per_node == want:
                continue
            default = "" if "GPUS_PER_NODE" in cfg.values else " (the default)"
            collector.add(recipe.rel, recipe.line_of("GPUS_PER_NODE"), "suite-gpus",
                          f"GPUS_PER_NODE={cfg.gpus_per_node}{default} but suite '{suite.name}' "
                          f"({suite.rel}:{number}) runs on {want}-GPU nodes (gpus-per-node in pyproject.toml)")
