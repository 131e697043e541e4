"""Suite budgets: a suite's GPU-hours, added up as ``DRYRUN=1 tools/launch`` does.

A recipe's GPU-hours are :attr:`nrl_launch.bashcfg.config.RecipeConfig.gpu_hours` of
its CONFIG block evaluated in an empty environment, so the total equals the
``[INFO]: Total GPU hours:`` line of ``DRYRUN=1 tools/launch <the suite's
scripts>`` run without overrides in the environment. The budget is the
suite's ``budget`` in pyproject.toml, or ``--budget SUITE=HOURS`` (which wins).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nrl_launch.errors import UsageProblem
from nrl_launch.lint.recipes import Recipe
from nrl_launch.lint.report import Collector, SuiteHours
from nrl_launch.lint.suites import Suite

_BUDGET_RE = re.compile(r"([A-Za-z0-9_.+-]+)=(\d+)")


def parse_budget(text: str) -> tuple[str, int]:
    """Parse a ``--budget`` value ``SUITE=HOURS`` into ``(suite, hours)``.

    SUITE is a suite's name (``nightly`` for ``tests/test_suites/nightly.txt``),
    HOURS a non-negative integer number of GPU-hours. Raises UsageProblem otherwise.
    """
    match = _BUDGET_RE.fullmatch(text.strip())
    if not match:
        raise UsageProblem(f"--budget expects SUITE=HOURS (e.g. nightly=500, HOURS a whole number), got {text!r}")
    return match.group(1), int(match.group(2))


def check_overrides(overrides: Mapping[str, int], suites: list[Suite]) -> None:
    """UsageProblem when ``--budget`` names a suite that does not exist or is disabled."""
    by_name = {suite.name: suite for suite in suites}
    for name in overrides:
        suite = by_name.get(name)
        if suite is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise UsageProblem(f"--budget {name}=…: no suite {name!r} (suites: {known})")
        if suite.settings.disabled:
            raise UsageProblem(f"--budget {name}=…: suite {name!r} is disabled (never launched)")


def suite_hours(recipes: Mapping[str, Recipe], suite: Suite, budget: int | None) -> SuiteHours:
    """The suite's GPU-hours; entries without a valid CONFIG are counted apart."""
    total = uncounted = 0
    for _, entry in suite.entries:
        recipe = recipes.get(entry)
        if recipe is not None and recipe.config is not None:
            total += recipe.config.gpu_hours
        else:
            uncounted += 1
    return SuiteHours(name=suite.name, path=suite.rel, hours=total, budget=budget, uncounted=uncounted)


def check_budgets(collector: Collector, recipes: Mapping[str, Recipe], suites: list[Suite],
                  overrides: Mapping[str, int]) -> tuple[SuiteHours, ...]:
    """Every launched suite's GPU-hours; a ``budget`` finding for each one over its budget."""
    totals = []
    for suite in suites:
        if suite.settings.disabled:
            continue
        hours = suite_hours(recipes, suite, overrides.get(suite.name, suite.settings.budget))
        totals.append(hours)
        if hours.budget is not None and hours.hours > hours.budget:
            collector.add(suite.rel, None, "budget", _over_budget(recipes, suite, hours, suite.name in overrides))
    return tuple(totals)


def _over_budget(recipes: Mapping[str, Recipe], suite: Suite, hours: SuiteHours, from_cli: bool) -> str:
    """The message: total, budget and where it was set, the biggest recipes."""
    origin = "--budget" if from_cli else "pyproject.toml"
    costs = sorted(((r.config.gpu_hours, r.rel) for _, e in suite.entries
                    if (r := recipes.get(e)) is not None and r.config is not None), reverse=True)
    biggest = ", ".join(f"{rel.rsplit('/', 1)[-1]} {h}" for h, rel in costs[:3])
    note = f" ({hours.uncounted} entries without a valid CONFIG not counted)" if hours.uncounted else ""
    return (f"suite '{suite.name}' needs {hours.hours} GPU-hours, over its budget of {hours.budget} "
            f"({origin}){note}; biggest: {biggest}")
