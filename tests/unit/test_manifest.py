"""Tests of nrl_launch.experiment.manifest: contents, the append format, stale_reasons."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import nrl_launch
from nrl_launch.errors import SnapshotError
from nrl_launch.experiment.manifest import (
    MANIFEST_NAME,
    append_run,
    build_manifest,
    read_manifest,
    render_manifest,
    stale_reasons,
    write_manifest,
)
from nrl_launch.experiment.snapshot import SnapshotBatch
from testkit import REPO, copy_tree, finish, git, wait_for_file, write

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@pytest.fixture
def dirty_tree(tree_template: Path, tmp_path: Path) -> Path:
    """A tree with a submodule and uncommitted edits in both repositories."""
    top = copy_tree(tree_template, tmp_path)
    write(top / "README.md", "edited\n")
    write(top / "third_party/sub/sub.txt", "edited in the submodule\n")
    return top


def manifest_for(root: Path, **kwargs) -> dict:
    """build_manifest for the working tree at ``root``."""
    from nrl_launch.experiment.gitrepo import find_repo

    return build_manifest(find_repo(root), config_values={"NUM_NODES": "2", "NUM_MINUTES": "30"},
                          gpu_hours=8, experiment="exp1", script="tests/test_suites/llm/exp1.sh",
                          created=WHEN, **kwargs)


def test_manifest_contents_dirty_tree_with_submodule(dirty_tree: Path, tmp_path: Path) -> None:
    from nrl_launch.experiment.gitrepo import list_tracked_files

    batch = SnapshotBatch(dirty_tree, list_tracked_files(dirty_tree))
    dest = tmp_path / "snaps/exp1"
    result = batch.ensure(dest, manifest=manifest_for(dirty_tree))
    data = read_manifest(dest)
    assert list(data)[-1] == "runs" and data["runs"] == []
    assert data["experiment"] == "exp1"
    assert data["created"] == "2026-01-02T03:04:05+00:00"
    assert data["launcher_version"] == nrl_launch.__version__
    source = data["source"]
    assert source["repository"] == str(dirty_tree.resolve())
    assert source["commit"] == git(dirty_tree, "rev-parse", "HEAD").strip()
    assert source["subject"] == "Add: the first version (with a sub-module)!"
    assert source["dirty"] is True
    assert source["dirty_files"] == ["README.md", "third_party/sub/sub.txt"]
    assert set(source["submodules"]) == {"third_party/sub", "third_party/sub/deps/nested"}
    assert source["submodules"]["third_party/sub"] == git(dirty_tree / "third_party/sub", "rev-parse",
                                                          "HEAD").strip()
    assert data["snapshot"] == {"mode": result.mode_used, "files": result.files, "bytes": result.bytes}
    assert data["config"] == {"NUM_NODES": "2", "NUM_MINUTES": "30"}
    assert data["gpu_hours"] == 8


def test_file_ends_with_bare_runs_line(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"experiment": "x", "runs": []})
    text = (tmp_path / MANIFEST_NAME).read_text()
    assert text.endswith("\nruns:\n")
    assert yaml.safe_load(text)["runs"] is None
    assert read_manifest(tmp_path)["runs"] == []


def test_append_run_and_shell_append(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"experiment": "x", "runs": []})
    before = (tmp_path / MANIFEST_NAME).read_text()
    append_run(tmp_path, "123", "1/3", when=WHEN)
    assert (tmp_path / MANIFEST_NAME).read_text().startswith(before)  # appended, not rewritten
    append_run(tmp_path, 124, "2/3", via="continue.sh", when="2026-01-02T04:00:00+00:00")
    subprocess.run(["bash", "-c", "printf '%s\\n' \"- job_id: '125'\" \"  submitted_at: "
                    "'2026-01-02T05:00:00+00:00'\" \"  run: 3/3\" \"  via: continue.sh\" >> " + MANIFEST_NAME],
                   cwd=tmp_path, check=True)
    # an unquoted id and timestamp written by hand still read back as strings
    with open(tmp_path / MANIFEST_NAME, "a") as handle:
        handle.write("- job_id: 126\n  submitted_at: 2026-01-02T06:00:00Z\n  run: 4/3\n  via: continue.sh\n")
    runs = read_manifest(tmp_path)["runs"]
    assert runs[0] == {"job_id": "123", "submitted_at": "2026-01-02T03:04:05+00:00", "run": "1/3",
                       "via": "launcher"}
    assert runs[1] == {"job_id": "124", "submitted_at": "2026-01-02T04:00:00+00:00", "run": "2/3",
                       "via": "continue.sh"}
    assert runs[2]["job_id"] == "125" and runs[2]["run"] == "3/3"
    assert runs[3]["job_id"] == "126" and runs[3]["submitted_at"] == "2026-01-02T06:00:00+00:00"
    assert read_manifest(tmp_path)["experiment"] == "x"


def test_written_runs_stay_appendable(tmp_path: Path) -> None:
    manifest = {"a": 1, "runs": [{"job_id": "1", "submitted_at": "t", "run": "1/2", "via": "launcher"}]}
    text = render_manifest(manifest)
    assert text.endswith("runs:\n- job_id: '1'\n  submitted_at: t\n  run: 1/2\n  via: launcher\n")
    write_manifest(tmp_path, manifest)
    append_run(tmp_path, "2", "2/2", when=WHEN)
    assert [r["job_id"] for r in read_manifest(tmp_path)["runs"]] == ["1", "2"]


def test_append_run_without_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("experiment: x\nruns:")
    append_run(tmp_path, "7", "1/1", when=WHEN)
    assert read_manifest(tmp_path)["runs"][0]["job_id"] == "7"


def test_append_run_errors(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no manifest"):
        append_run(tmp_path, "1", "1/1")
    write_manifest(tmp_path, {"runs": []})
    with pytest.raises(SnapshotError, match="invalid run origin"):
        append_run(tmp_path, "1", "1/1", via="cron")


def test_read_manifest_missing_or_corrupt(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=str(tmp_path / MANIFEST_NAME)):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("a: [unclosed\n")
    with pytest.raises(SnapshotError, match="corrupt manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("- just a list\n")
    with pytest.raises(SnapshotError, match="not a mapping"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("runs: 5\n")
    with pytest.raises(SnapshotError, match="'runs' is not a list"):
        read_manifest(tmp_path)


def test_stale_reasons(dirty_tree: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    info = find_repo(dirty_tree)
    manifest = manifest_for(dirty_tree)
    assert stale_reasons(manifest, info) == []

    other = replace(info, dirty_files=("README.md",))
    [reason] = stale_reasons(manifest, other)
    assert "uncommitted changes differ" in reason and info.head_sha[:12] in reason

    clean = replace(info, dirty_files=())
    [reason] = stale_reasons(manifest, clean)
    assert "had uncommitted changes" in reason and "is clean" in reason

    git(dirty_tree, "commit", "-q", "-am", "second")
    moved = find_repo(dirty_tree)
    reasons = stale_reasons(manifest, moved)
    assert any(info.head_sha[:12] in r and moved.head_sha[:12] in r for r in reasons)


def test_stale_reasons_submodule_commit(dirty_tree: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    info = find_repo(dirty_tree)
    manifest = manifest_for(dirty_tree)
    moved = replace(info, submodules={**info.submodules, "third_party/sub": "f" * 40})
    [reason] = stale_reasons(manifest, moved)
    assert reason.startswith("submodule third_party/sub was at")


# One writer process: waits for the "go" file, then records COUNT runs.
APPENDER = """
import sys, time
from pathlib import Path
from nrl_launch.experiment.manifest import append_run
folder, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(folder / f"ready-{worker}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
for i in range(count):
    append_run(folder, f"{worker}{i:04d}", f"{i + 1}/{count}")
"""


def test_concurrent_appends_lose_no_entry(tmp_path: Path) -> None:
    # 4 processes x 150 runs, all at once: each entry is one O_APPEND write.
    write_manifest(tmp_path, {"experiment": "x", "runs": []})
    env = {**os.environ, "PYTHONPATH": str(REPO / "tools")}
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), str(worker), "150"], env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for worker in range(1, 5)]
    for worker in range(1, 5):
        wait_for_file(tmp_path / f"ready-{worker}")
    (tmp_path / "go").touch()
    assert [finish(proc)[0] for proc in procs] == [0] * 4
    recorded = [run["job_id"] for run in read_manifest(tmp_path)["runs"]]
    assert sorted(recorded) == sorted(f"{worker}{i:04d}" for worker in range(1, 5) for i in range(150))


def test_timestamps_are_iso_8601_utc_with_an_offset(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"experiment": "x", "runs": []})
    append_run(tmp_path, "1", "1/1")
    append_run(tmp_path, "2", "2/2", when=dt.datetime(2026, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    first, second = read_manifest(tmp_path)["runs"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first["submitted_at"])
    assert second["submitted_at"] == "2026-01-02T03:04:05+00:00"  # converted to UTC


def test_append_run_keeps_non_utf8_text_readable(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"experiment": "x", "runs": []})
    append_run(tmp_path, "1", "1/1", base_log_dir="/logs/caf\udce9")  # b"caf\xe9" from the environment
    (tmp_path / MANIFEST_NAME).read_bytes().decode("utf-8")  # still UTF-8 text
    assert read_manifest(tmp_path)["runs"][0]["base_log_dir"] == "/logs/caf\udce9"
