"""One experiment's folder, ``<project root>/<CODE_SNAPSHOT_DIRNAME>/<name>``: the one home of its layout.

Launch planning, ``nrl-launch snapshot``, ``watch``, ``status``, ``cancel``
and ``logs`` all find an experiment here: a :class:`SnapshotRoot` (project
root and CODE_SNAPSHOT_DIRNAME) names the folder of the snapshots, and
:meth:`SnapshotRoot.experiment` gives the :class:`ExperimentDir` of a name
that passes the one name rule (:func:`name_problem`). The ExperimentDir
knows what is in the folder and where:

* the manifest (:mod:`~nrl_launch.experiment.manifest`), read once: a later
  look is answered from memory unless the file changed (taking the lock
  checks, so a process holding it sees every run recorded before);
  recording an entry appends to the file and forgets the copy in memory;
* the lock beside the folder (:mod:`~nrl_launch.experiment.locks`);
* ``continue.sh`` (:mod:`~nrl_launch.experiment.continuation`) and the same
  next run as data (:mod:`~nrl_launch.experiment.rerun`);
* where each job's logs are (:mod:`~nrl_launch.experiment.joblogs`), the
  Slurm ``--output`` files, and the recipe's ``metrics.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nrl_launch.errors import SnapshotError
from nrl_launch.experiment import joblogs
from nrl_launch.experiment.atomic import replace_file
from nrl_launch.experiment.continuation import render_continue_script
from nrl_launch.experiment.joblogs import TrackedExperiment, TrackedJob
from nrl_launch.experiment.locks import experiment_locks
from nrl_launch.experiment.manifest import (
    MANIFEST_NAME,
    VIA_LAUNCHER,
    Cancellation,
    Manifest,
    Plan,
    RetryOrigin,
    Run,
    append_cancellation,
    append_plan,
    append_run,
    epoch,
    manifest_path,
    read_manifest,
    write_manifest,
)
from nrl_launch.experiment.rerun import NextRun, load_next_run, save_next_run
from nrl_launch.plan import Submission
from nrl_launch.recipes.experiments import name_problem as name_problem  # the one name rule
from nrl_launch.recipes.layout import DEFAULT_LAYOUT
from nrl_launch.slurm.client import job_ids

if TYPE_CHECKING:  # pragma: no cover
    from nrl_launch.experiment.gitrepo import RepoInfo

Emit = Callable[[str], None]
CONTINUE_SCRIPT = "continue.sh"
METRICS_FILE = "metrics.json"
_Signature = tuple[int, int, int] | None  # (inode, size, mtime) of the manifest; None: no file


@dataclass(frozen=True)
class SnapshotRoot:
    """The folder of a project's snapshots: ``<project root>/<CODE_SNAPSHOT_DIRNAME>``."""

    project_root: Path
    dirname: str  # CODE_SNAPSHOT_DIRNAME, validated by the settings

    @property
    def path(self) -> Path:
        """The folder."""
        return self.project_root / self.dirname

    def experiment(self, name: str) -> ExperimentDir:
        """The folder of experiment ``name`` (which need not exist yet); SnapshotError when the
        name is not a plain, visible folder name."""
        problem = name_problem(name)
        if problem is not None:
            raise SnapshotError(f"{name!r} is not an experiment name (a folder of {self.path}): it {problem}")
        return ExperimentDir(self, name)

    def find(self, name: str) -> ExperimentDir:
        """The folder of experiment ``name``; SnapshotError when there is none."""
        folder = self.experiment(name)
        if not folder.path.is_dir():
            raise SnapshotError(f"no snapshot of experiment {name!r} in {self.path}")
        return folder

    def experiments(self) -> list[ExperimentDir]:
        """Every experiment folder, sorted by name (hidden folders, i.e. unfinished snapshots, and
        other names that are no experiment's are not listed)."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.path) if entry.is_dir())
        except FileNotFoundError:
            return []
        except OSError as e:
            raise SnapshotError(f"cannot list the snapshot folder {self.path}: {e}") from e
        return [ExperimentDir(self, name) for name in names if name_problem(name) is None]


def _signature(path: Path) -> _Signature:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError:
        return (-1, -1, -1)  # unreadable: never equal to what a read saw
    return st.st_ino, st.st_size, st.st_mtime_ns


class ExperimentDir:
    """One experiment's snapshot folder and what is recorded in it (module docstring).

    Made by :meth:`SnapshotRoot.experiment` (the name checked). Holds the
    manifest it read; not shared between threads.
    """

    def __init__(self, root: SnapshotRoot, name: str) -> None:
        self.root = root
        self.name = name
        self.path = root.path / name
        self._read: tuple[Manifest | SnapshotError, _Signature] | None = None

    def __repr__(self) -> str:
        return f"ExperimentDir({str(self.path)!r})"

    def exists(self) -> bool:
        """True when a complete snapshot is there (SnapshotError when something else is)."""
        from nrl_launch.experiment.snapshot import is_published  # the copying machinery: only for this

        return is_published(self.path)

    # ---- the manifest

    @property
    def manifest(self) -> Manifest:
        """The manifest, read at the first look; SnapshotError naming the file when it is
        missing or corrupt."""
        found = self._loaded()
        if isinstance(found, SnapshotError):
            raise found
        return found

    def _loaded(self) -> Manifest | SnapshotError:
        if self._read is None:
            before = _signature(manifest_path(self.path))  # a change from here on is caught by refresh()
            try:
                self._read = (read_manifest(self.path), before)
            except SnapshotError as e:
                self._read = (e, before)
        return self._read[0]

    def refresh(self) -> None:
        """Forget the manifest read when the file changed since (another process recorded in it)."""
        if self._read is not None and self._read[1] != _signature(manifest_path(self.path)):
            self._read = None

    def recorded(self) -> Manifest | None:
        """The manifest of the snapshot, None when there is no snapshot or no readable manifest."""
        if not self.exists():
            return None
        try:
            return self.manifest
        except SnapshotError:
            return None

    def has_manifest(self) -> bool:
        """True when the folder has a manifest file (readable or not)."""
        return manifest_path(self.path).exists()

    def manifest_problem(self) -> str | None:
        """Why the manifest cannot be used (``no manifest (.nrl_launch.yaml)``, or the read
        error), None when it can."""
        found = self._loaded()
        if not isinstance(found, SnapshotError):
            return None
        return str(found) if self.has_manifest() else f"no manifest ({MANIFEST_NAME})"

    def write_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest with ``manifest`` (atomically); SnapshotError on failure."""
        written = write_manifest(self.path, manifest)
        self._read = (manifest, (written.st_ino, written.st_size, written.st_mtime_ns))

    def adopt(self, fresh: Manifest) -> bool:
        """Give a snapshot without manifest (made by another tool) the one ``fresh`` makes
        without a claim on its code, so that its runs can be numbered and recorded; True
        when written."""
        if self.has_manifest():
            return False
        self.write_manifest(fresh.adopted())
        return True

    def stale_reasons(self, now: RepoInfo) -> list[str]:
        """Why the snapshot may not hold the code of the working tree ``now``."""
        try:
            recorded = self.manifest
        except SnapshotError as e:
            # e.g. a snapshot made by the bash launcher, which wrote no manifest
            return [f"its commit is unknown ({e})"]
        return recorded.stale_reasons(now)

    def record_run(self, job_id: str, run_label: str, via: str = VIA_LAUNCHER, *, base_log_dir: str | None = None,
                   retry: RetryOrigin | None = None, launch: str = "", token: str = "",
                   when: str | None = None) -> None:
        """Append a run submitted now (or ``when``) to the manifest (the caller holds the lock)."""
        self._recording(lambda: append_run(self.path, job_id, run_label, via, base_log_dir=base_log_dir, retry=retry,
                                           launch=launch, token=token, when=when))

    def record_plan(self, plan: Plan) -> None:
        """Append what a launch is about to submit, before its first sbatch (the caller holds the lock)."""
        self._recording(lambda: append_plan(self.path, plan))

    def record_cancellation(self, cancelled: Sequence[str]) -> None:
        """Append that ``nrl-launch cancel`` cancelled ``cancelled`` now (the caller holds the lock)."""
        self._recording(lambda: append_cancellation(self.path, cancelled))

    def _recording(self, append: Callable[[], Run | Plan | Cancellation]) -> None:
        """Append an entry; the manifest in memory gets it too when the file was as read until then
        (else it is read again at the next look): one read per command, however many entries."""
        path = manifest_path(self.path)
        before = _signature(path)
        read, self._read = self._read, None
        entry = append()
        if read is not None and isinstance(read[0], Manifest) and read[1] == before:
            self._read = (replace(read[0], entries=(*read[0].entries, entry)), _signature(path))

    # ---- the lock

    @contextmanager
    def lock(self, err: Emit) -> Iterator[None]:
        """Hold the experiment's lock for the ``with`` block (see :func:`locked`)."""
        with locked([self], err):
            yield

    # ---- the next run

    @property
    def continue_script(self) -> Path:
        """``continue.sh``: one more run of the experiment, by hand."""
        return self.path / CONTINUE_SCRIPT

    def write_continuation(self, last: Submission, *, script: str, version: str) -> None:
        """Write ``continue.sh`` for the launcher's last run ``last`` and the same submission as
        data for the retries of ``nrl-launch watch``; SnapshotError on failure."""
        text = render_continue_script(last, script=script, version=version)
        # surrogateescape: a non-UTF-8 byte of a file name or a value (which
        # Python holds as a surrogate escape) is written back as that byte.
        replace_file(self.continue_script, text.encode("utf-8", "surrogateescape"), mode=0o755)
        save_next_run(self.path, NextRun.of(last))

    def next_run(self) -> NextRun:
        """The run ``continue.sh`` submits, as data; SnapshotError saying why there is none."""
        return load_next_run(self.path)

    # ---- logs and outputs

    def log_root(self, base_log_dir: str | None) -> Path:
        """Where a job with this BASE_LOG_DIR (None: none) writes its ``<id>-logs`` folders."""
        return joblogs.log_root(self.path, base_log_dir)

    def tracked(self, runs: Iterable[Run] | None = None) -> TrackedExperiment:
        """The jobs of ``runs`` (default: the latest launch's, as the manifest records them) and
        their log folders, in submission order."""
        chosen = self.manifest.latest_launch.runs if runs is None else runs
        by_id = {run.job_id: run for run in chosen}  # an id recorded twice (ids restarted): the later run
        return TrackedExperiment(self.name, tuple(self.tracked_job(by_id[i]) for i in job_ids(by_id)))

    def tracked_job(self, run: Run) -> TrackedJob:
        """The job of a recorded run, with what tells its log folders from an earlier job's of the same id."""
        return TrackedJob(run.job_id, self.log_root(run.base_log_dir), run.token, epoch(run.submitted_at))

    def output_file(self, job_id: str) -> Path | None:
        """The job's Slurm ``--output`` file, if it exists."""
        return joblogs.output_file(self.path, self.name, job_id)

    def metrics_file(self) -> Path | None:
        """The ``metrics.json`` the recipe wrote, if any: in its output folder next to the
        script the manifest names, else under a default recipe root."""
        recorded = self.manifest
        name = recorded.experiment or self.name
        folders = [os.path.dirname(recorded.script)] if recorded.script else []
        # strings, not Paths: status asks a thousand experiments
        candidates = [os.path.join(self.path, folder, name, METRICS_FILE)
                      for folder in (*folders, *DEFAULT_LAYOUT.recipe_roots)]
        return next((Path(candidate) for candidate in candidates if os.path.isfile(candidate)), None)


@contextmanager
def locked(folders: Iterable[ExperimentDir], err: Emit) -> Iterator[None]:
    """Hold the locks of ``folders`` for the ``with`` block (one fixed order, see
    :func:`~nrl_launch.experiment.locks.experiment_locks`); once held, each folder's manifest
    is as the last writer left it."""
    chosen = list(folders)
    with experiment_locks((folder.path for folder in chosen), err):
        for folder in chosen:
            folder.refresh()
        yield
