"""One lint run: read the repository once, run every check, build the report."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nrl_launch.lint.budget import check_budgets, check_overrides
from nrl_launch.lint.dryrun import DryrunOptions, dryrun_failures
from nrl_launch.lint.files import FileReader
from nrl_launch.lint.hardware import check_config_hardware, check_suite_gpus, check_yaml_hardware
from nrl_launch.lint.mirrors import check_mirrors
from nrl_launch.lint.naming import check_names
from nrl_launch.lint.options import CLUSTER_GPUS, CLUSTER_NODES, MERGES, LintConfig, LintConfigError
from nrl_launch.lint.pyproject import load_config
from nrl_launch.lint.recipes import load_recipes
from nrl_launch.lint.report import Collector, LintReport, SuiteHours
from nrl_launch.lint.suites import check_listing, launched, read_suites
from nrl_launch.lint.yamltree import YamlTree


def run_lint(root: Path, config: LintConfig | None = None, *, budgets: Mapping[str, int] | None = None,
             dryrun: DryrunOptions | None = None, environ: Mapping[str, str] | None = None) -> LintReport:
    """Check the repository at ``root``.

    ``config`` defaults to the repository's own (:func:`load_config`);
    ``budgets`` (suite -> GPU-hours) override the configured budgets; with
    ``dryrun`` every launched recipe also runs with ``TEST_DRYRUN=1`` in
    ``environ`` (default: this process's environment). A malformed repository
    never raises: it becomes findings. Raises UsageProblem: LintConfigError
    for a wrong configuration (pyproject.toml, or inline comments: all of
    them, after the run), or a budget for a suite that does not exist.
    """
    root_str = os.path.abspath(root)
    config = load_config(Path(root_str)) if config is None else config
    collector = Collector(config)
    reader = FileReader(root_str, collector)
    suite_dir = config.layout.suite_dir
    counts = _Counts()
    if not os.path.isdir(root_str):
        collector.add(".", None, "layout", f"{root_str} is not a directory")
    elif not os.path.isdir(reader.abs(suite_dir)):
        collector.add(suite_dir, None, "layout", f"no {suite_dir}/ folder: not a recipe repository? "
                                                 "(suite-dir in pyproject.toml)")
    else:
        env = os.environ if environ is None else environ
        counts = _check_all(reader, collector, config, budgets or {}, dryrun, env)
    return LintReport(root=Path(root_str), findings=collector.findings(), files=len(collector.files_read),
                      scripts=counts.scripts, suites=counts.suites, yamls=counts.yamls, suite_hours=counts.hours)


@dataclass(frozen=True)
class _Counts:
    """What a run looked at, for the report."""

    scripts: int = 0
    suites: int = 0
    yamls: int = 0
    hours: tuple[SuiteHours, ...] = ()


def _check_all(reader: FileReader, collector: Collector, config: LintConfig, budgets: Mapping[str, int],
               dryrun: DryrunOptions | None, environ: Mapping[str, str]) -> _Counts:
    """Every check, in an order where each finds what it needs; the report's counts."""
    recipes = load_recipes(reader, collector, config.layout, config.roots_configured)
    suites = read_suites(reader, collector, config)
    check_overrides(budgets, suites)
    listing = check_listing(reader, collector, config.layout, recipes, suites)
    check_names(collector, config, recipes)
    for recipe in recipes.values():
        check_config_hardware(collector, recipe)
    tree = YamlTree(reader, collector, watched=(CLUSTER_NODES, CLUSTER_GPUS, *config.extra_node_keys),
                    full=config.base_check == MERGES)
    for rel, yaml_abs in check_mirrors(reader, collector, config, recipes, tree).items():
        check_yaml_hardware(collector, recipes[rel], reader.rel(yaml_abs), tree.view(yaml_abs))
    check_suite_gpus(collector, recipes, suites)
    hours = check_budgets(collector, recipes, suites, budgets)
    if collector.config_problems:  # every file is read by now: report them all, run nothing
        raise LintConfigError.of(collector.config_problems)
    if dryrun is not None:
        # a recipe listed only in disabled suites is never launched, so never run
        runnable = [rel for rel in sorted(recipes) if launched(listing, rel) or not listing[rel]]
        for rel, problem in dryrun_failures(reader.root, runnable, dryrun, environ).items():
            collector.add(rel, None, "dryrun", problem)
    return _Counts(scripts=len(recipes), suites=len(suites), yamls=len(tree.docs), hours=hours)
