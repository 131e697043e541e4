"""Every lint rule, declared once: its id, default severity and a one-line summary.

Errors are what breaks a launch or the suite bookkeeping; everything else
(naming conventions, hardware stated twice and disagreeing) is a warning by
default. A repository changes severities in ``[tool.nrl-launch.lint.severity]``.
docs/lint.md describes each rule and the hand-written test it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"
OFF = "off"
SEVERITIES = (ERROR, WARNING, OFF)


class UnknownRuleError(LookupError):
    """A rule id that :data:`RULES` does not declare: a programming error."""


@dataclass(frozen=True)
class Rule:
    """One lint rule."""

    id: str
    severity: str  # the default: ERROR or WARNING
    summary: str


_DECLARED = (
    # --- errors: a launch or the suite bookkeeping breaks
    Rule("layout", ERROR, "the suite folder, a configured recipe root or the YAML root is missing"),
    Rule("file", ERROR, "a script, suite or YAML that cannot be read as UTF-8 text"),
    Rule("config", ERROR, "the CONFIG block is missing or does not evaluate"),
    Rule("suite-file", ERROR, "a configured suite file does not exist"),
    Rule("suite-entry", ERROR, "a suite entry that is not an existing recipe script"),
    Rule("suite-missing", ERROR, "a recipe script that no suite lists"),
    Rule("suite-duplicate", ERROR, "a recipe script listed more than once across all suites (subset suites apart)"),
    Rule("suite-subset", ERROR, "an entry of a subset suite that the suites it is a subset of do not list"),
    Rule("suite-gpus", ERROR, "a recipe whose GPUS_PER_NODE differs from its suite's gpus-per-node"),
    Rule("budget", ERROR, "a suite that needs more GPU-hours than its budget"),
    Rule("algo-unknown", ERROR, "a name whose algo is not in the configured algo map"),
    Rule("yaml-missing", ERROR, "a recipe script without its YAML mirror"),
    Rule("yaml-orphan", ERROR, "a recipe YAML without its script (and not a defaults: parent)"),
    Rule("yaml-invalid", ERROR, "a YAML that does not parse or whose top level is not a mapping"),
    Rule("yaml-defaults", ERROR, "a bad defaults: entry (missing parent, outside the repository, cycle)"),
    Rule("dryrun", ERROR, "--exec-dryrun: the script failed or timed out with TEST_DRYRUN=1"),
    # --- warnings: conventions
    Rule("suite-unconfigured", WARNING, "a *.txt in the suite folder that the configured suites do not name"),
    Rule("name", WARNING, "a script name that does not follow the naming grammar"),
    Rule("name-cluster", WARNING, "a name without <N>n<G>g and without a context-length token"),
    Rule("name-version", WARNING, "a name whose .vN is not at its end"),
    Rule("name-strategy", WARNING, "a name with nothing after its <N>n<G>g token"),
    Rule("placement", WARNING, "a recipe whose algo prefix (vlm_…) does not match its recipe root"),
    Rule("yaml-base", WARNING, "a recipe YAML that does not derive from its algo's base YAML"),
    Rule("cluster-config", WARNING, "the name's <N>n<G>g disagrees with CONFIG NUM_NODES / GPUS_PER_NODE"),
    Rule("cluster-yaml", WARNING, "the YAML's node count / GPUs per node disagree with the name (or CONFIG)"),
    Rule("context-hardware", WARNING, "a context-length name whose CONFIG does not set NUM_NODES and GPUS_PER_NODE"),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _DECLARED}


def rule(rule_id: str) -> Rule:
    """The declared rule ``rule_id``; UnknownRuleError for an undeclared id."""
    try:
        return RULES[rule_id]
    except KeyError:
        raise UnknownRuleError(f"lint rule {rule_id!r} is not declared in nrl_launch.lint.rules") from None
