"""Printing a report: ``text``, ``json`` or ``github`` (Actions annotations).

Findings come sorted by path, then line (findings without a line first), then
rule. :func:`summary` is the one-line ``N errors, M warnings in K files``
(K: the files the lint read); its wording never changes, so scripts may parse it.
"""

from __future__ import annotations

import json

from nrl_launch.errors import UsageProblem
from nrl_launch.lint.report import Finding, LintReport

FORMATS = ("text", "json", "github")


def summary(report: LintReport) -> str:
    """``N errors, M warnings in K files``."""
    def count(number: int, noun: str) -> str:
        return f"{number} {noun}{'s' * (number != 1)}"

    return f"{count(report.errors, 'error')}, {count(report.warnings, 'warning')} in {count(report.files, 'file')}"


def render(report: LintReport, fmt: str) -> str:
    """The findings in format ``fmt`` (without the summary line for text and github)."""
    if fmt == "text":
        return "\n".join(_text_line(f) for f in report.findings)
    if fmt == "github":
        return "\n".join(_annotation(f) for f in report.findings)
    if fmt == "json":
        return json.dumps(_payload(report), indent=2)
    raise UsageProblem(f"unknown lint format {fmt!r} (choose from {', '.join(FORMATS)})")


def _text_line(finding: Finding) -> str:
    """``path[:line]: severity: message  [rule]``."""
    where = finding.path if finding.line is None else f"{finding.path}:{finding.line}"
    return f"{where}: {finding.severity}: {finding.message}  [{finding.rule}]"


def _escape_data(text: str) -> str:
    # GitHub's workflow-command encoding of a message.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # Property values additionally encode the separators ':' and ','.
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(finding: Finding) -> str:
    """``::error file=…,line=…,title=…::message`` (``::warning`` for warnings)."""
    props = [f"file={_escape_property(finding.path)}"]
    if finding.line is not None:
        props.append(f"line={finding.line}")
    props.append(f"title={_escape_property('nrl-lint ' + finding.rule)}")
    return f"::{finding.severity} {','.join(props)}::{_escape_data(finding.message)}"


def _payload(report: LintReport) -> dict[str, object]:
    by_rule: dict[str, int] = {}
    for finding in report.findings:
        by_rule[finding.rule] = by_rule.get(finding.rule, 0) + 1
    return {
        "findings": [f.as_dict() for f in report.findings],
        "summary": {
            "errors": report.errors,
            "warnings": report.warnings,
            "files": report.files,
            "scripts": report.scripts,
            "suites": report.suites,
            "yamls": report.yamls,
            "by_rule": dict(sorted(by_rule.items())),
            "suite_hours": [{"suite": h.name, "path": h.path, "gpu_hours": h.hours, "budget": h.budget,
                             "uncounted": h.uncounted} for h in report.suite_hours],
        },
    }
