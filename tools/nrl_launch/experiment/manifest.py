"""The snapshot manifest ``.nrl_launch.yaml`` (docs/snapshots.md).

Every snapshot carries one at its root. It is YAML, with ``runs:`` as the LAST
key and its entries block-style at column 0, so that a shell script can append
a run with ``printf '%s\\n' "- job_id: '123'" "  submitted_at: '...'"
"  run: '3'" "  via: continue.sh" >> .nrl_launch.yaml``. With no run yet the
file ends with a bare ``runs:`` line (null, read back as an empty list).

Besides runs (entries with a ``job_id``), ``runs:`` holds the records of
``nrl-launch cancel``: entries without ``job_id`` (``cancelled: '<ids>'``),
which every reader of runs skips (:func:`job_runs`; ``continue.sh`` counts
only ``- job_id:`` lines).

Entries are appended with one ``write`` on a descriptor opened with
``O_APPEND`` (the kernel puts each write at the end of the file, so writers
running at once never overwrite each other), by a process holding the
experiment's lock (:mod:`nrl_launch.experiment.locks`). Timestamps have one format,
:data:`TIMESTAMP_FORMAT`, for Python and ``continue.sh`` alike.

This module does not import GitPython; ``RepoInfo`` is only a type hint.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nrl_launch import __version__
from nrl_launch.errors import SnapshotError

if TYPE_CHECKING:  # pragma: no cover
    from nrl_launch.experiment.gitrepo import RepoInfo

MANIFEST_NAME = ".nrl_launch.yaml"
VIA_LAUNCHER = "launcher"
VIA_RETRY = "retry"  # a run WATCH submitted again after an infrastructure failure (MAX_RETRIES)
VIA_VALUES = (VIA_LAUNCHER, "continue.sh", VIA_RETRY)
CANCELLED_KEY = "cancelled"  # a cancellation entry: the job ids it cancelled, space separated
# ISO 8601 in UTC with seconds, e.g. 2026-11-29T01:00:09+00:00: a strftime
# format for Python and a `date -u +FORMAT` format for continue.sh.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S+00:00"


def utc_now_iso() -> str:
    """The current UTC time in :data:`TIMESTAMP_FORMAT`, e.g. 2026-11-29T01:00:09+00:00."""
    return dt.datetime.now(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def _iso(when: dt.datetime | str | None) -> str:
    """``when`` as a UTC ISO string (now when None)."""
    if when is None:
        return utc_now_iso()
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def build_manifest(repo_info: RepoInfo, *, config_values: Mapping[str, str], gpu_hours: int | None,
                   experiment: str | None = None, script: str | None = None,
                   mode: str | None = None, files: int | None = None, size: int | None = None,
                   created: dt.datetime | str | None = None,
                   version: str = __version__) -> dict[str, Any]:
    """Build a manifest dict (pure; ``runs`` empty).

    ``mode``/``files``/``size`` may be left None and filled in by the
    snapshot code (``with_snapshot_stats``) once the snapshot is made.
    """
    return {
        "experiment": experiment,
        "script": script,
        "created": _iso(created),
        "launcher_version": version,
        "source": {
            "repository": str(repo_info.root),
            "commit": repo_info.head_sha,
            "short_meta": repo_info.short_meta,
            "subject": repo_info.head_subject,
            "dirty": bool(repo_info.dirty_files),
            "dirty_files": list(repo_info.dirty_files),
            "submodules": dict(repo_info.submodules),
        },
        "snapshot": {"mode": mode, "files": files, "bytes": size},
        "config": {str(k): str(v) for k, v in config_values.items()},
        "gpu_hours": gpu_hours,  # None: a snapshot made by code_snapshot.sh, not for a recipe
        "runs": [],
    }


def with_snapshot_stats(manifest: Mapping[str, Any], mode: str, files: int, size: int) -> dict[str, Any]:
    """A copy of ``manifest`` with its ``snapshot`` section set (runs kept last)."""
    result = {k: v for k, v in manifest.items() if k != "runs"}
    result["snapshot"] = {"mode": mode, "files": files, "bytes": size}
    result["runs"] = list(manifest.get("runs") or [])
    return result


# The source of a snapshot that had no manifest when a launch reused it.
UNKNOWN_SOURCE = "unknown: the snapshot had no manifest when it was reused (made by another tool?)"


def adopted(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest written into a reused snapshot that has none (e.g. one the bash launcher
    made), from the one a new snapshot would get: the same experiment, script and CONFIG
    values, but no claim about the code it holds, so its runs can be numbered and recorded."""
    result = with_snapshot_stats(manifest, "unknown", 0, 0)
    result["source"] = {"commit": None, "note": UNKNOWN_SOURCE}
    result["runs"] = []
    return result


def _dump(data: Any) -> str:
    """Block-style YAML, keys in insertion order."""
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False, allow_unicode=True)


def entry_field_line(key: str, value: str) -> str:
    """``  key: "value"``: one field of a ``runs:`` entry (not the first) on
    exactly one line, whatever ``value`` holds (newlines, quotes, non-UTF-8
    bytes held as surrogate escapes): for continue.sh, which appends lines."""
    scalar = yaml.safe_dump(value, default_style='"', width=float("inf"), allow_unicode=True)
    return f"  {key}: {scalar.rstrip()}"


def _run_entry(job_id: str, run_label: str, via: str, when: dt.datetime | str | None,
               base_log_dir: str | None) -> dict[str, str]:
    """One ``runs:`` entry, validated."""
    if via not in VIA_VALUES:
        raise SnapshotError(f"invalid run origin {via!r}: expected one of {', '.join(VIA_VALUES)}")
    entry = {"job_id": str(job_id), "submitted_at": _iso(when), "run": str(run_label), "via": via}
    if base_log_dir:
        entry["base_log_dir"] = base_log_dir
    return entry


def render_manifest(manifest: Mapping[str, Any]) -> str:
    """The text of a manifest file: every key but ``runs``, then ``runs:``."""
    head = {k: v for k, v in manifest.items() if k != "runs"}
    text = _dump(head) if head else ""
    runs = list(manifest.get("runs") or [])
    text += "runs:\n"
    if runs:
        text += _dump([dict(run) for run in runs])
    return text


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest`` as ``directory/.nrl_launch.yaml`` (replacing it
    atomically, mode 0644); return the file's path. SnapshotError on failure."""
    path = Path(directory) / MANIFEST_NAME
    tmp = path.with_name(f"{MANIFEST_NAME}.tmp-{os.getpid()}")
    try:
        tmp.write_text(render_manifest(manifest), encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        raise SnapshotError(f"cannot write the manifest {path}: {e}") from e
    return path


def _normalize_runs(runs: Any, path: Path) -> list[dict[str, str]]:
    """Runs as a list of dicts of strings (YAML may have typed the values)."""
    if runs is None:
        return []
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise SnapshotError(f"{path}: 'runs' is not a list of entries")
    normalized = []
    for run in runs:
        entry = {}
        for key, value in run.items():
            if isinstance(value, dt.datetime):
                value = _iso(value)
            entry[str(key)] = "" if value is None else str(value)
        normalized.append(entry)
    return normalized


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read ``directory/.nrl_launch.yaml``; ``runs`` is always a list of dicts
    of strings. A missing or corrupt file raises SnapshotError naming it."""
    path = Path(directory) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SnapshotError(f"{path}: no manifest (not a snapshot made by nrl-launch?)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SnapshotError(f"cannot read the manifest {path}: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SnapshotError(f"{path}: corrupt manifest: {e}") from e
    if not isinstance(data, dict):
        raise SnapshotError(f"{path}: corrupt manifest: not a mapping")
    data["runs"] = _normalize_runs(data.get("runs"), path)
    return data


def append_run(directory: Path, job_id: str, run_label: str, via: str = VIA_LAUNCHER,
               when: dt.datetime | str | None = None, base_log_dir: str | None = None,
               details: Mapping[str, str] | None = None) -> None:
    """Append one run entry to the manifest's ``runs:`` list, by appending
    text (the file is not rewritten). SnapshotError if there is no manifest.

    ``base_log_dir`` (BASE_LOG_DIR of the run, when set) tells WATCH and
    ``status`` where the run's logs are; ``details`` are more fields (a
    retry's ``retry_of``, ...), after the standard ones, which they cannot replace."""
    entry = _run_entry(job_id, run_label, via, when, base_log_dir)
    entry.update({str(k): str(v) for k, v in (details or {}).items() if k not in entry})
    _append_text(Path(directory) / MANIFEST_NAME, _dump([entry]))


def append_cancellation(directory: Path, job_ids: Sequence[str], when: dt.datetime | str | None = None) -> None:
    """Record that ``nrl-launch cancel`` cancelled ``job_ids`` (an entry without ``job_id``)."""
    if not job_ids:
        raise SnapshotError("a cancellation entry needs at least one job id")
    entry = {CANCELLED_KEY: " ".join(job_ids), "cancelled_at": _iso(when), "via": "nrl-launch cancel"}
    _append_text(Path(directory) / MANIFEST_NAME, _dump([entry]))


def job_runs(runs: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The entries of ``runs:`` that are submitted runs (they have a ``job_id``), in order."""
    return [run for run in runs if run.get("job_id")]


def latest_launch(runs: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The submitted runs of the experiment's latest launch: from the last launcher run
    numbered ``1/N`` on, with the ``continue.sh`` runs and retries since (all of them when
    no such run is recorded). A relaunch reuses the snapshot, so the logs of an earlier
    launch are there too: what ``watch`` follows and judges, and ``status`` shows, is this."""
    jobs = job_runs(runs)
    starts = [i for i, run in enumerate(jobs)
              if run.get("via") == VIA_LAUNCHER and run.get("run", "").startswith("1/")]
    return jobs[starts[-1]:] if starts else jobs


def cancellations(runs: Sequence[Mapping[str, str]]) -> list[tuple[str, list[str]]]:
    """(when, job ids) of every cancellation entry of ``runs:``, in order."""
    return [(run.get("cancelled_at", ""), run[CANCELLED_KEY].split()) for run in runs
            if not run.get("job_id") and run.get(CANCELLED_KEY)]


def _append_text(path: Path, text: str) -> None:
    """Append ``text`` (whole entries) to the manifest ``path`` in one ``write`` (O_APPEND)."""
    data = text.encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise SnapshotError(f"{path}: no manifest to record in") from e
    except OSError as e:
        raise SnapshotError(f"cannot open the manifest {path}: {e}") from e
    try:
        _append(fd, data)
    except OSError as e:
        raise SnapshotError(f"cannot append to the manifest {path}: {e}") from e
    finally:
        os.close(fd)


def _append(fd: int, data: bytes) -> None:
    """Write ``data`` at the end of ``fd`` (opened with O_APPEND) in one
    ``write``, after a newline if the file lacks its final one."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        data = b"\n" + data
    written = os.write(fd, data)
    if written != len(data):  # a full disk, say: the entry is cut, say so
        raise OSError(f"only {written} of {len(data)} bytes were written")


def snapshot_stats(directory: Path) -> tuple[str, int, int]:
    """(mode, files, bytes) recorded by a snapshot's manifest; ("unknown", 0,
    0) when it has no readable manifest (e.g. made by an older launcher)."""
    try:
        data = read_manifest(directory)
    except SnapshotError:
        return "unknown", 0, 0
    section = data.get("snapshot") or {}
    if not isinstance(section, dict):
        return "unknown", 0, 0
    return str(section.get("mode") or "unknown"), _int(section.get("files")), _int(section.get("bytes"))


def _int(value: Any) -> int:
    """``value`` as an int, 0 when it isn't one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def stale_reasons(manifest: Mapping[str, Any], repo_info: RepoInfo) -> list[str]:
    """Why an existing snapshot (its manifest) no longer matches the working
    tree ``repo_info``: human-readable sentences, empty when it matches."""
    source = manifest.get("source") or {}
    if not isinstance(source, dict):
        return ["the snapshot's manifest has no source section"]
    if source.get("note") == UNKNOWN_SOURCE:
        return ["its commit is unknown (it was made without a manifest, e.g. by the bash launcher)"]
    reasons = []
    old_commit = str(source.get("commit") or "?")
    if old_commit != repo_info.head_sha:
        reasons.append(f"the snapshot was made from commit {old_commit[:12]}, "
                       f"the working tree is now at {repo_info.head_sha[:12]}")
    old_dirty = bool(source.get("dirty"))
    new_dirty = bool(repo_info.dirty_files)
    old_files = sorted(str(f) for f in source.get("dirty_files") or [])
    new_files = sorted(repo_info.dirty_files)
    where = f"(snapshot commit {old_commit[:12]}, working tree commit {repo_info.head_sha[:12]})"
    if old_dirty != new_dirty:
        state = {True: "had uncommitted changes", False: "was clean"}
        reasons.append(f"the snapshot's tree {state[old_dirty]}, the working tree "
                       f"{'has uncommitted changes' if new_dirty else 'is clean'} {where}")
    elif old_files != new_files:
        reasons.append(f"the uncommitted changes differ {where}: snapshot "
                       f"{', '.join(old_files) or 'none'}; working tree {', '.join(new_files) or 'none'}")
    old_subs = {str(k): str(v) for k, v in (source.get("submodules") or {}).items()}
    for path in sorted(set(old_subs) | set(repo_info.submodules)):
        before, now = old_subs.get(path, "none"), repo_info.submodules.get(path, "none")
        if before != now:
            reasons.append(f"submodule {path} was at {before[:12]}, is now at {now[:12]}")
    return reasons
