"""``nrl-launch report``: the one library function the command calls.

Arguments are experiment names or suite files (``*.txt``, whose recipes'
experiments are reported, in the suite's order); none: every experiment of
the snapshot root. The report is written to ``--output`` (default
``<snapshot root>/nrl-report.html``, or ``.json`` with ``--format json``),
atomically, and its path returned for the command to print.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from nrl_launch.errors import UsageProblem
from nrl_launch.experiment.atomic import replace_file
from nrl_launch.experiment.folder import SnapshotRoot
from nrl_launch.report import history
from nrl_launch.report.collect import collect
from nrl_launch.report.compare import compare
from nrl_launch.report.model import ExperimentResult, Report, ReportError, report_from_data, report_to_data
from nrl_launch.slurm.client import SlurmClient

Emit = Callable[[str], None]
DEFAULT_NAME = "nrl-report"
_AGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``--since``: ``7d``, ``36h``, ``90m``, ``2w``, ``30s`` as seconds; UsageProblem otherwise."""
    match = _AGE_RE.fullmatch(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise UsageProblem(f"--since must be a positive age such as 7d, 36h, 90m or 2w (got {text!r})")
    return float(match.group(1)) * _UNIT[match.group(2)]


def targets(snapshots: SnapshotRoot, args: Sequence[str]) -> tuple[list[str] | None, str | None]:
    """(experiment names, or None for every experiment; the suite's name when exactly one suite
    file is given and nothing else). A suite's recipes that were never launched get a row saying
    so; an experiment named on its own (or as a recipe script) must have a snapshot: SnapshotError."""
    if not args:
        return None, None
    from nrl_launch.plan import experiment_name, suite_scripts

    names: list[str] = []
    for arg in args:
        if arg.endswith(".txt"):
            found = [experiment_name(path) for _, path in suite_scripts(arg)]
        else:
            found = [snapshots.find(experiment_name(arg) if arg.endswith(".sh") else arg).name]
        names += [name for name in found if name not in names]
    suite = Path(args[0]).stem if len(args) == 1 and args[0].endswith(".txt") else None
    return names, suite


def suite_budget(project_root: Path, suite: str | None, err: Emit) -> int | None:
    """The suite's GPU-hour budget in the lint configuration (``[tool.nrl-launch.lint.suites.<suite>]``)."""
    if suite is None:
        return None
    from nrl_launch.lint.options import LintConfigError
    from nrl_launch.lint.pyproject import load_config

    try:
        suites = load_config(project_root).suites or ()
    except LintConfigError as e:
        err(f"[WARNING]: the suite budget is left out: the lint configuration cannot be read ({e})")
        return None
    return next((s.budget for s in suites if s.name == suite), None)


def _other_side(other: str, snapshots: SnapshotRoot, names: Sequence[str] | None, slurm: SlurmClient,
                now: float) -> tuple[list[ExperimentResult], str]:
    """The rows to compare with: another report's JSON file, or another snapshot root (a folder,
    as given or under the project root) collected as this one."""
    path = Path(other)
    if not path.exists() and not path.is_absolute():
        path = snapshots.project_root / other
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ReportError(f"{other}: cannot read it as a report's JSON: {e}") from e
        return report_from_data(data, other), other
    if path.is_dir():
        resolved = path.resolve()
        root = SnapshotRoot(resolved.parent, resolved.name)
        return list(collect(root, names, slurm, now=now).experiments), str(resolved)
    raise UsageProblem(f"--compare {other}: no such file or folder (give a report's JSON or a snapshot root)")


def run_report(snapshots: SnapshotRoot, args: Sequence[str], slurm: SlurmClient, *, output: str | None,
               fmt: str, compare_with: str | None, since: str | None, db: str | None, err: Emit) -> Path:
    """Collect, compare, record in and read the history, write the page (or JSON); its path."""
    now = time.time()
    age = parse_age(since) if since is not None else None
    if not args and not snapshots.path.is_dir():
        raise ReportError(f"no snapshots to report: {snapshots.path} does not exist (see --project-root and "
                          "--code-snapshot-dirname)")
    names, suite = targets(snapshots, args)
    for name in names or ():
        snapshots.experiment(name)  # the name rule, before anything is asked or written
    report = collect(snapshots, names, slurm, now=now, suite=suite,
                     budget=suite_budget(snapshots.project_root, suite, err))
    if report.slurm_error:
        err(f"[WARNING]: job states and times are unknown: {report.slurm_error}")
    if compare_with is not None:
        rows, shown = _other_side(compare_with, snapshots, names, slurm, now)
        report = replace(report, comparison=compare(report.experiments, rows, shown))
    database = history.database_path(slurm.environ, db)
    if database is not None:
        _record(database, report, now, err)
    elif age is not None:
        raise UsageProblem(f"--since needs the history database, and {history.DB_VARIABLE} is empty: "
                           "give --db FILE")
    if age is not None and database is not None:
        report = replace(report, history=history.read_history(database, now - age, names))
    return write(report, _output(snapshots, output, fmt), fmt)


def _record(database: Path, report: Report, now: float, err: Emit) -> None:
    """Record the judged rows; a database that cannot take them is a warning, not a lost report."""
    try:
        history.record(database, report.experiments, now)
    except ReportError as e:
        err(f"[WARNING]: {e}")


def _output(snapshots: SnapshotRoot, output: str | None, fmt: str) -> Path:
    if output:
        return Path(output)
    return snapshots.path / f"{DEFAULT_NAME}.{fmt}"


def write(report: Report, path: Path, fmt: str) -> Path:
    """Write the report as ``fmt`` (html or json) at ``path``, atomically; the path."""
    if fmt == "json":
        text = json.dumps(report_to_data(report), separators=(",", ":")) + "\n"
    else:
        from nrl_launch.report.render import render_html  # Jinja2 and leather: only for the page

        text = render_html(report, path)
    replace_file(path, text.encode("utf-8"), mode=0o644, what="the report")  # SnapshotError naming the file
    return path.resolve()
