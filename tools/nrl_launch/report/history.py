"""The results history: every judged experiment, night after night, in one SQLite file.

WATCH, ``nrl-launch watch`` and ``nrl-launch report`` record each judged
experiment of the latest launch they look at (verdict, reason, commit,
GPU-hours, the job spans, the final value of each metric); ``report --since``
reads each recipe's nights back. One row per (snapshot root, experiment,
launch): judging the same launch again updates its row.

Where: ``NRL_REPORT_DB`` when set (empty: record nothing), else
``$XDG_STATE_HOME/nrl-launch/history.sqlite3`` (``~/.local/state/…``);
``report --db FILE`` overrides both.

Several writers at once (two watches ending together, a report) never
corrupt it nor lose a row: the database runs in WAL mode, every write is one
``BEGIN IMMEDIATE`` transaction (a writer takes the write lock before it
reads), and a writer that finds the lock taken waits for it (the busy
timeout) instead of failing. The schema version is SQLite's ``user_version``:
a database written by a newer nrl-launch is refused with a clear error
rather than misread.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from nrl_launch.report.model import (
    JUDGED,
    ExperimentResult,
    History,
    Night,
    RecipeHistory,
    ReportError,
)

DB_VARIABLE = "NRL_REPORT_DB"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another one's transaction
_SCHEMA = """
CREATE TABLE results (
    snapshot_root TEXT NOT NULL,
    experiment TEXT NOT NULL,
    launch TEXT NOT NULL,
    launched_at REAL,
    recorded_at REAL NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    commit_id TEXT,
    gpu_hours_planned INTEGER,
    gpu_hours_used REAL,
    wall_seconds REAL,
    steps INTEGER,
    max_steps INTEGER,
    jobs TEXT NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (snapshot_root, experiment, launch)
);
CREATE INDEX results_by_time ON results (launched_at);
"""
_UPSERT = """
INSERT INTO results VALUES (:snapshot_root, :experiment, :launch, :launched_at, :recorded_at, :verdict, :reason,
    :commit_id, :gpu_hours_planned, :gpu_hours_used, :wall_seconds, :steps, :max_steps, :jobs, :metrics)
ON CONFLICT (snapshot_root, experiment, launch) DO UPDATE SET
    recorded_at = excluded.recorded_at, verdict = excluded.verdict, reason = excluded.reason,
    commit_id = excluded.commit_id, gpu_hours_planned = excluded.gpu_hours_planned,
    gpu_hours_used = excluded.gpu_hours_used, wall_seconds = excluded.wall_seconds, steps = excluded.steps,
    max_steps = excluded.max_steps, jobs = excluded.jobs, metrics = excluded.metrics
"""


def database_path(environ: Mapping[str, str], override: str | None = None) -> Path | None:
    """The history database: ``override`` (``--db``), else ``NRL_REPORT_DB`` (empty: None, record
    nothing), else ``$XDG_STATE_HOME/nrl-launch/history.sqlite3``."""
    if override:
        return Path(override)
    if DB_VARIABLE in environ:
        return Path(environ[DB_VARIABLE]) if environ[DB_VARIABLE] else None
    state = environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"),
                                                           ".local", "state")
    return Path(state) / "nrl-launch" / "history.sqlite3"


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: the write lock taken at its start (waiting up to the busy timeout)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    """The database at ``path`` (made when missing), its schema checked; ReportError when it cannot
    be used (unreadable, not a database, written by a newer nrl-launch)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except (OSError, sqlite3.Error) as e:
        raise ReportError(f"cannot open the history database {path}: {e}") from e
    try:
        try:
            _when_unlocked(lambda: _prepare(db, path))
        except sqlite3.DatabaseError as e:
            raise ReportError(f"cannot use the history database {path}: {e}") from e
        yield db
    finally:
        db.close()


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """WAL mode (kept by the file once set) and the schema."""
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode=WAL")
    _check_schema(db, path)


def _when_unlocked(step: Callable[[], None]) -> None:
    """Run ``step``, again after a short pause while another process holds the lock it needs, for
    up to the busy timeout. Switching to WAL mode, and a read that must turn into a write, get
    "database is locked" at once from SQLite, without waiting (which could deadlock): two
    processes opening a new database together meet exactly this."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.01, 0.05))


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new database; refuse one of a newer version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise ReportError(f"the history database {path} has schema version {version}, newer than this "
                          f"nrl-launch's ({SCHEMA_VERSION}): upgrade nrl-launch, or use another database "
                          f"({DB_VARIABLE} or --db)")
    with _transaction(db):
        # another process may have created it since the look above: look again under the lock
        if db.execute("PRAGMA user_version").fetchone()[0] == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _row(result: ExperimentResult, snapshot_root: str, now: float) -> dict[str, object]:
    jobs = [{"job_id": j.job_id, "run": j.run, "state": j.state, "exit_code": j.exit_code, "nodes": j.nodes,
             "submit": j.submit, "start": j.start, "end": j.end} for j in result.jobs]
    return {"snapshot_root": snapshot_root, "experiment": result.name, "launch": result.launch,
            "launched_at": result.launched_at, "recorded_at": now, "verdict": result.status, "reason": result.reason,
            "commit_id": result.commit, "gpu_hours_planned": result.gpu_hours_planned,
            "gpu_hours_used": result.gpu_hours_used, "wall_seconds": result.wall_seconds, "steps": result.steps,
            "max_steps": result.max_steps, "jobs": json.dumps(jobs), "metrics": json.dumps(result.final_metrics())}


def record(path: Path, results: Sequence[ExperimentResult], now: float) -> int:
    """Record every judged row of ``results`` (one transaction); how many were recorded. The
    snapshot root of each row is its snapshot's parent folder."""
    rows = [_row(r, str(Path(r.snapshot).parent), now) for r in results if r.status in JUDGED and r.launch]
    if not rows:
        return 0
    def write(db: sqlite3.Connection) -> None:
        with _transaction(db):
            db.executemany(_UPSERT, rows)

    with opened(path) as db:
        try:
            _when_unlocked(lambda: write(db))
        except sqlite3.Error as e:
            raise ReportError(f"cannot record in the history database {path}: {e}") from e
    return len(rows)


def _metrics(text: str) -> tuple[tuple[str, float], ...]:
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(data, dict):
        return ()
    return tuple((str(k), float(v)) for k, v in data.items() if isinstance(v, (int, float)))


def read_history(path: Path, since: float, names: Sequence[str] | None = None) -> History:
    """Each experiment's nights launched since ``since`` (seconds since the epoch), oldest first;
    only ``names`` when given. A missing database holds no night."""
    if not path.exists():
        return History(str(path), since, ())
    with opened(path) as db:
        try:
            rows = db.execute("SELECT experiment, launch, launched_at, verdict, reason, commit_id, gpu_hours_used, "
                              "metrics FROM results WHERE COALESCE(launched_at, recorded_at) >= ? "
                              "ORDER BY experiment, COALESCE(launched_at, recorded_at), launch", (since,)).fetchall()
        except sqlite3.Error as e:
            raise ReportError(f"cannot read the history database {path}: {e}") from e
    wanted = None if names is None else set(names)
    by_name: dict[str, list[Night]] = {}
    for name, launch, at, verdict, why, commit, used, metrics in rows:
        if wanted is None or name in wanted:
            by_name.setdefault(name, []).append(Night(launch, at, verdict, why, commit, used, _metrics(metrics)))
    order = list(names) if names is not None else sorted(by_name)
    return History(str(path), since, tuple(RecipeHistory(n, tuple(by_name[n])) for n in order if n in by_name))
