"""Suite bookkeeping: the suite files, their entries, and every recipe in exactly one suite.

A suite file lists one recipe script per line, relative to the repository
root; ``#`` starts a comment (whole-line, or trailing after a blank) and blank
lines are ignored. With ``[tool.nrl-launch.lint.suites]`` the suites are the
configured ones (``<suite folder>/<name>.txt``); without it, every ``*.txt``
directly in the suite folder is a suite. A script listed only in a
``disabled = true`` suite is accounted for but never launched. A subset suite
(``subset-of``) runs recipes of other suites again: its entries must be
listed there, and are neither listings of their own (no ``suite-duplicate``
with the suite they come from, no ``suite-missing`` avoided) nor part of any
other suite's GPU-hours.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from nrl_launch.lint.files import FileReader
from nrl_launch.lint.options import LintConfig, SuiteConfig
from nrl_launch.lint.recipes import Recipe
from nrl_launch.lint.report import Collector
from nrl_launch.recipes.layout import Layout, inside, parse_suite


@dataclass(frozen=True)
class Suite:
    """One suite file and its entries ``(line, normalised repo-relative path)``."""

    settings: SuiteConfig
    rel: str
    entries: tuple[tuple[int, str], ...]

    @property
    def name(self) -> str:
        """The suite's name as ``--budget`` spells it (``nightly``)."""
        return self.settings.name


# script rel -> [(suite, line)] in suite order
Listing = Mapping[str, list[tuple[Suite, int]]]


def read_suites(reader: FileReader, collector: Collector, config: LintConfig) -> list[Suite]:
    """The suites and their entries; missing, unreadable or unconfigured files are findings."""
    layout = config.layout
    present = sorted(name for name, _ in reader.entries(layout.suite_dir) if name.endswith(".txt"))
    if config.suites is None:
        wanted = [SuiteConfig(name=filename[: -len(".txt")]) for filename in present]
    else:
        wanted = list(config.suites)
        configured = {layout.suite_file(s.name) for s in wanted}
        for filename in present:
            rel = f"{layout.suite_dir}/{filename}"
            if rel not in configured:
                collector.add(rel, None, "suite-unconfigured",
                              "not a configured suite ([tool.nrl-launch.lint.suites] in pyproject.toml): "
                              "its entries are not counted as listed")
    suites = []
    for settings in wanted:
        suite = _read_suite(reader, collector, layout, settings)
        if suite is not None:
            suites.append(suite)
    return suites


def _read_suite(reader: FileReader, collector: Collector, layout: Layout, settings: SuiteConfig) -> Suite | None:
    rel = layout.suite_file(settings.name)
    path = reader.abs(rel)
    if not os.path.lexists(path):
        collector.add(rel, None, "suite-file",
                      f"suite {settings.name!r} is configured in pyproject.toml but its file does not exist")
        return None
    if not reader.is_regular(path, rel):
        return None
    text = reader.read(path, rel)
    entries = []
    for number, entry in parse_suite(text or ""):
        if posixpath.isabs(entry):
            collector.add(rel, number, "suite-entry", f"{entry}: absolute path; entries are relative to the "
                                                      "repository root")
            continue
        normal = posixpath.normpath(entry)
        if normal == ".." or normal.startswith("../"):
            collector.add(rel, number, "suite-entry", f"{entry}: outside the repository")
            continue
        entries.append((number, normal))
    return Suite(settings=settings, rel=rel, entries=tuple(entries))


def check_listing(reader: FileReader, collector: Collector, layout: Layout, recipes: Mapping[str, Recipe],
                  suites: list[Suite]) -> Listing:
    """Each entry an existing recipe; each recipe listed exactly once across
    the suites that are not subsets; each entry of a subset suite listed by a
    suite it is a subset of (and only once in the subset suite itself)."""
    listing: dict[str, list[tuple[Suite, int]]] = {rel: [] for rel in recipes}
    for suite in suites:
        for number, entry in suite.entries:
            if entry not in listing:
                collector.add(suite.rel, number, "suite-entry", _not_a_recipe(reader, layout, entry))
            elif not suite.settings.subset_of:
                listing[entry].append((suite, number))
    counting = [s for s in suites if not s.settings.subset_of]
    names = ", ".join(s.name for s in counting) or "none"
    parked = [s.rel for s in counting if s.settings.disabled]
    hint = f"; to keep a recipe that must not run, list it in {parked[0]}" if parked else ""
    for rel, places in listing.items():
        if not places:
            collector.add(rel, None, "suite-missing", f"listed in no suite (suites: {names}){hint}")
        for suite, number in places[1:]:
            first, first_line = places[0]
            collector.add(suite.rel, number, "suite-duplicate", f"{rel} is already listed at {first.rel}:{first_line}")
    for suite in suites:
        if suite.settings.subset_of:
            _check_subset(collector, suite, listing)
    return listing


def _check_subset(collector: Collector, suite: Suite, listing: Listing) -> None:
    """``suite-subset`` and ``suite-duplicate`` for the entries of one subset suite."""
    wanted = suite.settings.subset_of
    seen: dict[str, int] = {}
    for number, entry in suite.entries:
        if entry not in listing:
            continue  # not a recipe: a suite-entry finding already
        if entry in seen:
            collector.add(suite.rel, number, "suite-duplicate", f"{entry} is already listed at {suite.rel}:"
                                                                f"{seen[entry]}")
            continue
        seen[entry] = number
        listed_in = [other.name for other, _ in listing[entry]]
        if not set(listed_in) & set(wanted):
            elsewhere = f" (it is listed in {', '.join(listed_in)})" if listed_in else ""
            collector.add(suite.rel, number, "suite-subset",
                          f"{entry} is not listed in {' or '.join(wanted)}{elsewhere}: suite '{suite.name}' only "
                          f"runs recipes of {' and '.join(wanted)} again (subset-of in pyproject.toml)")


def _not_a_recipe(reader: FileReader, layout: Layout, entry: str) -> str:
    """Why a suite entry is not a recipe script."""
    path = reader.abs(entry)
    if os.path.isfile(path):
        parts = entry.split("/")
        owners = ("/".join(parts[:i]) + ".sh" for i in range(len(parts) - 1, 0, -1))
        owner = next((o for o in owners if inside(o, layout.suite_dir) and os.path.isfile(reader.abs(o))), None)
        if owner is not None:
            return f"{entry}: inside the output folder of {owner}, not a recipe"
        return f"{entry}: not a recipe script (expected a *.sh under {layout.suite_dir}/)"
    if os.path.lexists(path):
        return f"{entry}: not a regular file"
    return f"{entry}: no such file"


def launched(listing: Listing, rel: str) -> bool:
    """True when ``rel`` is listed in a suite that is not disabled."""
    return any(not suite.settings.disabled for suite, _ in listing.get(rel, ()))
