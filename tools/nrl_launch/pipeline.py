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

import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
from nrl_launch.experiment import gitrepo, manifest
from nrl_launch.experiment.continuation import render_continue_script
from nrl_launch.experiment.gitrepo import RepoInfo
from nrl_launch.experiment.joblogs import TrackedJob, log_root
from nrl_launch.experiment.locks import experiment_locks
from nrl_launch.experiment.rerun import NextRun, save_next_run
from nrl_launch.experiment.snapshot import SnapshotBatch, existing_snapshot
from nrl_launch.follow import watch
from nrl_launch.follow.retry import Retrier, RetryBook
from nrl_launch.follow.verdict import GENERAL_FAIL, Verdict
from nrl_launch.lines import info_line, skip_submission_line, submitting_line
from nrl_launch.plan import Experiment, Submission, build_submissions
from nrl_launch.settings import DryRun, LaunchSettings, SnapshotMode, WatchSettings
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
        with experiment_locks((p.snapshot_dir for p in planned), self.err):
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
            if not maker.provide(p.repo, p.snapshot_dir, new_manifest(p)):
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
            self.err(f"[INFO]: {exp.name}: DRYRUN=2 submits nothing. 'bash {shlex.quote(str(p.snapshot_dir))}/"
                     f"continue.sh' submits ONE run; launch without DRYRUN for all {count} planned "
                     f"run{'s' * (count != 1)}.")
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
                manifest.append_run(p.snapshot_dir, answer.job_id, sub.run_label, via=manifest.VIA_LAUNCHER,
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
        by_root: dict[Path, list[str]] = {}
        for p in launched.planned:
            by_root.setdefault(p.repo.info.root, []).append(p.name)
        lines = ["[INFO]: Next:"]
        for root, names in by_root.items():
            where = ["--project-root", str(root), "--code-snapshot-dirname", self.settings.snapshot_dirname]
            lines.append("    " + " ".join(shlex.quote(w) for w in ["nrl-launch", "status", *where, *names]) +
                         "   # job states, steps, verdicts")
            lines.append("    " + watch_command(root, self.settings.snapshot_dirname, self.settings.watching, names) +
                         "   # follow to the verdicts")
        return lines

    def watch(self, launched: Launched, wait: Callable[[float], None] | None, interactive: bool) -> list[Verdict]:
        """Follow the submitted jobs until they leave the queue, then print and return the verdicts."""
        experiments = []
        for p in launched.planned:
            root = log_root(p.snapshot_dir, self.settings.base_log_dir)
            jobs = tuple(TrackedJob(job_id, root) for job_id in launched.jobs[p.name])
            experiments.append(watch.TrackedExperiment(p.name, jobs))
        retrier = None
        if self.settings.watching.max_retries:
            books = {p.name: RetryBook(NextRun.of(p.submissions[-1])) for p in launched.planned}
            retrier = Retrier(self.slurm, self.settings.watching.max_retries, books, out=self.out, err=self.err,
                              clock=watch.timestamp)
        watcher = watch.Watcher(self.slurm, self.settings.watching, out=self.out, err=self.err,
                                wait=wait or watch.wait_or_enter, interactive=interactive,
                                resume_hint=resume_hint(launched.planned, self.settings), retrier=retrier)
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

    def provide(self, repo: Repository, dest: Path, new_manifest: Mapping[str, Any]) -> bool:
        """Make sure a complete snapshot of ``repo`` is at ``dest``, saying which on stderr;
        True when it was created, False when an existing one is reused.

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
                return True
            self.err(f"[WARNING]: another process created {dest} while this one was copying: using its snapshot")
        for reason in stale_reasons(dest, repo.info):
            self.err(f"[WARNING]: reusing {dest}: {reason}")
        if not (dest / manifest.MANIFEST_NAME).exists():
            # without one, continue.sh could not number its run and no run could be recorded
            manifest.write_manifest(dest, manifest.adopted(new_manifest))
            self.err(f"[INFO]: wrote a manifest into {dest} (its source is unknown) so that runs can be recorded")
        return False


def take_snapshot(project_dir: Path, name: str, *, dirname: str, mode: SnapshotMode, err: Emit,
                  progress: Callable[[Path], Progress | None] | None = None) -> Path:
    """``nrl-launch snapshot``: the snapshot ``<project root>/<CODE_SNAPSHOT_DIRNAME>/<name>``
    of the repository holding ``project_dir``, created or reused; its absolute path."""
    if not name or name.startswith(".") or "/" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise PlanError(f"invalid experiment name {name!r}: a plain folder name is expected")
    root = gitrepo.project_root(project_dir)  # as the launcher: the top superproject from inside a submodule
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
        # ++git_meta names the code that runs: a reused snapshot's own commit, not HEAD's
        git_meta = recorded_meta(snapshot_dir) or repo.info.short_meta
        subs = build_submissions(exp, settings, str(snapshot_dir), rel_path, git_meta)
        planned.append(PlannedExperiment(exp, repo, rel_path, snapshot_dir, subs))
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
        meta = recorded_meta(p.snapshot_dir) or p.repo.info.short_meta
        subs = build_submissions(p.experiment, settings, str(p.snapshot_dir), p.rel_path, meta)
        settled.append(p if subs == p.submissions else replace(p, submissions=subs))
    return tuple(settled)


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


def recorded_meta(snapshot: Path) -> str | None:
    """The ``<short sha>-<subject>`` an existing snapshot's manifest records, if any."""
    if existing_snapshot(snapshot) is None:
        return None
    try:
        source = manifest.read_manifest(snapshot).get("source")
    except SnapshotError:
        return None
    meta = source.get("short_meta") if isinstance(source, dict) else None
    return meta if isinstance(meta, str) and meta else None


def reuse_notes(p: PlannedExperiment, settings: LaunchSettings) -> list[str]:
    """What a reused snapshot already holds and what relaunching it means (stderr)."""
    try:
        recorded = manifest.read_manifest(p.snapshot_dir)
    except SnapshotError:
        return [f"[INFO]: {p.name}: the snapshot has no manifest: its commit and runs are unknown"]
    source = recorded.get("source")
    source = source if isinstance(source, dict) else {}
    commit = str(source.get("short_meta") or source.get("commit") or "unknown")
    dirty = " (with uncommitted changes)" if source.get("dirty") else ""
    runs = manifest.job_runs(recorded["runs"])
    last = "no run yet"
    if runs:  # the verdict of the latest launch (an earlier one's logs are in the snapshot too)
        status = watch.from_runs(p.name, p.snapshot_dir, manifest.latest_launch(runs)).verdict().status
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
    source = p.snapshot_dir / batch_script if existing_snapshot(p.snapshot_dir) else p.repo.info.root / batch_script
    target = folder / batch_script
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, target)
    except OSError as e:
        raise PlanError(f"cannot read the batch script {source}: {e}", where=p.experiment.script) from e


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
    """Write each snapshot's continue.sh (after the pre-flight accepted the plan), and the
    same submission as data for the retries of ``nrl-launch watch`` (:mod:`nrl_launch.experiment.rerun`)."""
    for p in planned:
        script = render_continue_script(p.submissions[-1], script=p.rel_path, version=__version__)
        path = p.snapshot_dir / "continue.sh"
        try:
            _write_executable(path, script)
        except OSError as e:
            raise SnapshotError(f"cannot write {path}: {e}") from e
        save_next_run(NextRun.of(p.submissions[-1]))


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
    return "; ".join(watch_command(Path(root), settings.snapshot_dirname, settings.watching, names)
                     for root, names in by_root.items())


def watch_command(project_root: Path, snapshot_dirname: str, watching: WatchSettings, names: Sequence[str]) -> str:
    """The ``nrl-launch watch`` command line that follows ``names`` with these settings."""
    words = ["nrl-launch", "watch", "--project-root", str(project_root), "--code-snapshot-dirname", snapshot_dirname,
             "--watch-interval", f"{watching.interval:g}"]
    if watching.give_up != WatchSettings().give_up:
        words += ["--watch-give-up", f"{watching.give_up:g}"]
    if watching.stop_chain_on_failure:
        words += ["--stop-chain-on-failure", "1"]
    if watching.max_retries:
        words += ["--max-retries", str(watching.max_retries)]
    return " ".join(shlex.quote(word) for word in [*words, *names])
