"""The effects of a launch: git checks, snapshots, pre-flight, submission, WATCH.

Order matters for the contract: every script is read and every git check
made before the first snapshot; every snapshot made and every submission
pre-flighted before the first real ``sbatch``. From the first snapshot to the
last submission the launch holds the lock of every experiment it launches
(:mod:`nrl_launch.locks`). This module is loaded by one guarded import in
:mod:`nrl_launch.launch`; the DRYRUN=1 path never loads it (nor GitPython and
simple-slurm, which it imports).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrl_launch import __version__, gitrepo, manifest, watch
from nrl_launch.continuation import render_continue_script
from nrl_launch.errors import (
    LauncherError,
    PlanError,
    SlurmError,
    SlurmRejected,
    SlurmUncertain,
    SlurmUnreachable,
    SnapshotError,
    SubmissionStopped,
)
from nrl_launch.gitrepo import RepoInfo
from nrl_launch.joblogs import TrackedJob, log_root
from nrl_launch.lines import info_line, skip_submission_line, submitting_line
from nrl_launch.locks import experiment_locks
from nrl_launch.plan import Experiment, Submission, build_submissions
from nrl_launch.settings import DryRun, LaunchSettings, SnapshotMode
from nrl_launch.slurm import SlurmClient
from nrl_launch.snapshot import SnapshotBatch, existing_snapshot
from nrl_launch.verdict import Verdict

Emit = Callable[[str], None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Repository:
    """One git working tree of the launch, described and listed once."""

    info: RepoInfo
    files: tuple[str, ...]  # every tracked file, submodules included
    tracked: frozenset[str] = field(repr=False)

    @classmethod
    def describe(cls, root: Path) -> Repository:
        """Ask git once for everything the launch needs about ``root``."""
        files = tuple(gitrepo.list_tracked_files(root))
        return cls(gitrepo.find_repo(root), files, frozenset(files))


@dataclass(frozen=True)
class PlannedExperiment:
    """One experiment with its repository, snapshot folder and submissions."""

    experiment: Experiment
    repo: Repository
    rel_path: str  # the script's path from the repository root
    snapshot_dir: Path
    submissions: tuple[Submission, ...]

    @property
    def name(self) -> str:
        """The experiment name."""
        return self.experiment.name


@dataclass(frozen=True)
class Launched:
    """What :meth:`Pipeline.launch` did: the plan and the jobs it queued."""

    planned: tuple[PlannedExperiment, ...]
    jobs: dict[str, list[str]]  # experiment -> job ids, submission order


class Pipeline:
    """Runs the effects of one launch with one settings object and one Slurm client."""

    def __init__(self, settings: LaunchSettings, slurm: SlurmClient, *, out: Emit, err: Emit,
                 progress: Callable[[Path], Progress | None] | None = None) -> None:
        self.settings = settings
        self.slurm = slurm
        self.out = out
        self.err = err
        self.progress = progress

    def launch(self, experiments: Sequence[Experiment]) -> Launched:
        """Plan, snapshot, pre-flight and submit ``experiments`` (or skip submitting, DRYRUN=2)."""
        planned = plan_submissions(experiments, self.settings)
        # One launch (or continue.sh, or code_snapshot.sh) per experiment at a
        # time, from its snapshot to its last manifest entry.
        with experiment_locks((p.snapshot_dir for p in planned), self.err):
            self.make_snapshots(planned)
            if self.settings.dryrun is DryRun.NO_SUBMIT:
                self.dryrun2_preflight(planned)
            else:
                self.preflight(planned)
            write_continue_scripts(planned)
            jobs = self.submit_all(planned)
        return Launched(planned, jobs)

    # ---- snapshots

    def make_snapshots(self, planned: Sequence[PlannedExperiment]) -> None:
        """Create (or reuse) every experiment's snapshot; one copy per repository."""
        maker = SnapshotMaker(self.settings.snapshot_mode, self.err, self.progress)
        for p in planned:
            maker.provide(p.repo, p.snapshot_dir, new_manifest(p))

    # ---- Slurm

    def preflight(self, planned: Sequence[PlannedExperiment]) -> None:
        """``sbatch --test-only`` for every experiment before anything is queued."""
        for p in planned:
            sub = p.submissions[0]
            try:
                self.slurm.test_only(sub.argv, cwd=sub.cwd, job_env=dict(sub.env))
            except SlurmUnreachable:
                raise  # about Slurm, not about this experiment
            except SlurmRejected as e:
                raise SlurmRejected(f"Slurm would reject experiment {p.name}: {e}. Nothing was submitted.",
                                    where=p.experiment.script) from e
            except SlurmError as e:
                e.about(p.experiment.script)
                raise

    def dryrun2_preflight(self, planned: Sequence[PlannedExperiment]) -> None:
        """DRYRUN=2 asks Slurm too when it can, but only warns: nothing is submitted."""
        if not self.slurm.reachable():
            self.err("[INFO]: DRYRUN=2 and no Slurm controller reachable: pre-flight (sbatch --test-only) skipped")
            return
        try:
            self.preflight(planned)
        except LauncherError as e:
            self.err(f"[WARNING]: pre-flight: {e}")

    def submit_all(self, planned: Sequence[PlannedExperiment]) -> dict[str, list[str]]:
        """Print each experiment's lines and submit its runs (or skip, DRYRUN=2).

        Stopped half-way (sbatch failing, Ctrl-C), it says which jobs are queued.
        """
        jobs: dict[str, list[str]] = {}
        try:
            for p in planned:
                jobs[p.name] = []
                self._submit_experiment(p, jobs[p.name])
        except KeyboardInterrupt as e:
            raise SubmissionStopped("interrupted while submitting", jobs) from e
        except SlurmUncertain as e:
            raise SubmissionStopped(str(e), jobs, certain=False) from e
        except SlurmError as e:
            raise SubmissionStopped(str(e), jobs) from e
        return jobs

    def _submit_experiment(self, p: PlannedExperiment, job_ids: list[str]) -> None:
        exp = p.experiment
        self.out(info_line(exp))
        for sub in p.submissions:
            self.out(submitting_line(sub, exp))
            if self.settings.dryrun is DryRun.NO_SUBMIT:
                self.out(skip_submission_line(exp, str(p.snapshot_dir)))
                continue
            where = f"{exp.script}: run {sub.run_label} of {exp.name}"
            try:
                answer = self.slurm.submit(sub.argv, cwd=sub.cwd, job_env=dict(sub.env))
            except KeyboardInterrupt as e:
                # sbatch got the Ctrl-C too, perhaps after queueing the job
                raise SlurmUncertain("interrupted while submitting (sbatch was running)", where=where) from e
            except SlurmError as e:
                e.about(where)
                raise
            self.out(answer.text)
            job_ids.append(answer.job_id)
            try:
                manifest.append_run(p.snapshot_dir, answer.job_id, sub.run_label, via="launcher",
                                    base_log_dir=self.settings.base_log_dir or None)
            except (SnapshotError, OSError) as e:
                # The job is queued already: losing its manifest entry is not
                # worth stopping the launch half-way.
                self.err(f"[WARNING]: could not record job {answer.job_id} in the manifest: {e}")

    # ---- WATCH

    def watch(self, launched: Launched, wait: Callable[[float], None] | None) -> list[Verdict]:
        """Follow the submitted jobs until they leave the queue, then print and return the verdicts."""
        experiments = []
        for p in launched.planned:
            root = log_root(p.snapshot_dir, self.settings.base_log_dir)
            jobs = tuple(TrackedJob(job_id, root) for job_id in launched.jobs[p.name])
            experiments.append(watch.TrackedExperiment(p.name, jobs))
        return watch.watch_and_judge(experiments, self.slurm, interval=self.settings.watch_interval, out=self.out,
                                     err=self.err, wait=wait or watch.wait_or_enter,
                                     resume_hint=resume_hint(launched.planned, self.settings))


class SnapshotMaker:
    """Creates or reuses the snapshots of one command: the launcher's and
    ``tools/code_snapshot.sh``'s one way to a snapshot. The first snapshot of
    a repository is a copy of its tree; later ones share it (SNAPSHOT_MODE)."""

    def __init__(self, mode: SnapshotMode, err: Emit, progress: Callable[[Path], Progress | None] | None) -> None:
        self.mode = mode
        self.err = err
        self.progress = progress
        self.batches: dict[Path, SnapshotBatch] = {}

    def provide(self, repo: Repository, dest: Path, new_manifest: Mapping[str, Any]) -> None:
        """Make sure a complete snapshot of ``repo`` is at ``dest``, saying which on stderr.

        Every snapshot that is reused goes through :func:`stale_reasons`, also
        one that another process (one that does not take the lock, e.g. an
        older launcher) published while this one was copying.
        """
        if existing_snapshot(dest) is not None:
            self.err(f"Using existing code snapshot in {dest}")
        else:
            self.err(f"Creating new code snapshot in {dest}")
            root = repo.info.root
            if root not in self.batches:
                self.batches[root] = SnapshotBatch(root, repo.files, mode=self.mode)
            progress = self.progress(dest) if self.progress else None
            if self.batches[root].ensure(dest, manifest=new_manifest, progress=progress).created:
                return
            self.err(f"[WARNING]: another process created {dest} while this one was copying: using its snapshot")
        for reason in stale_reasons(dest, repo.info):
            self.err(f"[WARNING]: reusing {dest}: {reason}")


def take_snapshot(project_dir: Path, name: str, *, dirname: str, mode: SnapshotMode, err: Emit,
                  progress: Callable[[Path], Progress | None] | None = None) -> Path:
    """``nrl-launch snapshot``: the snapshot ``<project root>/<CODE_SNAPSHOT_DIRNAME>/<name>``
    of the repository holding ``project_dir``, created or reused; its absolute path."""
    if not name or name.startswith(".") or "/" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise PlanError(f"invalid experiment name {name!r}: a plain folder name is expected")
    root = gitrepo.work_tree_root(project_dir)
    repo = Repository.describe(root)
    check_snapshot_root(dirname, repo.tracked, where=name)
    dest = root / dirname / name
    fresh = manifest.build_manifest(repo.info, config_values={}, gpu_hours=None, experiment=name, script=None)
    with experiment_locks([dest], err):
        SnapshotMaker(mode, err, progress).provide(repo, dest, fresh)
    return dest


def plan_submissions(experiments: Sequence[Experiment], settings: LaunchSettings) -> tuple[PlannedExperiment, ...]:
    """Git checks and submission plans for every experiment (nothing written).

    Each repository is described and listed once, however many of its
    scripts the launch has: a suite is hundreds of scripts of one repo.
    """
    repos: dict[Path, Repository] = {}
    planned = []
    for exp in experiments:
        check_experiment_name(exp)
        try:
            # A recipe inside a submodule runs in the superproject's tree.
            root = gitrepo.project_root(Path(exp.path).parent)
            if root not in repos:
                repos[root] = Repository.describe(root)
            repo = repos[root]
            rel_path = gitrepo.tracked_path(Path(exp.path), root, repo.tracked)
        except LauncherError as e:
            e.about(exp.script)
            raise
        check_snapshot_root(settings.snapshot_dirname, repo.tracked, where=exp.script)
        snapshot_dir = root / settings.snapshot_dirname / exp.name
        check_batch_script(exp, settings.batch_script, repo.tracked, snapshot_dir)
        subs = build_submissions(exp, settings, str(snapshot_dir), rel_path, repo.info.short_meta)
        planned.append(PlannedExperiment(exp, repo, rel_path, snapshot_dir, subs))
    return tuple(planned)


def check_experiment_name(exp: Experiment) -> None:
    """A snapshot folder must be a plain, visible folder name.

    Hidden names beside the snapshots are the launcher's own (temporary
    folders, lock files) and ``status`` does not list them.
    """
    if exp.name.startswith(".") or not exp.name:
        raise PlanError(f"experiment name {exp.name!r} starts with '.' or is empty: its snapshot would be a hidden "
                        "folder (rename the script)", where=exp.script)


def check_snapshot_root(dirname: str, tracked: frozenset[str], *, where: str) -> None:
    """Snapshots must not land in a tracked folder (the next snapshot would copy them)."""
    prefix = dirname + "/"
    clash = next((f for f in tracked if f == dirname or f.startswith(prefix)), None)
    if clash is not None:
        raise PlanError(f"CODE_SNAPSHOT_DIRNAME={dirname} is tracked by git ({clash}): choose a folder that is not "
                        "part of the repository (and list it in .gitignore)", where=where)


def check_batch_script(exp: Experiment, batch_script: str, tracked: frozenset[str], snapshot_dir: Path) -> None:
    """The batch script must be in the snapshot the jobs will run from."""
    if Path(batch_script).is_absolute():
        return  # outside the snapshot by the user's choice
    if snapshot_dir.is_dir() and any(snapshot_dir.iterdir()):
        if not (snapshot_dir / batch_script).is_file():
            raise PlanError(f"the existing snapshot {snapshot_dir} has no batch script {batch_script}",
                            where=exp.script)
    elif Path(batch_script).as_posix() not in tracked:
        raise PlanError(f"batch script {batch_script} is not a tracked file of the repository "
                        "(the snapshot holds tracked files only)", where=exp.script)


def stale_reasons(snapshot: Path, now: RepoInfo) -> list[str]:
    """Why a reused snapshot may not hold the code the user has now."""
    try:
        recorded = manifest.read_manifest(snapshot)
    except SnapshotError as e:
        # e.g. a snapshot made by the bash launcher, which wrote no manifest
        return [f"its commit is unknown ({e})"]
    return manifest.stale_reasons(recorded, now)


def new_manifest(p: PlannedExperiment) -> dict[str, Any]:
    """The manifest a new snapshot of ``p`` starts with."""
    config = p.experiment.config
    return manifest.build_manifest(p.repo.info, config_values=config.values, gpu_hours=config.gpu_hours,
                                   experiment=p.name, script=p.rel_path)


def write_continue_scripts(planned: Sequence[PlannedExperiment]) -> None:
    """Write each snapshot's continue.sh (after the pre-flight accepted the plan)."""
    for p in planned:
        script = render_continue_script(p.submissions[-1], script=p.rel_path, version=__version__)
        path = p.snapshot_dir / "continue.sh"
        try:
            _write_executable(path, script)
        except OSError as e:
            raise SnapshotError(f"cannot write {path}: {e}") from e


def _write_executable(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and make it executable."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        # surrogateescape: a non-UTF-8 byte of a file name or a value (which
        # Python holds as a surrogate escape) is written back as that byte.
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
        tmp.chmod(0o755)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def resume_hint(planned: Sequence[PlannedExperiment], settings: LaunchSettings) -> str:
    """The ``nrl-launch watch`` command(s) that pick up where this launch stops."""
    by_root: dict[str, list[str]] = {}
    for p in planned:
        by_root.setdefault(str(p.repo.info.root), []).append(p.name)
    return "; ".join(
        f"nrl-launch watch --project-root {shlex.quote(root)} --code-snapshot-dirname "
        f"{shlex.quote(settings.snapshot_dirname)} " + " ".join(shlex.quote(n) for n in names)
        for root, names in by_root.items())
