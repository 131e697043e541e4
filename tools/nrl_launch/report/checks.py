"""The Metric Checks a recipe printed, read back from the verdict's evidence.

Recipes print their checks under the ``Metric Checks`` line, one per line
(``examples/cpu_trainer.py``)::

    Metric Checks
      [PASS] train/loss@40 = 0.1234 < 0.5
      [FAIL] train/accuracy@40 = 0.8 > 0.9

``< X`` is a maximum and ``> X`` a minimum: the thresholds a report draws on
the curves. A line of another shape is no check (its threshold cannot be
read) and is left out; the verdict itself never depends on this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from nrl_launch.report.model import Check

# "[PASS] name@step = value < bound", anywhere in a grep line ("<log>:" or "<log>-" before it)
_CHECK_RE = re.compile(r"\[(PASS|FAIL)\]\s+(\S+)@(\d+)\s+=\s+(\S+)\s+([<>])\s+(\S+)\s*$")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_checks(evidence: Iterable[str]) -> tuple[Check, ...]:
    """Every check in the evidence lines, the last one printed for each metric and bound (a later
    run of a chain checks the same final step again), in the order first printed."""
    found: dict[tuple[str, str], Check] = {}
    for line in evidence:
        match = _CHECK_RE.search(line)
        if match is None:
            continue
        mark, metric, step, value, op, bound = match.groups()
        limit = _number(bound)
        if limit is None:
            continue
        found[(metric, op)] = Check(metric, int(step), _number(value), op, limit, mark == "PASS")
    return tuple(found.values())
