"""A repository's lint configuration, as the checks see it, and the inline
``# nrl-lint: disable=<rule>[,<rule>]`` comments of its files.

Every key is documented in docs/lint.md; :mod:`nrl_launch.lint.pyproject`
reads them from ``[tool.nrl-launch.lint]``. Without the section the defaults
describe this project's own layout: recipes under ``tests/test_suites/{llm,vlm}``,
YAML mirrors under ``examples/configs/recipes``, every ``tests/test_suites/*.txt``
a suite, and the algos ``sft dpo grpo rm ppo distillation`` (each also with a
``vlm_`` prefix) without a base YAML. A configuration that is itself wrong
(unknown key, bad value, unknown rule id) raises :class:`LintConfigError`
naming the file and, where it can be found, the line of every problem.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from nrl_launch.errors import UsageProblem
from nrl_launch.lint.rules import RULES, rule
from nrl_launch.recipes.layout import DEFAULT_LAYOUT, Layout

KeyPath = tuple[str, ...]

DEFAULT_ALGOS = ("sft", "dpo", "grpo", "rm", "ppo", "distillation")
CLUSTER_NODES = ("cluster", "num_nodes")  # the YAML keys a recipe's hardware is stated in
CLUSTER_GPUS = ("cluster", "gpus_per_node")
# What the algo map's base YAML means (key base-check): the recipe YAML
# inherits it through defaults:, or merges into it (every key it sets, own or
# inherited, is a key of the base: an OmegaConf struct merge succeeds).
INHERITS = "inherits"
MERGES = "merges"
BASE_CHECKS = (INHERITS, MERGES)

_DIRECTIVE_RE = re.compile(r"#\s*nrl-lint:(.*)$")
# disable=<id>[,<id>…]; text after a blank is a free-form reason
_DISABLE_RE = re.compile(r"\s*disable=\s*([A-Za-z0-9_-]+(?:\s*,\s*[A-Za-z0-9_-]+)*)(?:\s.*)?")

# One problem of a configuration: file, line (None: unknown), message.
Problem = tuple[str, int | None, str]


class LintConfigError(UsageProblem):
    """The lint configuration (pyproject.toml or inline comments) is wrong.

    ``problems`` lists every problem found (file, line or None, message), in
    file and line order; ``path``, ``line`` and ``message`` are the first's.
    ``str()`` gives one problem a line, each starting with its file and line;
    the lines after the first carry the ``[ERROR]: `` the command line puts
    before the first, so that each reads as an error of its own.
    """

    def __init__(self, path: str, line: int | None, message: str, more: Sequence[Problem] = ()) -> None:
        problems = tuple(sorted([(path, line, message), *more], key=_problem_order))
        super().__init__(problems[0][2])
        self.problems = problems
        self.path, self.line, self.message = problems[0]

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> LintConfigError:
        """One error for a non-empty list of problems."""
        (path, line, message), *more = problems
        return cls(path, line, message, more)

    def __str__(self) -> str:
        return "\n[ERROR]: ".join(_render(problem) for problem in self.problems)


def _render(problem: Problem) -> str:
    path, line, message = problem
    return f"{path if line is None else f'{path}:{line}'}: {message}"


def _problem_order(problem: Problem) -> tuple[str, int, str]:
    path, line, message = problem
    return (path, line or 0, message)


@dataclass(frozen=True)
class SuiteConfig:
    """One configured suite: ``<suite folder>/<name>.txt``."""

    name: str
    budget: int | None = None  # GPU-hours
    gpus_per_node: int | None = None
    disabled: bool = False  # accounted for, never launched
    # A subset suite re-lists recipes of these suites (a lane that runs some of
    # them again): its entries must be listed there, and do not count as listings.
    subset_of: tuple[str, ...] = ()


def default_algos() -> dict[str, tuple[str, ...]]:
    """The algo map without configuration: known algos, no base YAMLs."""
    return {prefix + algo: () for prefix in ("", "vlm_") for algo in DEFAULT_ALGOS}


@dataclass(frozen=True)
class LintConfig:
    """Everything ``[tool.nrl-launch.lint]`` can say, with the defaults."""

    layout: Layout = DEFAULT_LAYOUT
    roots_configured: bool = False  # recipe-roots given: a missing root is then an error
    algos: Mapping[str, tuple[str, ...]] = field(default_factory=default_algos)  # algo -> base YAMLs
    base_check: str = INHERITS  # what the base YAMLs of the algo map mean
    base_extra_keys: tuple[KeyPath, ...] = ()  # with MERGES: keys a recipe may add to its base
    suites: tuple[SuiteConfig, ...] | None = None  # None: every *.txt in the suite folder
    yaml_requires_script: bool = False  # a defaults: parent under the YAML root needs a script too
    extra_node_keys: tuple[KeyPath, ...] = ()  # key patterns, split on '.'
    severities: Mapping[str, str] = field(default_factory=dict)  # overrides only
    per_file_ignores: tuple[tuple[str, frozenset[str]], ...] = ()  # (glob, rule ids)
    source: str | None = None  # the pyproject.toml it was read from

    def severity(self, rule_id: str) -> str:
        """The severity of ``rule_id`` here (UnknownRuleError for an undeclared id)."""
        return self.severities.get(rule_id) or rule(rule_id).severity

    def ignored(self, path: str, rule_id: str) -> bool:
        """True when a per-file-ignores glob matching ``path`` lists ``rule_id``."""
        return any(rule_id in rules and fnmatchcase(path, glob) for glob, rules in self.per_file_ignores)


def inline_disables(text: str, rel: str) -> frozenset[str]:
    """The rule ids that ``# nrl-lint: disable=…`` comments in ``text`` turn off
    for the whole file ``rel``; LintConfigError naming every malformed comment."""
    if "nrl-lint:" not in text:
        return frozenset()
    disabled: set[str] = set()
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _DIRECTIVE_RE.search(line)
        if match is None:
            continue
        body = _DISABLE_RE.fullmatch(match.group(1))
        if body is None:
            problems.append((rel, number, "expected '# nrl-lint: disable=<rule>[,<rule>] [reason]'"))
            continue
        for rule_id in (part.strip() for part in body.group(1).split(",")):
            if rule_id in RULES:
                disabled.add(rule_id)
            else:
                problems.append((rel, number, f"unknown rule {rule_id!r} in nrl-lint comment{hint(rule_id, RULES)}"))
    if problems:
        raise LintConfigError.of(problems)
    return frozenset(disabled)


def hint(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    candidates = list(choices)
    kebab = word.replace("_", "-")
    close = [kebab] if kebab != word and kebab in candidates else difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
