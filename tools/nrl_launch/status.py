"""``nrl-launch status``: what became of each snapshotted experiment.

Gathering and formatting. Job states come from the Slurm client handed in
(one query for every job of every row); when it raises ``SlurmError`` every
job's state is ``unknown``.

An experiment named on the command line without a snapshot folder gets a row
whose ``problem`` is ``"no snapshot"`` (it is not an error): the table shows
every asked-for name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nrl_launch.errors import SlurmError, SnapshotError
from nrl_launch.layout import DEFAULT_LAYOUT
from nrl_launch.manifest import MANIFEST_NAME, read_manifest
from nrl_launch.slurm import SlurmClient
from nrl_launch.verdict import METRIC_FAIL, PASS
from nrl_launch.watch import from_runs

UNKNOWN = "unknown"
NO_SNAPSHOT = "no snapshot"

@dataclass(frozen=True)
class JobState:
    """One submitted run of an experiment and its Slurm state."""

    job_id: str
    run: str  # e.g. "2/3"
    state: str  # Slurm state, or "unknown"


@dataclass(frozen=True)
class StatusRow:
    """The status of one experiment's snapshot."""

    experiment: str
    snapshot: str  # the snapshot folder
    commit: str | None = None  # short commit id of the source tree
    dirty: bool | None = None
    runs: int = 0  # runs submitted (launcher + continue.sh)
    jobs: tuple[JobState, ...] = field(default_factory=tuple)
    steps: int | None = None  # max step in metrics.json
    metric_checks: str | None = None  # "PASS", "FAIL" or None (no checks yet)
    problem: str | None = None  # "no snapshot", or why the manifest is unusable


def _snapshot_dirs(root: Path, experiments: Sequence[str] | None) -> list[tuple[str, Path]]:
    """(name, folder) of the snapshots to report: the named ones, or every
    non-hidden folder under ``root``, sorted."""
    if experiments:
        return [(name, root / name) for name in experiments]
    try:
        return sorted((p.name, p) for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise SnapshotError(f"cannot list the snapshot folder {root}: {e}") from e


def max_step(metrics_file: Path) -> int | None:
    """Highest step key across every metric of a ``metrics.json``
    (``{"train/loss": {"1": 0.69, "2": 0.5}, ...}``); None if absent/unusable."""
    try:
        data = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    steps: list[int] = []
    for series in data.values():
        if isinstance(series, dict):
            steps.extend(int(k) for k in series if str(k).lstrip("-").isdigit())
    return max(steps) if steps else None


def _metrics_file(snapshot: Path, experiment: str, manifest: dict[str, Any]) -> Path | None:
    """Where the recipe of ``experiment`` writes its ``metrics.json``."""
    script = manifest.get("script")
    name = str(manifest.get("experiment") or experiment)
    candidates = []
    if isinstance(script, str) and script:
        candidates.append(snapshot / Path(script).parent / name / "metrics.json")
    candidates += [snapshot / root / name / "metrics.json" for root in DEFAULT_LAYOUT.recipe_roots]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def metric_checks(name: str, snapshot: Path, runs: Sequence[dict[str, str]]) -> str | None:
    """"PASS"/"FAIL" as WATCH would judge the experiment from its jobs' driver
    logs (same logs, same rule); None when no log has a Metric Checks line."""
    verdict = from_runs(name, snapshot, runs).verdict()
    return {PASS: "PASS", METRIC_FAIL: "FAIL"}.get(verdict.status)


def _query(slurm: SlurmClient, job_ids: list[str]) -> dict[str, str]:
    """States of ``job_ids``; empty when there are none or Slurm can't say."""
    if not job_ids:
        return {}
    try:
        return slurm.states(job_ids)
    except SlurmError:
        return {}


def _row(name: str, folder: Path) -> StatusRow:
    """The row of one snapshot, job states not yet filled in."""
    if not folder.is_dir():
        return StatusRow(name, str(folder), problem=NO_SNAPSHOT)
    try:
        manifest = read_manifest(folder)
    except SnapshotError as e:
        problem = f"no manifest ({MANIFEST_NAME})" if not (folder / MANIFEST_NAME).exists() else str(e)
        return StatusRow(name, str(folder), problem=problem)
    recorded = manifest.get("source")
    source: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    commit = str(source.get("commit") or "")[:12] or None
    runs = manifest["runs"]
    metrics = _metrics_file(folder, name, manifest)
    row = StatusRow(
        experiment=name,
        snapshot=str(folder),
        commit=commit,
        dirty=bool(source.get("dirty")) if "dirty" in source else None,
        runs=len(runs),
        jobs=tuple(JobState(r.get("job_id", ""), r.get("run", ""), UNKNOWN) for r in runs),
        steps=max_step(metrics) if metrics else None,
        metric_checks=metric_checks(name, folder, runs),
    )
    return row


def collect_status(snapshot_root: Path, experiments: Sequence[str] | None,
                   slurm: SlurmClient) -> list[StatusRow]:
    """One StatusRow per snapshot folder under ``snapshot_root`` (or per name in
    ``experiments``). Slurm is queried once for every job id of every row."""
    rows = [_row(name, folder) for name, folder in _snapshot_dirs(Path(snapshot_root), experiments)]
    job_ids = sorted({job.job_id for row in rows for job in row.jobs if job.job_id})
    states = _query(slurm, job_ids)
    return [_with_states(row, states) for row in rows]


def _with_states(row: StatusRow, states: dict[str, str]) -> StatusRow:
    """``row`` with each job's state filled from ``states``."""
    jobs = tuple(JobState(j.job_id, j.run, states.get(j.job_id) or UNKNOWN) for j in row.jobs)
    return StatusRow(**{**asdict(row), "jobs": jobs})


def _cell_jobs(row: StatusRow) -> str:
    """JOBS cell: ``id:STATE`` per job, comma separated."""
    return ",".join(f"{j.job_id}:{j.state}" for j in row.jobs) or "-"


def _cells(row: StatusRow) -> list[str]:
    """The table cells of one row."""
    if row.problem:
        return [row.experiment, "-", "-", "-", "-", "-", "-", row.problem]
    dirty = "-" if row.dirty is None else ("yes" if row.dirty else "no")
    return [row.experiment, row.commit or "-", dirty, str(row.runs), _cell_jobs(row),
            "-" if row.steps is None else str(row.steps), row.metric_checks or "-", ""]


TABLE_HEADER = ["EXPERIMENT", "COMMIT", "DIRTY", "RUNS", "JOBS", "STEPS", "CHECKS", "NOTE"]


def format_table(rows: Sequence[StatusRow]) -> str:
    """A fixed-width text table of ``rows`` (header included, no trailing newline)."""
    table = [TABLE_HEADER] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(TABLE_HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table)


def format_json(rows: Sequence[StatusRow]) -> str:
    """``rows`` as a JSON list of objects (jobs as a list of {job_id, run, state})."""
    return json.dumps([asdict(row) for row in rows], indent=2)
