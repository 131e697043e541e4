"""``--compare``: this report against another one (last night's).

The other side is another report's JSON (``--format json``) or another
snapshot root (e.g. last night's ``CODE_SNAPSHOT_DIRNAME``), collected as
this one is. Experiments are matched by name. A verdict that changed is
listed, newly failing and newly passing ones apart; each metric both sides
have is compared at the last step both have, and the deltas are sorted by
size: the change relative to the earlier value, largest first (a change from
0 first of all), then the absolute change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from nrl_launch.follow.verdict import PASS
from nrl_launch.report.model import FAILED, MISSING, Comparison, Delta, ExperimentResult, VerdictChange


def _deltas(now: ExperimentResult, before: ExperimentResult) -> list[Delta]:
    earlier = {s.name: dict(s.points) for s in before.series}
    found = []
    for series in now.series:
        old = earlier.get(series.name)
        if not old:
            continue
        common = [step for step, _ in series.points if step in old]
        if common:
            step = max(common)
            found.append(Delta(now.name, series.name, step, old[step], dict(series.points)[step]))
    return found


def _size(delta: Delta) -> tuple[float, float]:
    relative = delta.relative
    if relative is None:
        relative = math.inf if delta.change else 0.0
    return abs(relative), abs(delta.change)


def compare(current: Sequence[ExperimentResult], other: Sequence[ExperimentResult], other_name: str) -> Comparison:
    """What changed from ``other`` to ``current``. A suite entry one side never launched (``NO
    SNAPSHOT``) is only on the other side, not a verdict change."""
    current = [r for r in current if r.status != MISSING]
    other = [r for r in other if r.status != MISSING]
    before = {r.name: r for r in other}
    here = {r.name: r for r in current}
    changed, deltas = [], []
    for result in current:
        old = before.get(result.name)
        if old is None:
            continue
        if old.status != result.status:
            changed.append(VerdictChange(result.name, old.status, result.status))
        deltas += _deltas(result, old)
    deltas.sort(key=_size, reverse=True)
    return Comparison(
        other=other_name,
        newly_failing=tuple(c for c in changed if c.before == PASS and c.after in FAILED),
        newly_passing=tuple(c for c in changed if c.before in FAILED and c.after == PASS),
        changed=tuple(changed),
        only_here=tuple(r.name for r in current if r.name not in before),
        only_there=tuple(r.name for r in other if r.name not in here),
        deltas=tuple(d for d in deltas if d.change != 0),
    )
