"""Findings, the report, and the collector that applies the configuration to them.

Checks call :meth:`Collector.add` with a declared rule id; the collector gives
the finding the configured severity, drops ``off`` rules, and when the report
is built drops findings that ``per-file-ignores`` or an inline
``# nrl-lint: disable=…`` comment of the finding's file switch off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrl_launch.lint.options import LintConfig, Problem
from nrl_launch.lint.rules import ERROR, OFF, WARNING, rule


@dataclass(frozen=True)
class Finding:
    """One problem: repo-relative ``path``, 1-based ``line`` or None, ``rule`` id, ``severity``."""

    path: str
    line: int | None
    rule: str
    severity: str
    message: str

    def sort_key(self) -> tuple[str, bool, int, str, str]:
        """Order of the report: path, then line (findings without a line first)."""
        return (self.path, self.line is not None, self.line or 0, self.rule, self.message)

    def as_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict."""
        return {"path": self.path, "line": self.line, "rule": self.rule, "severity": self.severity,
                "message": self.message}


@dataclass(frozen=True)
class SuiteHours:
    """A suite's GPU-hours, as ``DRYRUN=1 tools/launch`` adds them up."""

    name: str
    path: str
    hours: int
    budget: int | None
    uncounted: int  # entries without a valid CONFIG block (not in ``hours``)


@dataclass(frozen=True)
class LintReport:
    """The result of a lint run: sorted findings plus what was looked at."""

    root: Path
    findings: tuple[Finding, ...]
    files: int = 0  # distinct files read
    scripts: int = 0
    suites: int = 0
    yamls: int = 0
    suite_hours: tuple[SuiteHours, ...] = ()

    @property
    def errors(self) -> int:
        """Number of error findings."""
        return sum(f.severity == ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        """Number of warning findings."""
        return sum(f.severity == WARNING for f in self.findings)

    def failed(self, strict: bool = False) -> bool:
        """True when the lint should exit 1: any error, or with ``strict`` any finding."""
        return bool(self.errors or (strict and self.findings))


def printable(text: str) -> str:
    """``text`` with undecodable file-name bytes (surrogate escapes) replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


class Collector:
    """Gathers findings under a configuration (see the module docstring)."""

    def __init__(self, config: LintConfig) -> None:
        self.config = config
        self._found: set[Finding] = set()
        self._disabled: dict[str, frozenset[str]] = {}
        self.files_read: set[str] = set()
        self.config_problems: list[Problem] = []  # malformed inline comments

    def add(self, path: str, line: int | None, rule_id: str, message: str) -> None:
        """Record a finding of the declared rule ``rule_id`` (UnknownRuleError otherwise)."""
        severity = self.config.severity(rule(rule_id).id)
        if severity != OFF:
            self._found.add(Finding(printable(path), line, rule_id, severity, printable(message)))

    def disable(self, path: str, rule_ids: frozenset[str]) -> None:
        """Rules an inline comment of ``path`` switches off for that file."""
        if rule_ids:
            self._disabled[printable(path)] = rule_ids

    def findings(self) -> tuple[Finding, ...]:
        """The findings that survive the ignores, in report order."""
        kept = (f for f in self._found
                if f.rule not in self._disabled.get(f.path, ()) and not self.config.ignored(f.path, f.rule))
        return tuple(sorted(kept, key=Finding.sort_key))
