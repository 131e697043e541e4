"""The repository checker behind ``nrl-launch lint`` (docs/lint.md).

:func:`run_lint` reads a recipe repository once — recipe scripts under the
suite folder, suite files, recipe YAMLs and their ``defaults:`` parents —
and returns a :class:`LintReport`; :func:`render` and :func:`summary` print
it. What is checked and how severe each finding is come from
:mod:`~nrl_launch.lint.rules` and the repository's ``[tool.nrl-launch.lint]``
(:func:`load_config`); without ``--root`` the command line lints
:func:`lint_root`.

Modules, one concern each:

* ``rules``: the rule ids, declared once, with default severities;
* ``options``: the configuration and inline ``# nrl-lint: disable=`` comments;
* ``pyproject``: reading ``[tool.nrl-launch.lint]`` (every problem at once);
* ``root``: which repository a run without ``--root`` checks;
* ``report``: findings, the report, the collector applying severities and ignores;
* ``files``: reading files once, never raising; finding scripts and YAMLs;
* ``recipes``: a recipe script's name and CONFIG block;
* ``suites``: suite files and every recipe in exactly one suite;
* ``naming``: the naming grammar, the algo map, placement;
* ``yamltree``: the YAML ``defaults:`` tree and inherited keys;
* ``mirrors``: script <-> YAML mirrors and base YAMLs;
* ``hardware``: name, CONFIG, YAML and suite hardware agree;
* ``budget``: suite GPU-hours against budgets;
* ``dryrun``: ``--exec-dryrun``;
* ``render``: text, json and GitHub output;
* ``engine``: one run, in order.
"""

from __future__ import annotations

from nrl_launch.lint.budget import parse_budget
from nrl_launch.lint.dryrun import DryrunOptions
from nrl_launch.lint.engine import run_lint
from nrl_launch.lint.options import LintConfig, LintConfigError, SuiteConfig
from nrl_launch.lint.pyproject import load_config
from nrl_launch.lint.render import FORMATS, render, summary
from nrl_launch.lint.report import Finding, LintReport, SuiteHours
from nrl_launch.lint.root import lint_root
from nrl_launch.lint.rules import RULES
from nrl_launch.recipes.layout import parse_suite

__all__ = [
    "FORMATS",
    "RULES",
    "DryrunOptions",
    "Finding",
    "LintConfig",
    "LintConfigError",
    "LintReport",
    "SuiteConfig",
    "SuiteHours",
    "lint_root",
    "load_config",
    "parse_budget",
    "parse_suite",
    "render",
    "run_lint",
    "summary",
]
