"""The results history (SQLite): written by report, WATCH and ``nrl-launch watch``; read by ``report --since``;
concurrent writers lose nothing; a newer schema is refused."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reportkit import CHECKS_FAIL, CHECKS_PASS, experiment, slurm_with_times, span_line

from nrl_launch.report import history
from nrl_launch.report.model import ExperimentResult
from testkit import REPO, FakeSlurm, finish, launcher_env, run_cli, start_nrl_launch

DAY = 86400.0


def rows(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT experiment, launch, verdict FROM results ORDER BY experiment, launch").fetchall()


def three_nights(base: Path) -> tuple[Path, list[Path]]:
    """One repository whose suite ran three nights, each in its own snapshot root
    (CODE_SNAPSHOT_DIRNAME=night-<i>): sft passes every night, dpo fails the second."""
    repo = base / "repo"
    now = time.time()
    roots = []
    for night in range(3):
        root = repo / f"night-{night}"
        when = now - (3 - night) * DAY + 60
        first = 100 * (night + 1)
        experiment(root, "sft", jobs=[str(first)], logs={str(first): CHECKS_PASS.format(step=4)}, submitted=when)
        experiment(root, "dpo", jobs=[str(first + 1)], submitted=when, shift=0.1 * night,
                   logs={str(first + 1): (CHECKS_FAIL if night == 1 else CHECKS_PASS).format(step=4)})
        roots.append(root)
    return repo, roots


def report(repo: Path, dirname: str, db: Path, *args: str) -> dict:
    out = repo / f"{dirname}.json"
    result = run_cli("report", "--project-root", str(repo), "--code-snapshot-dirname", dirname, "--db", str(db),
                     "--format", "json", "-o", str(out), *args, env={}, slurm=FakeSlurm())
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_since_shows_each_recipes_nights(tmp_path: Path) -> None:
    repo, roots = three_nights(tmp_path)
    db = tmp_path / "history.sqlite3"
    for root in roots:
        report(repo, root.name, db)
    report(repo, roots[-1].name, db)  # the same launch again: its row is updated, not doubled
    assert len(rows(db)) == 6
    data = report(repo, roots[-1].name, db, "--since", "7d")
    nights = {r["experiment"]: [n["verdict"] for n in r["nights"]] for r in data["history"]["recipes"]}
    assert nights == {"dpo": ["METRIC PASS", "METRIC FAIL", "METRIC PASS"], "sft": ["METRIC PASS"] * 3}
    dpo = next(r for r in data["history"]["recipes"] if r["experiment"] == "dpo")
    assert [dict(n["metrics"])["train/loss"] for n in dpo["nights"]] == [0.25, 0.35, 0.45]  # final values
    recent = report(repo, roots[-1].name, db, "--since", "36h")
    assert {r["experiment"]: len(r["nights"]) for r in recent["history"]["recipes"]} == {"dpo": 1, "sft": 1}


def test_the_page_shows_three_nights_per_recipe(tmp_path: Path) -> None:
    repo, roots = three_nights(tmp_path)
    db = tmp_path / "h.sqlite3"
    for root in roots:
        report(repo, root.name, db)
    out = tmp_path / "page.html"
    result = run_cli("report", "--project-root", str(repo), "--code-snapshot-dirname", roots[-1].name,
                     "--db", str(db), "--since", "7d", "-o", str(out), env={}, slurm=FakeSlurm())
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count('<tr class="night" data-experiment="sft">') == 3
    assert page.count('<tr class="night" data-experiment="dpo">') == 3


def test_a_running_experiment_is_not_recorded(tmp_path: Path) -> None:
    root = tmp_path / "repo" / "code_snapshots"
    experiment(root, "busy", jobs=["5"])
    db = tmp_path / "h.sqlite3"
    slurm = slurm_with_times([span_line("5", "RUNNING", time.time() - 60, time.time() - 30)])
    result = run_cli("report", "--project-root", str(root.parent), "--db", str(db), "-o", str(tmp_path / "p.html"),
                     env={}, slurm=slurm)
    assert result.exit_code == 0, result.output
    assert not db.exists()  # nothing judged, nothing recorded


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    repo, roots = three_nights(tmp_path)
    db = tmp_path / "h.sqlite3"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA user_version = 7")
    out = tmp_path / "p.html"
    args = ["report", "--project-root", str(repo), "--code-snapshot-dirname", roots[0].name, "--db", str(db),
            "-o", str(out)]
    result = run_cli(*args, env={}, slurm=FakeSlurm())  # the report is still written, the history not
    assert result.exit_code == 0, result.output
    assert "has schema version 7, newer than this nrl-launch's (1): upgrade nrl-launch" in result.stderr
    out.unlink()
    result = run_cli(*args, "--since", "7d", env={}, slurm=FakeSlurm())  # the history is asked for: an error
    assert result.exit_code == 1 and "has schema version 7" in result.stderr and not out.exists()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)  # left as it was


def test_where_the_database_is() -> None:
    assert history.database_path({"HOME": "/h"}) == Path("/h/.local/state/nrl-launch/history.sqlite3")
    assert history.database_path({"HOME": "/h", "XDG_STATE_HOME": "/s"}) == Path("/s/nrl-launch/history.sqlite3")
    assert history.database_path({"NRL_REPORT_DB": "/x.db", "HOME": "/h"}) == Path("/x.db")
    assert history.database_path({"NRL_REPORT_DB": ""}) is None  # empty: no history
    assert history.database_path({"NRL_REPORT_DB": ""}, "/o.db") == Path("/o.db")


WRITER = """
import sys, time
from pathlib import Path
from nrl_launch.report.history import record
from nrl_launch.report.model import ExperimentResult
db, worker, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.001)
for i in range(count):  # one transaction each: as many chances to collide as possible
    row = ExperimentResult(f"exp-{worker}-{i}", "METRIC PASS", "ok", snapshot="/r/code_snapshots/x", launch=f"{i}@t")
    record(db, [row], time.time())
"""


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    db, go, count = tmp_path / "h.sqlite3", tmp_path / "go", 150
    env = {"PYTHONPATH": f"{REPO / 'tools'}", "PATH": "/usr/bin:/bin"}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), name, str(count), str(go)], env=env,
                                stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    time.sleep(0.5)  # both are importing, then waiting for the start
    go.touch()
    for proc in writers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    found = rows(db)
    assert len(found) == 2 * count
    assert {name for name, _, _ in found} == {f"exp-{w}-{i}" for w in "ab" for i in range(count)}
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_watch_records_the_verdicts_it_printed(tmp_path: Path) -> None:
    root = tmp_path / "repo" / "code_snapshots"
    experiment(root, "good", jobs=["1001"], logs={"1001": CHECKS_PASS.format(step=4)})
    experiment(root, "bad", jobs=["1002"], logs={"1002": CHECKS_FAIL.format(step=4)})
    db = tmp_path / "h.sqlite3"
    now = time.time()
    slurm = slurm_with_times([span_line("1001", "COMPLETED", now - 99, now - 90, now - 30),
                              span_line("1002", "FAILED", now - 99, now - 90, now - 30, exit_code="1:0")])
    result = run_cli("watch", "--project-root", str(root.parent), "--watch-interval", "0.01", "good", "bad",
                     env={"NRL_REPORT_DB": str(db)}, slurm=slurm)
    assert result.exit_code == 1, result.output
    assert "[METRIC PASS]    good" in result.stdout and "[METRIC FAIL]    bad" in result.stdout
    assert [(name, verdict) for name, _, verdict in rows(db)] == [("bad", "METRIC FAIL"), ("good", "METRIC PASS")]
    with sqlite3.connect(db) as con:
        used, jobs = con.execute("SELECT gpu_hours_used, jobs FROM results WHERE experiment = 'good'").fetchone()
    assert used == pytest.approx(60 / 3600 * 8, abs=1e-3) and json.loads(jobs)[0]["state"] == "COMPLETED"


def test_a_history_that_cannot_be_written_changes_no_verdict(tmp_path: Path) -> None:
    root = tmp_path / "repo" / "code_snapshots"
    experiment(root, "good", jobs=["1001"], logs={"1001": CHECKS_PASS.format(step=4)})
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = run_cli("watch", "--project-root", str(root.parent), "--watch-interval", "0.01", "good",
                     env={"NRL_REPORT_DB": str(blocked / "h.sqlite3")}, slurm=FakeSlurm())
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("[INFO]: All tests passed. Exiting with status 0.\n")
    assert "[WARNING]: the verdicts were not recorded in the history database" in result.stderr


def test_no_history_when_the_variable_is_empty(tmp_path: Path) -> None:
    root = tmp_path / "repo" / "code_snapshots"
    experiment(root, "good", jobs=["1001"], logs={"1001": CHECKS_PASS.format(step=4)})
    result = run_cli("watch", "--project-root", str(root.parent), "--watch-interval", "0.01", "good",
                     env={"NRL_REPORT_DB": "", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")},
                     slurm=FakeSlurm())
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "state").exists() and not (tmp_path / ".local").exists()


def test_record_keeps_only_judged_rows(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    made = [ExperimentResult(name, status, "", snapshot="/r/s/x", launch="1@t") for name, status in
            [("a", "METRIC PASS"), ("b", "RUNNING"), ("c", "NO SNAPSHOT"), ("d", "CANCELLED"), ("e", "GENERAL FAIL")]]
    assert history.record(db, made, time.time()) == 3
    assert [name for name, _, _ in rows(db)] == ["a", "d", "e"]


def test_two_watches_at_once_lose_nothing(tmp_path: Path, slurm_on_path: object) -> None:
    """Two ``nrl-launch watch`` processes ending together, 30 experiments each, one database."""
    root = tmp_path / "repo" / "code_snapshots"
    groups = {side: [f"{side}-{i:02d}" for i in range(30)] for side in ("a", "b")}
    for side, names in groups.items():
        for i, name in enumerate(names):
            job = str(5000 + 100 * (side == "b") + i)
            experiment(root, name, jobs=[job], logs={job: CHECKS_PASS.format(step=4)}, steps=None)
    db = tmp_path / "h.sqlite3"
    env = launcher_env(NRL_REPORT_DB=str(db))
    watches = [start_nrl_launch("watch", "--project-root", str(root.parent), "--watch-interval", "0.2", *names,
                                cwd=tmp_path, env=env) for names in groups.values()]
    for proc in watches:
        code, out, err = finish(proc, timeout=120)
        assert code == 0, err
        assert out.endswith("[INFO]: All tests passed. Exiting with status 0.\n") and "[WARNING]" not in err
    assert sorted(name for name, _, _ in rows(db)) == sorted(groups["a"] + groups["b"])
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
