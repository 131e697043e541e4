"""The effects of a launch: git checks, snapshots, pre-flight, submission, WATCH.

Order matters for the contract: every script is read and every git check
made before the first snapshot; every snapshot made and every submission
pre-flighted before the first real ``sbatch``. From the first snapshot to the
last submission the launch holds the lock of every experiment it launches
(:mod:`nrl_launch.experiment.locks`). This module is loaded by one guarded import in
:mod:`nrl_launch.launch`; the DRYRUN=1 path never loads it (nor GitPython and
simple-slurm, which it imports).
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from nrl_launch import __version__
from nrl_launch.errors import (
    LauncherError,
    PlanError,
    SlurmError,
    SlurmRejected,
    SlurmUncertain,
    SlurmUnreachable,
    SnapshotError,
    SubmissionInterrupted,
    SubmissionStopped,
)
from nrl_launch.experiment import gitrepo
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot, locked, name_problem
from nrl_launch.experiment.gitrepo import RepoInfo
from nrl_launch.experiment.joblogs import TrackedExperiment, TrackedJob
from nrl_launch.experiment.manifest import VIA_LAUNCHER, Manifest, Source, build_manifest
from nrl_launch.experiment.rerun import NextRun
from nrl_launch.experiment.snapshot import SnapshotBatch
from nrl_launch.follow import watch
from nrl_launch.follow.retry import Retrier, RetryBook
from nrl_launch.follow.verdict import GENERAL_FAIL, Verdict, judge_jobs
from nrl_launch.lines import info_line, skip_submission_line, submitting_line
from nrl_launch.plan import Experiment, Submission, build_submissions
from nrl_launch.settings import DryRun, LaunchSettings, SnapshotMode
from nrl_launch.slurm.client import SlurmClient

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
    folder: ExperimentDir
    submissions: tuple[Submission, ...]

    @property
    def name(self) -> str:
        """The experiment name."""
        return self.experiment.name

    @property
    def snapshot_dir(self) -> Path:
        """The experiment's snapshot folder."""
        return self.folder.path


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
        """Plan, pre-flight, snapshot and submit ``experiments`` (or skip submitting, DRYRUN=2).

        The pre-flight comes first, so a plan Slurm refuses leaves no snapshot behind.
        """
        planned = plan_submissions(experiments, self.settings)
        if self.settings.dryrun is DryRun.NO_SUBMIT:
            self.dryrun2_preflight(planned)
        else:
            self.preflight(planned)
        # One launch (or continue.sh, or code_snapshot.sh) per experiment at a
        # time, from its snapshot to its last manifest entry.
        with locked((p.folder for p in planned), self.err):
            reused = self.make_snapshots(planned)
            planned = with_snapshot_meta(planned, reused, self.settings)
            write_continue_scripts(planned)
            jobs = self.submit_all(planned)
        return Launched(planned, jobs)

    # ---- snapshots

    def make_snapshots(self, planned: Sequence[PlannedExperiment]) -> set[str]:
        """Create (or reuse) every experiment's snapshot; one copy per repository. The names
        of the experiments whose snapshot was reused."""
        maker = SnapshotMaker(self.settings.snapshot_mode, self.err, self.progress)
        reused = set()
        for p in planned:
            if not maker.provide(p.repo, p.folder, new_manifest(p)):
                reused.add(p.name)
                for line in reuse_notes(p, self.settings):
                    self.err(line)
        return reused

    # ---- Slurm

    def preflight(self, planned: Sequence[PlannedExperiment]) -> None:
        """``sbatch --test-only`` for every experiment before any snapshot or job; every
        rejection is reported (one error naming each refused experiment and Slurm's reason)."""
        rejected = []
        with tempfile.TemporaryDirectory(prefix="nrl-preflight-") as folder:
            for p in planned:
                sub = p.submissions[0]
                # Slurm reads the batch script's #SBATCH lines: ask from a folder holding the
                # copy the job will run (the snapshot does not exist yet).
                cwd = Path(folder) / p.name
                cwd.mkdir()
                _copy_batch_script(p, self.settings.batch_script, cwd)
                try:
                    self.slurm.test_only(sub.argv, cwd=str(cwd), job_env=dict(sub.env))
                except SlurmUnreachable:
                    raise  # about Slurm, not about this experiment
                except SlurmRejected as e:
                    rejected.append(f"{p.experiment.script}: Slurm would reject experiment {p.name}: {e}")
                except SlurmError as e:
                    e.about(p.experiment.script)
                    raise
        if rejected:
            raise SlurmRejected("; ".join(rejected) + ". Nothing was submitted.")

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
            raise SubmissionInterrupted("interrupted while submitting", jobs) from e
        except SlurmUncertain as e:
            # Ctrl-C while sbatch ran (see _submit_experiment) is an interrupt too: exit 130
            stopped = SubmissionInterrupted if isinstance(e.__cause__, KeyboardInterrupt) else SubmissionStopped
            raise stopped(str(e), jobs, certain=False) from e
        except SlurmError as e:
            raise SubmissionStopped(str(e), jobs) from e
        return jobs

    def _submit_experiment(self, p: PlannedExperiment, job_ids: list[str]) -> None:
        exp = p.experiment
        self.out(info_line(exp))
        if self.settings.dryrun is DryRun.NO_SUBMIT:
            count = len(p.submissions)
            script = shlex.quote(str(p.folder.continue_script))
            self.err(f"[INFO]: {exp.name}: DRYRUN=2 submits nothing. 'bash {script}' submits ONE run; launch "
                     f"without DRYRUN for all {count} planned run{'s' * (count != 1)}.")
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
                p.folder.record_run(answer.job_id, sub.run_label, VIA_LAUNCHER,
                                    base_log_dir=self.settings.base_log_dir or None)
            except (SnapshotError, OSError) as e:
                # The job is queued already: losing its manifest entry is not
                # worth stopping the launch half-way.
                self.err(f"[WARNING]: could not record job {answer.job_id} in the manifest: {e}")

    # ---- WATCH

    def next_steps(self, launched: Launched) -> list[str]:
        """The commands worth typing after a launch that did not watch (stderr)."""
        if self.settings.dryrun is DryRun.NO_SUBMIT or not any(launched.jobs.values()):
            return []
        lines = ["[INFO]: Next:"]
        for snapshots, names in by_snapshot_root(launched.planned).items():
            where = ["--project-root", str(snapshots.project_root), "--code-snapshot-dirname", snapshots.dirname]
            lines.append("    " + " ".join(shlex.quote(w) for w in ["nrl-launch", "status", *where, *names]) +
                         "   # job states, steps, verdicts")
            lines.append("    " + watch.watch_command(snapshots, self.settings.watching, names) +
                         "   # follow to the verdicts")
        return lines

    def watch(self, launched: Launched, wait: Callable[[float], None] | None, interactive: bool) -> list[Verdict]:
        """Follow the submitted jobs until they leave the queue, then print and return the verdicts."""
        experiments = []
        for p in launched.planned:
            root = p.folder.log_root(self.settings.base_log_dir)
            jobs = tuple(TrackedJob(job_id, root) for job_id in launched.jobs[p.name])
            experiments.append(TrackedExperiment(p.name, jobs))
        retrier = None
        if self.settings.watching.max_retries:
            books = {p.name: RetryBook(p.folder, NextRun.of(p.submissions[-1])) for p in launched.planned}
            retrier = Retrier(self.slurm, self.settings.watching.max_retries, books, out=self.out, err=self.err,
                              clock=watch.timestamp)
        from nrl_launch.report.record import recorder_for  # the results history (nrl-launch report)

        watcher = watch.Watcher(self.slurm, self.settings.watching, out=self.out, err=self.err,
                                wait=wait or watch.wait_or_enter, interactive=interactive,
                                resume_hint=resume_hint(launched.planned, self.settings), retrier=retrier,
                                recorder=recorder_for({p.name: p.folder for p in launched.planned}, self.slurm,
                                                      self.err))
        return watcher.watch(experiments)


class SnapshotMaker:
    """Creates or reuses the snapshots of one command: the launcher's and
    ``tools/code_snapshot.sh``'s one way to a snapshot. The first snapshot of
    a repository is a copy of its tree; later ones share it (SNAPSHOT_MODE)."""

    def __init__(self, mode: SnapshotMode, err: Emit, progress: Callable[[Path], Progress | None] | None) -> None:
        self.mode = mode
        self.err = err
        self.progress = progress
        self.batches: dict[Path, SnapshotBatch] = {}

    def provide(self, repo: Repository, folder: ExperimentDir, new_manifest: Manifest) -> bool:
        """Make sure a complete snapshot of ``repo`` is in ``folder``, saying which on stderr;
        True when it was created, False when an existing one is reused.

        Every snapshot that is reused goes through the stale check, also one
        that another process (one that does not take the lock, e.g. an
        older launcher) published while this one was copying.
        """
        dest = folder.path
        if folder.exists():
            self.err(f"Using existing code snapshot in {dest}")
        else:
            self.err(f"Creating new code snapshot in {dest}")
            root = repo.info.root
            if root not in self.batches:
                self.batches[root] = SnapshotBatch(root, repo.files, mode=self.mode)
            progress = self.progress(dest) if self.progress else None
            if self.batches[root].ensure(dest, manifest=new_manifest, progress=progress).created:
                return True
            self.err(f"[WARNING]: another process created {dest} while this one was copying: using its snapshot")
        for reason in folder.stale_reasons(repo.info):
            self.err(f"[WARNING]: reusing {dest}: {reason}")
        # without a manifest, continue.sh could not number its run and no run could be recorded
        if folder.adopt(new_manifest):
            self.err(f"[INFO]: wrote a manifest into {dest} (its source is unknown) so that runs can be recorded")
        return False


def take_snapshot(project_dir: Path, name: str, *, dirname: str, mode: SnapshotMode, err: Emit,
                  progress: Callable[[Path], Progress | None] | None = None) -> Path:
    """``nrl-launch snapshot``: the snapshot ``<project root>/<CODE_SNAPSHOT_DIRNAME>/<name>``
    of the repository holding ``project_dir``, created or reused; its absolute path."""
    problem = name_problem(name)
    if problem is not None:
        raise PlanError(f"invalid experiment name {name!r}: it {problem}; a plain, visible folder name is expected")
    root = gitrepo.project_root(project_dir)  # as the launcher: the top superproject from inside a submodule
    repo = Repository.describe(root)
    check_snapshot_root(dirname, repo.tracked, where=name)
    folder = SnapshotRoot(root, dirname).experiment(name)
    fresh = build_manifest(repo.info, config_values={}, gpu_hours=None, experiment=name, script=None)
    with folder.lock(err):
        SnapshotMaker(mode, err, progress).provide(repo, folder, fresh)
    return folder.path


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
        folder = SnapshotRoot(root, settings.snapshot_dirname).experiment(exp.name)
        check_batch_script(exp, settings.batch_script, repo.tracked, folder)
        # ++git_meta names the code that runs: a reused snapshot's own commit, not HEAD's
        git_meta = recorded_meta(folder) or repo.info.short_meta
        subs = build_submissions(exp, settings, str(folder.path), rel_path, git_meta)
        planned.append(PlannedExperiment(exp, repo, rel_path, folder, subs))
    return tuple(planned)


def with_snapshot_meta(planned: Sequence[PlannedExperiment], reused: set[str],
                       settings: LaunchSettings) -> tuple[PlannedExperiment, ...]:
    """``planned`` with the ``++git_meta`` of each ``reused`` snapshot taken again from it: another
    launch may have created it (from other code) while this one waited for the lock. A snapshot
    this launch created holds the code it planned with."""
    settled = []
    for p in planned:
        if p.name not in reused:
            settled.append(p)
            continue
        meta = recorded_meta(p.folder) or p.repo.info.short_meta
        subs = build_submissions(p.experiment, settings, str(p.snapshot_dir), p.rel_path, meta)
        settled.append(p if subs == p.submissions else replace(p, submissions=subs))
    return tuple(settled)


def check_experiment_name(exp: Experiment) -> None:
    """A snapshot folder must be a plain, visible folder name (the one rule, :func:`name_problem`)."""
    problem = name_problem(exp.name)
    if problem is not None:
        raise PlanError(f"experiment name {exp.name!r} {problem}: its snapshot would not be a plain, visible folder "
                        "(rename the script)", where=exp.script)


def check_snapshot_root(dirname: str, tracked: frozenset[str], *, where: str) -> None:
    """Snapshots must not land in a tracked folder (the next snapshot would copy them)."""
    prefix = dirname + "/"
    clash = next((f for f in tracked if f == dirname or f.startswith(prefix)), None)
    if clash is not None:
        raise PlanError(f"CODE_SNAPSHOT_DIRNAME={dirname} is tracked by git ({clash}): choose a folder that is not "
                        "part of the repository (and list it in .gitignore)", where=where)


def check_batch_script(exp: Experiment, batch_script: str, tracked: frozenset[str], folder: ExperimentDir) -> None:
    """The batch script must be in the snapshot the jobs will run from."""
    if Path(batch_script).is_absolute():
        return  # outside the snapshot by the user's choice
    if folder.exists():
        if not (folder.path / batch_script).is_file():
            raise PlanError(f"the existing snapshot {folder.path} has no batch script {batch_script}",
                            where=exp.script)
    elif Path(batch_script).as_posix() not in tracked:
        raise PlanError(f"batch script {batch_script} is not a tracked file of the repository "
                        "(the snapshot holds tracked files only)", where=exp.script)


def recorded_meta(folder: ExperimentDir) -> str | None:
    """The ``<short sha>-<subject>`` an existing snapshot's manifest records, if any."""
    recorded = folder.recorded()
    source = recorded.source if recorded is not None else None
    return (source.short_meta or None) if source is not None else None


def reuse_notes(p: PlannedExperiment, settings: LaunchSettings) -> list[str]:
    """What a reused snapshot already holds and what relaunching it means (stderr)."""
    try:
        recorded = p.folder.manifest
    except SnapshotError:
        return [f"[INFO]: {p.name}: the snapshot has no manifest: its commit and runs are unknown"]
    source = recorded.source or Source()
    commit = source.short_meta or source.commit or "unknown"
    dirty = " (with uncommitted changes)" if source.dirty else ""
    runs = recorded.runs
    last = "no run yet"
    if runs:  # the verdict of the latest launch (an earlier one's logs are in the snapshot too)
        status = judge_jobs(p.name, p.folder.tracked().jobs).status
        last = "none yet" if status == GENERAL_FAIL else status
    start_over = f"rm -rf {shlex.quote(str(p.snapshot_dir))}"
    return [f"[INFO]: {p.name}: the snapshot holds commit {commit}{dirty} and {len(runs)} recorded "
            f"run{'s' * (len(runs) != 1)} (last verdict: {last}); the recipe resumes from its checkpoint there.",
            f"[INFO]: {p.name}: to start over instead: {start_over} (or another CODE_SNAPSHOT_DIRNAME than "
            f"{settings.snapshot_dirname})"]


def _copy_batch_script(p: PlannedExperiment, batch_script: str, folder: Path) -> None:
    """Put the batch script the job will run into ``folder`` (an absolute one needs no copy)."""
    if Path(batch_script).is_absolute():
        return
    source = p.snapshot_dir / batch_script if p.folder.exists() else p.repo.info.root / batch_script
    target = folder / batch_script
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, target)
    except OSError as e:
        raise PlanError(f"cannot read the batch script {source}: {e}", where=p.experiment.script) from e


def new_manifest(p: PlannedExperiment) -> Manifest:
    """The manifest a new snapshot of ``p`` starts with."""
    config = p.experiment.config
    return build_manifest(p.repo.info, config_values=config.values, gpu_hours=config.gpu_hours, experiment=p.name,
                          script=p.rel_path)


def write_continue_scripts(planned: Sequence[PlannedExperiment]) -> None:
    """Write each snapshot's continue.sh (after the pre-flight accepted the plan), and the
    same submission as data for the retries of ``nrl-launch watch`` (:mod:`nrl_launch.experiment.rerun`)."""
    for p in planned:
        p.folder.write_continuation(p.submissions[-1], script=p.rel_path, version=__version__)


def by_snapshot_root(planned: Iterable[PlannedExperiment]) -> dict[SnapshotRoot, list[str]]:
    """The experiments' names grouped by the snapshot root of their project, in launch order."""
    groups: dict[SnapshotRoot, list[str]] = {}
    for p in planned:
        groups.setdefault(p.folder.root, []).append(p.name)
    return groups


def resume_hint(planned: Sequence[PlannedExperiment], settings: LaunchSettings) -> str:
    """The ``nrl-launch watch`` command(s) that pick up where this launch stops."""
    return "; ".join(watch.watch_command(snapshots, settings.watching, names)
                     for snapshots, names in by_snapshot_root(planned).items())
