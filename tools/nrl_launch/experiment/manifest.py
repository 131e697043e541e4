"""The snapshot manifest ``.nrl_launch.yaml`` (docs/snapshots.md), typed and read once.

Every snapshot carries one at its root. It is YAML, with ``runs:`` as the LAST
key and its entries block-style at column 0, so that a shell script can append
a run with ``printf '%s\\n' "- job_id: '123'" "  submitted_at: '...'"
"  run: '3'" "  via: continue.sh" >> .nrl_launch.yaml``. With no run yet the
file ends with a bare ``runs:`` line (null, read back as an empty list).

:class:`Manifest` is the file as frozen dataclasses: the :class:`Source` it was
made from, its :class:`SnapshotStats`, the CONFIG values, the GPU-hours, and
the ``runs:`` entries in file order: :class:`Run` (launcher, ``continue.sh``,
retry), :class:`Cancellation` (``nrl-launch cancel``: an entry without
``job_id``, never counted as a run; ``continue.sh`` counts only ``- job_id:``
lines) and :class:`OtherEntry` (a kind this version does not know). Derived
views: the runs, the :class:`Launch` es, the latest launch, the retries, the
next run's number. Keys this version does not know are kept (``extra``) and
written back unchanged after the known ones, so a rewrite by an older
launcher loses nothing a newer one recorded.

Reading parses with libyaml's ``CSafeLoader`` when PyYAML has it (the pure
Python ``SafeLoader`` otherwise, and for the texts libyaml refuses but
PyYAML reads, e.g. a ``\\uDCxx`` escape of a non-UTF-8 byte). PyYAML builds
each value in Python even then (about 1 ms for a manifest of a few runs: most
of ``nrl-launch status`` over a thousand experiments), so a file is first
read by :func:`nrl_launch.experiment.yamlsubset.parse`: what the launcher's writers and ``continue.sh``
put there -- block mappings and sequences, one scalar a line in one of the
simplest YAML forms, whose meaning PyYAML's own resolver decides; anything
else, anywhere, and the whole file is left to PyYAML. Both read every file the
same (a property test checks it). Writing the
whole file goes through :func:`nrl_launch.experiment.atomic.replace_file`;
entries are appended with one ``write`` on a descriptor opened with
``O_APPEND`` (the kernel puts each write at the end of the file, so writers
running at once never overwrite each other), by a process holding the
experiment's lock (:mod:`nrl_launch.experiment.locks`). Timestamps have one
format, :data:`TIMESTAMP_FORMAT`, for Python and ``continue.sh`` alike.

Callers go through :class:`nrl_launch.experiment.folder.ExperimentDir`, which
reads the file once; this module does not import GitPython (``RepoInfo`` is
only a type hint).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nrl_launch import __version__
from nrl_launch.errors import SnapshotError
from nrl_launch.experiment import yamlsubset
from nrl_launch.experiment.atomic import replace_file

if TYPE_CHECKING:  # pragma: no cover
    from nrl_launch.experiment.gitrepo import RepoInfo

MANIFEST_NAME = ".nrl_launch.yaml"
VIA_LAUNCHER = "launcher"
VIA_CONTINUE = "continue.sh"
VIA_RETRY = "retry"  # a run WATCH submitted again after an infrastructure failure (MAX_RETRIES)
VIA_VALUES = (VIA_LAUNCHER, VIA_CONTINUE, VIA_RETRY)
CANCELLED_KEY = "cancelled"  # a cancellation entry: the job ids it cancelled, space separated
CANCEL_VIA = "nrl-launch cancel"
PLANNED_KEY = "planned"  # a plan entry: the number of runs a launch is about to submit
# ISO 8601 in UTC with seconds, e.g. 2026-11-29T01:00:09+00:00: a strftime
# format for Python and a `date -u +FORMAT` format for continue.sh.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S+00:00"
# The source of a snapshot that had no manifest when a launch reused it.
UNKNOWN_SOURCE = "unknown: the snapshot had no manifest when it was reused (made by another tool?)"
# libyaml's parser when PyYAML was built with it: the same documents, parsed in C.
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader) if yaml.__with_libyaml__ else yaml.SafeLoader

Extra = tuple[tuple[str, Any], ...]  # keys this version does not know, as read: written back as they were
Fields = tuple[tuple[str, str], ...]  # the same, in a ``runs:`` entry (whose values are text)


def utc_now_iso() -> str:
    """The current UTC time in :data:`TIMESTAMP_FORMAT`, e.g. 2026-11-29T01:00:09+00:00."""
    return dt.datetime.now(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def epoch(timestamp: str) -> float | None:
    """Seconds since the epoch of a manifest timestamp (UTC ISO 8601); None when it is not one."""
    try:
        when = dt.datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()


def _iso(when: dt.datetime | str | None) -> str:
    """``when`` as a UTC ISO string (now when None)."""
    if when is None:
        return utc_now_iso()
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def _text(value: Any) -> str | None:
    """A scalar as text (YAML may have typed an unquoted one), None for null."""
    if value is None:
        return None
    return _iso(value) if isinstance(value, dt.datetime) else str(value)


def _field(value: Any) -> str:
    """A ``runs:`` entry value as text ("" for null), as every reader of entries sees it."""
    return _text(value) or ""


def _number(value: Any) -> int | None:
    """A whole number of the file, None when it is missing or not one."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _unknown(data: Mapping[Any, Any], known: Iterable[str]) -> Extra:
    names = known if isinstance(known, frozenset) else frozenset(known)
    return tuple((str(key), value) for key, value in data.items() if str(key) not in names)


# ---------------------------------------------------------------- the sections


@dataclass(frozen=True)
class Source:
    """The working tree a snapshot was made from (``source:``). A field the file lacks is None
    and is not written back, except ``commit`` (null: unknown)."""

    repository: str | None = None  # the working tree's root
    commit: str | None = None  # HEAD, full id
    short_meta: str | None = None  # git log -1 --format=%h-%f: the ++git_meta of the jobs
    subject: str | None = None
    dirty: bool | None = None  # the working tree differed from HEAD
    dirty_files: tuple[str, ...] | None = None
    submodules: tuple[tuple[str, str], ...] | None = None  # path -> commit checked out
    note: str | None = None  # UNKNOWN_SOURCE: adopted without a manifest
    extra: Extra = ()

    @classmethod
    def of(cls, info: RepoInfo) -> Source:
        """The source section of a snapshot of the working tree ``info``."""
        return cls(str(info.root), info.head_sha, info.short_meta, info.head_subject, bool(info.dirty_files),
                   tuple(info.dirty_files), tuple(info.submodules.items()))

    @property
    def unknown(self) -> bool:
        """True for a snapshot adopted without a manifest: nothing is known about its code."""
        return self.note == UNKNOWN_SOURCE

    @classmethod
    def from_data(cls, data: Mapping[Any, Any]) -> Source:
        """The section as the file holds it (values of an unexpected type read as missing)."""
        files, subs, dirty = data.get("dirty_files"), data.get("submodules"), data.get("dirty")
        return cls(_text(data.get("repository")), _text(data.get("commit")), _text(data.get("short_meta")),
                   _text(data.get("subject")), None if dirty is None else bool(dirty),
                   tuple(str(f) for f in files) if isinstance(files, list) else None,
                   tuple((str(k), str(v)) for k, v in subs.items()) if isinstance(subs, Mapping) else None,
                   _text(data.get("note")), _unknown(data, _SOURCE_KEYS))

    def to_data(self) -> dict[str, Any]:
        """The section as written."""
        values: dict[str, Any] = {
            "repository": self.repository, "commit": self.commit, "short_meta": self.short_meta,
            "subject": self.subject, "dirty": self.dirty,
            "dirty_files": None if self.dirty_files is None else list(self.dirty_files),
            "submodules": None if self.submodules is None else dict(self.submodules), "note": self.note}
        data = {key: value for key, value in values.items() if value is not None or key == "commit"}
        data.update(self.extra)
        return data


_SOURCE_KEYS = ("repository", "commit", "short_meta", "subject", "dirty", "dirty_files", "submodules", "note")


@dataclass(frozen=True)
class SnapshotStats:
    """How the snapshot was made (``snapshot:``): mode (reflink, copy, link; ``unknown`` for
    an adopted one), files and bytes; None where not recorded."""

    mode: str | None = None
    files: int | None = None
    size: int | None = None  # ``bytes:`` in the file
    extra: Extra = ()

    @classmethod
    def from_data(cls, data: Mapping[Any, Any]) -> SnapshotStats:
        """The section as the file holds it."""
        return cls(_text(data.get("mode")), _number(data.get("files")), _number(data.get("bytes")),
                   _unknown(data, ("mode", "files", "bytes")))

    def to_data(self) -> dict[str, Any]:
        """The section as written."""
        return {"mode": self.mode, "files": self.files, "bytes": self.size, **dict(self.extra)}


# ---------------------------------------------------------------- the runs: entries


@dataclass(frozen=True)
class RetryOrigin:
    """Why a run is a retry (MAX_RETRIES): the job the infrastructure lost and how."""

    retry_of: str  # the lost job
    after: str  # how it ended: NODE_FAIL, BOOT_FAIL, PREEMPTED or NODE_CHECK_FAILED
    failed_on: str  # its nodes ("" when it had none)
    exclude: str = ""  # the nodes the retry avoids ("" for none; then not written)


_RETRY_KEYS = ("retry_of", "after", "failed_on", "exclude")


@dataclass(frozen=True)
class Run:
    """One submitted job of the experiment (a ``runs:`` entry with a ``job_id``)."""

    job_id: str
    run: str  # "i/N" for the launcher's runs, "k" (its number in the chain) for later ones
    via: str  # launcher, continue.sh or retry
    submitted_at: str = ""
    base_log_dir: str = ""  # BASE_LOG_DIR of the run, when it had one
    retry: RetryOrigin | None = None
    extra: Fields = ()
    launch: str = ""  # the launch (its Plan's id) a launcher run belongs to
    token: str = ""  # the run's token, in its job's environment and its log folders (experiment.joblogs)

    @property
    def starts_launch(self) -> bool:
        """True for the launcher's first run of a launch (``1/N``)."""
        return self.via == VIA_LAUNCHER and self.run.startswith("1/")

    @property
    def index(self) -> int | None:
        """``i`` of a launcher run ``i/N``; None for another label."""
        head, slash, _ = self.run.partition("/")
        return int(head) if slash and head.isascii() and head.isdigit() else None

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Run:
        """The run of an entry's fields."""
        retry = None
        if any(key in fields for key in _RETRY_KEYS):
            retry = RetryOrigin(*(fields.get(key, "") for key in _RETRY_KEYS))
        return cls(fields["job_id"], fields.get("run", ""), fields.get("via", ""), fields.get("submitted_at", ""),
                   fields.get("base_log_dir", ""), retry, _unknown(fields, _RUN_FIELDS),
                   launch=fields.get("launch", ""), token=fields.get("token", ""))

    def to_data(self) -> dict[str, str]:
        """The entry as written: the standard fields first, then a retry's, then unknown ones."""
        data = {"job_id": self.job_id, "submitted_at": self.submitted_at, "run": self.run, "via": self.via}
        optional = (("base_log_dir", self.base_log_dir), ("launch", self.launch), ("token", self.token))
        data.update((key, value) for key, value in optional if value)
        if self.retry is not None:
            data.update(retry_of=self.retry.retry_of, after=self.retry.after, failed_on=self.retry.failed_on)
            if self.retry.exclude:
                data["exclude"] = self.retry.exclude
        data.update(self.extra)
        return data


_RUN_KEYS = ("job_id", "submitted_at", "run", "via", "base_log_dir", "launch", "token")
_RUN_FIELDS = frozenset((*_RUN_KEYS, *_RETRY_KEYS))


@dataclass(frozen=True)
class Plan:
    """What one launch is about to submit, recorded before its first ``sbatch`` (an entry without
    ``job_id``): so that the same command, run again after the launch was cut short, submits only
    the runs it lacks."""

    runs: int  # NUM_RUNS: the launcher's runs 1/N .. N/N
    launch: str  # the launch's id, written on each of its runs
    stamp: str  # YYMMDD-HHMMSS of the launch, in its runs' --output file names
    digest: str  # what its runs submit (sbatch words, job environment, pinned inputs), hashed
    at: str = ""  # planned_at
    via: str = VIA_LAUNCHER
    extra: Fields = ()

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Plan:
        """The plan of an entry's fields (ValueError when ``planned`` is no positive number)."""
        runs = int(fields[PLANNED_KEY])
        if runs < 1:
            raise ValueError(runs)
        return cls(runs, fields.get("launch", ""), fields.get("stamp", ""), fields.get("digest", ""),
                   fields.get("planned_at", ""), fields.get("via", ""), _unknown(fields, frozenset(_PLAN_KEYS)))

    def to_data(self) -> dict[str, str]:
        """The entry as written."""
        return {PLANNED_KEY: str(self.runs), "launch": self.launch, "stamp": self.stamp, "digest": self.digest,
                "planned_at": self.at, "via": self.via, **dict(self.extra)}


_PLAN_KEYS = (PLANNED_KEY, "launch", "stamp", "digest", "planned_at", "via")


@dataclass(frozen=True)
class PlannedLaunch:
    """The latest launch recorded with its plan, and how far it got."""

    plan: Plan
    queued: tuple[Run, ...]  # its runs recorded so far, in order
    missing: tuple[int, ...]  # the ``i`` of its runs ``i/N`` not recorded, in order
    closed: bool = False  # ``nrl-launch cancel`` ran since: the launch is over, however far it got

    @property
    def open(self) -> bool:
        """True when it queued fewer runs than it planned -- cut short (a failure, Ctrl-C, SIGKILL,
        a lost machine) -- and was not cancelled since."""
        return bool(self.missing) and not self.closed


@dataclass(frozen=True)
class Cancellation:
    """One ``nrl-launch cancel`` of the experiment (an entry without ``job_id``)."""

    jobs: tuple[str, ...]  # the jobs it cancelled
    at: str = ""  # cancelled_at
    via: str = CANCEL_VIA
    extra: Fields = ()

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Cancellation:
        """The cancellation of an entry's fields."""
        return cls(tuple(fields[CANCELLED_KEY].split()), fields.get("cancelled_at", ""), fields.get("via", ""),
                   _unknown(fields, (CANCELLED_KEY, "cancelled_at", "via")))

    def to_data(self) -> dict[str, str]:
        """The entry as written."""
        return {CANCELLED_KEY: " ".join(self.jobs), "cancelled_at": self.at, "via": self.via, **dict(self.extra)}


@dataclass(frozen=True)
class OtherEntry:
    """An entry of a kind this version does not know: kept, never counted as a run."""

    fields: Fields

    def to_data(self) -> dict[str, str]:
        """The entry as written."""
        return dict(self.fields)


Entry = Run | Cancellation | Plan | OtherEntry


def _entry(fields: dict[str, str]) -> Entry:
    if fields.get("job_id"):
        return Run.from_fields(fields)
    if fields.get(CANCELLED_KEY):
        return Cancellation.from_fields(fields)
    if fields.get(PLANNED_KEY):
        try:
            return Plan.from_fields(fields)
        except ValueError:
            pass  # not a count: kept as it is, as an entry of unknown kind
    return OtherEntry(tuple(fields.items()))


def _entries(runs: Any, where: Path) -> tuple[Entry, ...]:
    """The ``runs:`` list, every value as text (YAML may have typed an unquoted id or time)."""
    if runs is None:
        return ()
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise SnapshotError(f"{where}: 'runs' is not a list of entries")
    # (a text, which nearly every value is, is taken as it is: a thousand manifests are read by status)
    return tuple(_entry({key if type(key) is str else str(key): value if type(value) is str else _field(value)
                         for key, value in run.items()}) for run in runs)


@dataclass(frozen=True)
class Launch:
    """The runs of one launch: the launcher's run ``1/N`` onward, with the ``continue.sh`` runs
    and retries since (runs recorded before any launcher run form a launch of their own)."""

    runs: tuple[Run, ...]

    @property
    def job_ids(self) -> list[str]:
        """Its jobs, in submission order."""
        return [run.job_id for run in self.runs]


# ---------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class Manifest:
    """One ``.nrl_launch.yaml``: what the snapshot holds and every run recorded in it."""

    experiment: str | None = None
    script: str | None = None  # the recipe, from the repository root
    created: str | None = None
    launcher_version: str | None = None
    source: Source | None = None  # None: the file has no source section
    snapshot: SnapshotStats = SnapshotStats()
    config: tuple[tuple[str, str], ...] = ()  # the recipe's evaluated CONFIG block
    gpu_hours: int | None = None  # None: a snapshot not made for a recipe (nrl-launch snapshot)
    entries: tuple[Entry, ...] = ()  # ``runs:``, in file order
    extra: Extra = ()

    # ---- derived views

    @property
    def config_values(self) -> dict[str, str]:
        """The CONFIG values by name."""
        return dict(self.config)

    @property
    def runs(self) -> tuple[Run, ...]:
        """Every submitted run, in order (cancellations and unknown entries left out)."""
        return tuple(entry for entry in self.entries if isinstance(entry, Run))

    @property
    def cancellations(self) -> tuple[Cancellation, ...]:
        """Every ``nrl-launch cancel`` recorded, in order."""
        return tuple(entry for entry in self.entries if isinstance(entry, Cancellation))

    @property
    def retries(self) -> tuple[Run, ...]:
        """The runs WATCH submitted after an infrastructure failure."""
        return tuple(run for run in self.runs if run.via == VIA_RETRY)

    @property
    def launches(self) -> tuple[Launch, ...]:
        """The runs grouped by launch, in order."""
        runs = self.runs
        cuts = sorted({0, *(i for i, run in enumerate(runs) if run.starts_launch), len(runs)})
        return tuple(Launch(runs[a:b]) for a, b in pairwise(cuts) if b > a)

    @property
    def latest_launch(self) -> Launch:
        """The latest launch (all runs when no launcher run is recorded). A relaunch reuses the
        snapshot, so the logs of an earlier launch are there too: what ``watch`` follows and
        judges, and ``status`` shows, is this."""
        launches = self.launches
        return launches[-1] if launches else Launch(())

    @property
    def plans(self) -> tuple[Plan, ...]:
        """Every launch plan recorded, in order."""
        return tuple(entry for entry in self.entries if isinstance(entry, Plan))

    @property
    def latest_plan(self) -> PlannedLaunch | None:
        """The latest launch that recorded its plan, with its runs; None when none did."""
        at = next((i for i in range(len(self.entries) - 1, -1, -1) if isinstance(self.entries[i], Plan)), None)
        if at is None:
            return None
        plan = self.entries[at]
        assert isinstance(plan, Plan)
        since = self.entries[at + 1:]
        queued = tuple(entry for entry in since if isinstance(entry, Run) and entry.launch == plan.launch)
        done = {run.index for run in queued}
        missing = tuple(i for i in range(1, plan.runs + 1) if i not in done)
        return PlannedLaunch(plan, queued, missing, any(isinstance(entry, Cancellation) for entry in since))

    @property
    def open_launch(self) -> PlannedLaunch | None:
        """The latest launch when it queued fewer runs than it planned and was not cancelled since
        (``nrl-launch cancel`` closes it); None otherwise."""
        latest = self.latest_plan
        return latest if latest is not None and latest.open else None

    @property
    def next_run_number(self) -> int:
        """The number of one more run in the chain, as ``continue.sh`` counts: recorded runs + 1."""
        return len(self.runs) + 1

    # ---- new manifests

    def with_snapshot(self, mode: str, files: int, size: int) -> Manifest:
        """This manifest with its ``snapshot`` section set."""
        return replace(self, snapshot=SnapshotStats(mode, files, size))

    def adopted(self) -> Manifest:
        """The manifest written into a reused snapshot that has none (e.g. one the bash launcher
        made), from the one a new snapshot would get: the same experiment, script and CONFIG
        values, but no claim about the code it holds, so its runs can be numbered and recorded."""
        return replace(self, source=Source(note=UNKNOWN_SOURCE), snapshot=SnapshotStats("unknown", 0, 0), entries=())

    # ---- the file's data

    @classmethod
    def from_data(cls, data: Mapping[Any, Any], where: Path) -> Manifest:
        """The manifest of the file's parsed YAML (``where`` names the file in errors)."""
        source, stats, config = data.get("source"), data.get("snapshot"), data.get("config")
        return cls(
            _text(data.get("experiment")), _text(data.get("script")), _text(data.get("created")),
            _text(data.get("launcher_version")), Source.from_data(source) if isinstance(source, Mapping) else None,
            SnapshotStats.from_data(stats) if isinstance(stats, Mapping) else SnapshotStats(),
            tuple((str(k), _field(v)) for k, v in config.items()) if isinstance(config, Mapping) else (),
            _number(data.get("gpu_hours")), _entries(data.get("runs"), where), _unknown(data, _TOP_KEYS))

    def to_data(self) -> dict[str, Any]:
        """The data written, ``runs`` last."""
        data: dict[str, Any] = {
            "experiment": self.experiment, "script": self.script, "created": self.created,
            "launcher_version": self.launcher_version,
            "source": None if self.source is None else self.source.to_data(),
            "snapshot": self.snapshot.to_data(), "config": dict(self.config), "gpu_hours": self.gpu_hours}
        data.update(self.extra)
        data["runs"] = [entry.to_data() for entry in self.entries]
        return data

    # ---- comparing with the working tree

    def stale_reasons(self, now: RepoInfo) -> list[str]:
        """Why the snapshot no longer matches the working tree ``now``: human-readable
        sentences, empty when it matches."""
        source = self.source
        if source is None:
            return ["the snapshot's manifest has no source section"]
        if source.unknown:
            return ["its commit is unknown (it was made without a manifest, e.g. by the bash launcher)"]
        reasons = []
        old_commit = source.commit or "?"
        if old_commit != now.head_sha:
            reasons.append(f"the snapshot was made from commit {old_commit[:12]}, "
                           f"the working tree is now at {now.head_sha[:12]}")
        old_dirty, new_dirty = bool(source.dirty), bool(now.dirty_files)
        old_files, new_files = sorted(source.dirty_files or ()), sorted(now.dirty_files)
        where = f"(snapshot commit {old_commit[:12]}, working tree commit {now.head_sha[:12]})"
        if old_dirty != new_dirty:
            state = {True: "had uncommitted changes", False: "was clean"}
            reasons.append(f"the snapshot's tree {state[old_dirty]}, the working tree "
                           f"{'has uncommitted changes' if new_dirty else 'is clean'} {where}")
        elif old_files != new_files:
            reasons.append(f"the uncommitted changes differ {where}: snapshot "
                           f"{', '.join(old_files) or 'none'}; working tree {', '.join(new_files) or 'none'}")
        old_subs = dict(source.submodules or ())
        for path in sorted(set(old_subs) | set(now.submodules)):
            before, after = old_subs.get(path, "none"), now.submodules.get(path, "none")
            if before != after:
                reasons.append(f"submodule {path} was at {before[:12]}, is now at {after[:12]}")
        return reasons


_TOP_KEYS = ("experiment", "script", "created", "launcher_version", "source", "snapshot", "config", "gpu_hours",
             "runs")


def build_manifest(repo_info: RepoInfo, *, config_values: Mapping[str, str], gpu_hours: int | None,
                   experiment: str | None = None, script: str | None = None,
                   created: dt.datetime | str | None = None, version: str = __version__) -> Manifest:
    """The manifest a new snapshot of ``repo_info`` starts with (pure; no runs; the snapshot
    code sets its ``snapshot`` section once the copy is made)."""
    return Manifest(experiment, script, _iso(created), version, Source.of(repo_info),
                    config=tuple((str(k), str(v)) for k, v in config_values.items()), gpu_hours=gpu_hours)


# ---------------------------------------------------------------- text


class _Dumper(yaml.SafeDumper):
    """``yaml.safe_dump``'s dumper, but a text holding a line break that YAML folds (NEL, LS,
    PS) is written double-quoted, escaped: PyYAML would write ``'a\x85b'`` single-quoted,
    which reads back as ``'a b'``."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if any(c in text for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)
# libyaml's emitter, when PyYAML has it: the same text for the data _emitted_alike accepts (a property
# test checks it), ten times faster (PyYAML's emitter took 5 ms a manifest: a launch writes hundreds)
_CDumper: Any = None
if yaml.__with_libyaml__:
    class _CDumper(yaml.CSafeDumper):  # type: ignore[no-redef]
        """:class:`_Dumper`'s representers with libyaml's emitter."""

    _CDumper.add_representer(str, _represent_text)


def _emitted_alike(data: Any) -> bool:
    """True for data both emitters write the same: texts of printable ASCII, no empty key, and
    only mappings, lists, numbers, booleans and null besides (libyaml writes an empty key, and
    every text that is not plain ASCII, otherwise)."""
    if isinstance(data, str):
        return data.isascii() and data.isprintable()
    if isinstance(data, dict):
        return all(key != "" and _emitted_alike(key) and _emitted_alike(value) for key, value in data.items())
    if isinstance(data, list):
        return all(_emitted_alike(item) for item in data)
    return data is None or isinstance(data, (bool, int, float))


def _dump(data: Any) -> str:
    """Block-style YAML, keys in insertion order."""
    dumper = _CDumper if _CDumper is not None and _emitted_alike(data) else _Dumper
    return yaml.dump(data, Dumper=dumper, default_flow_style=False, sort_keys=False, allow_unicode=True)


def render_manifest(manifest: Manifest) -> str:
    """The text of a manifest file: every key but ``runs``, then ``runs:`` and its entries."""
    data = manifest.to_data()
    runs = data.pop("runs")
    return _dump(data) + "runs:\n" + (_dump(runs) if runs else "")


def parse_manifest(text: str, where: Path) -> Manifest:
    """The manifest of a file's text; SnapshotError naming ``where`` when it is not one."""
    data = yamlsubset.parse(text)
    if data is None:
        try:
            data = yaml.load(text, Loader=LOADER)
        except yaml.YAMLError:
            data = _parse_slowly(text, where)
    if not isinstance(data, dict):
        raise SnapshotError(f"{where}: corrupt manifest: not a mapping")
    return Manifest.from_data(data, where)


def _parse_slowly(text: str, where: Path) -> Any:
    """The pure-Python parse: the reference for what libyaml refuses (a surrogate escape)."""
    try:
        return yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise SnapshotError(f"{where}: corrupt manifest: {e}") from e


def entry_field_line(key: str, value: str) -> str:
    """``  key: "value"``: one field of a ``runs:`` entry (not the first) on
    exactly one line, whatever ``value`` holds (newlines, quotes, non-UTF-8
    bytes held as surrogate escapes): for continue.sh, which appends lines."""
    scalar = yaml.safe_dump(value, default_style='"', width=float("inf"), allow_unicode=True)
    return f"  {key}: {scalar.rstrip()}"


# ---------------------------------------------------------------- the file


def manifest_path(folder: Path) -> Path:
    """The manifest of the snapshot ``folder``."""
    return folder / MANIFEST_NAME


def load_manifest(folder: Path) -> tuple[Manifest, os.stat_result]:
    """The manifest of ``folder`` and the status of the file it was read from (to tell later
    whether it changed); SnapshotError naming the file when it is missing or corrupt."""
    path = manifest_path(folder)
    try:
        with open(path, "rb") as handle:
            status = os.fstat(handle.fileno())
            text = handle.read().decode("utf-8")
    except FileNotFoundError as e:
        raise SnapshotError(f"{path}: no manifest (not a snapshot made by nrl-launch?)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SnapshotError(f"cannot read the manifest {path}: {e}") from e
    return parse_manifest(text, path), status


def read_manifest(folder: Path) -> Manifest:
    """The manifest of ``folder`` (see :func:`load_manifest`)."""
    return load_manifest(folder)[0]


def write_manifest(folder: Path, manifest: Manifest) -> os.stat_result:
    """Write ``manifest`` as ``folder``'s (replacing it atomically, mode 0644); the written
    file's status. SnapshotError on failure."""
    data = render_manifest(manifest).encode("utf-8")
    return replace_file(manifest_path(folder), data, mode=0o644, what="the manifest")


def append_run(folder: Path, job_id: str, run_label: str, via: str = VIA_LAUNCHER, *,
               base_log_dir: str | None = None, retry: RetryOrigin | None = None,
               when: dt.datetime | str | None = None, launch: str = "", token: str = "") -> Run:
    """Record in ``folder``'s manifest a run submitted now (or ``when``); the entry. SnapshotError
    for an unknown ``via`` or when the entry cannot be appended."""
    if via not in VIA_VALUES:
        raise SnapshotError(f"invalid run origin {via!r}: expected one of {', '.join(VIA_VALUES)}")
    run = Run(str(job_id), str(run_label), via, _iso(when), base_log_dir or "", retry, launch=launch, token=token)
    append_entry(folder, run)
    return run


def append_plan(folder: Path, plan: Plan) -> Plan:
    """Record in ``folder``'s manifest what a launch is about to submit (``planned_at``: now when
    unset); the entry."""
    entry = plan if plan.at else replace(plan, at=utc_now_iso())
    append_entry(folder, entry)
    return entry


def append_cancellation(folder: Path, job_ids: Sequence[str], when: dt.datetime | str | None = None) -> Cancellation:
    """Record in ``folder``'s manifest that ``nrl-launch cancel`` cancelled ``job_ids`` now (or
    ``when``); the entry."""
    if not job_ids:
        raise SnapshotError("a cancellation entry needs at least one job id")
    entry = Cancellation(tuple(job_ids), _iso(when))
    append_entry(folder, entry)
    return entry


def append_entry(folder: Path, entry: Run | Cancellation | Plan) -> None:
    """Append ``entry`` to ``folder``'s manifest, by appending text in one ``write`` (the file
    is not rewritten). SnapshotError if there is no manifest."""
    path = manifest_path(folder)
    data = entry_text(entry.to_data()).encode("utf-8")
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


_ENTRY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def entry_text(fields: Mapping[str, str]) -> str:
    """The YAML of one ``runs:`` entry: ``- key: 'value'`` then ``  key: 'value'`` lines, each value
    single-quoted (which keeps every printable ASCII text as it is), or, for a key or value that
    is not plain printable ASCII, what PyYAML writes (PyYAML's emitter takes about 2 ms an entry:
    most of a launch's own time per run)."""
    lines: list[str] = []
    for key, value in fields.items():
        if not (_ENTRY_KEY.match(key) and yamlsubset.reads_as_itself(key) and value.isascii() and value.isprintable()):
            return _dump([dict(fields)])
        quoted = value.replace("'", "''")
        lines.append(f"{'  ' if lines else '- '}{key}: '{quoted}'\n")
    return "".join(lines) if lines else _dump([dict(fields)])


def _append(fd: int, data: bytes) -> None:
    """Write ``data`` at the end of ``fd`` (opened with O_APPEND) in one
    ``write``, after a newline if the file lacks its final one."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        data = b"\n" + data
    written = os.write(fd, data)
    if written != len(data):  # a full disk, say: the entry is cut, say so
        raise OSError(f"only {written} of {len(data)} bytes were written")
