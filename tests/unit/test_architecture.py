"""The package's structure, read from its sources (docs/development.md, "The package").

* Imports go only downwards: bashcfg <- plan <- slurm <- experiment <- follow
  <- pipeline <- launch <- cli.
* An experiment's folder is known in ``experiment/`` only: no other module
  names the manifest, the next-run record, the lock, ``continue.sh``, the
  ``<id>-logs`` folders, the driver log or ``metrics.json``, nor reads or
  writes those files with the functions that do.
* ``follow/watch.py`` runs a watch and nothing else: only the launch
  (``pipeline``) and the ``watch`` command (``cli``) import it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tools" / "nrl_launch"
LAYERS = ("bashcfg", "plan", "slurm", "experiment", "follow", "report", "pipeline", "launch", "cli")
# What knows the folder's files: a string piece of a path to one of them.
LAYOUT = re.compile(r"\.nrl_launch|ray-driver\.log|nrl-run-identity|metrics\.json|(^|/)continue\.sh$|\.lock$|-logs$|"
                    r"^-logs|-logs/")
# The experiment/ functions that touch the folder's files: ExperimentDir calls them.
FILE_FUNCTIONS = {
    "nrl_launch.experiment.manifest": {"read_manifest", "write_manifest", "append_run", "append_cancellation",
                                       "append_plan",
                                       "append_entry", "parse_manifest", "render_manifest", "manifest_path",
                                       "MANIFEST_NAME"},
    "nrl_launch.experiment.rerun": {"load_next_run", "save_next_run", "NEXT_RUN_NAME"},
    "nrl_launch.experiment.locks": {"experiment_locks", "lock_path"},
    "nrl_launch.experiment.joblogs": {"log_root", "output_file", "DRIVER_LOG"},
}


def modules() -> Iterator[tuple[str, ast.Module]]:
    """(dotted name, syntax tree) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("nrl_launch", *parts)).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(encoding="utf-8"))


def imports(tree: ast.Module) -> Iterator[tuple[str, str | None]]:
    """(module, imported name or None) of every import of the package's own modules, anywhere in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nrl_launch"):
            for alias in node.names:
                if _is_module(f"{node.module}.{alias.name}"):
                    yield f"{node.module}.{alias.name}", None
                else:
                    yield node.module, alias.name
        elif isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names if alias.name.startswith("nrl_launch"))


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer(module: str) -> str | None:
    """The layer of ``nrl_launch.<layer>[.…]``, None for a module outside the chain (errors, settings…)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, text) of every string in the code, docstrings left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_the_parser_of_this_test_sees_what_it_looks_for() -> None:
    found = dict(modules())
    assert set(LAYERS) <= {layer(name) for name in found}
    assert ("nrl_launch.experiment.folder", "SnapshotRoot") in set(imports(found["nrl_launch.follow.watch"]))
    assert ("nrl_launch.follow.watch", "watch_recorded") in set(imports(found["nrl_launch.cli"]))  # in a function
    assert ("nrl_launch.follow.watch", None) in set(imports(found["nrl_launch.pipeline"]))  # from … import watch
    assert any(LAYOUT.search(text) for _, text in strings(found["nrl_launch.experiment.folder"]))
    assert not any("One experiment's folder" in text for _, text in strings(found["nrl_launch.experiment.folder"]))


def test_imports_go_only_downwards() -> None:
    upwards = [(name, imported) for name, tree in modules() for imported, _ in imports(tree)
               if layer(name) and layer(imported) and LAYERS.index(layer(imported)) > LAYERS.index(layer(name))]
    assert upwards == []


def test_only_the_launch_and_the_watch_command_import_watch() -> None:
    importers = {name for name, tree in modules() for imported, what in imports(tree)
                 if imported == "nrl_launch.follow.watch" or (imported == "nrl_launch.follow" and what == "watch")}
    assert importers == {"nrl_launch.cli", "nrl_launch.pipeline"}


@pytest.mark.parametrize("name", [name for name, _ in modules() if layer(name) != "experiment"])
def test_the_folder_layout_is_known_in_experiment_only(name: str) -> None:
    tree = dict(modules())[name]
    assert [(line, text) for line, text in strings(tree) if LAYOUT.search(text)] == []
    touching = [(imported, what) for imported, what in imports(tree) if what in FILE_FUNCTIONS.get(imported, ())]
    assert touching == []
