"""The effects of a launch: git checks, snapshots, pre-flight, submission, WATCH.

Order matters for the contract: every script is read and every git check
made before the first snapshot; every snapshot made and every submission
pre-flighted before the first real ``sbatch``. From the first snapshot to the
last submission the launch holds the lock of every experiment it launches
(:mod:`nrl_launch.experiment.locks`). This module is loaded by one guarded import in
:mod:`nrl_launch.launch`; the DRYRUN=1 path never loads it (nor GitPython and
simple-slurm, which it imports).

The pre-flight asks ``sbatch --test-only`` once per distinct submission (the
experiment's name aside: a suite of a thousand recipes that differ only by
name is one question), the questions at once. Each experiment records its
launch's plan before its first run (:mod:`nrl_launch.experiment.launches`:
running the same command again finishes a launch that was cut short) and
submits its runs in order, each through :func:`nrl_launch.slurm.submit.submit_run`
(a transient failure is tried again, never queueing a run twice); up to
SUBMIT_PARALLEL experiments are submitted at once. Each experiment's lines
are kept until it is done and printed in argument order, so stdout is the
contract's lines in the order a sequential launch prints them.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

from nrl_launch import __version__
from nrl_launch.errors import (
    EnvironmentProblem,
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
from nrl_launch.experiment.joblogs import TOKEN_VARIABLE, TrackedExperiment, TrackedJob
from nrl_launch.experiment.launches import Chain, decide, finished_launches, new_launch_id, pin_changes, run_token
from nrl_launch.experiment.manifest import VIA_LAUNCHER, Manifest, Source, build_manifest, epoch
from nrl_launch.experiment.rerun import NextRun
from nrl_launch.experiment.snapshot import SnapshotBatch
from nrl_launch.follow import watch
from nrl_launch.follow.retry import Retrier, RetryBook
from nrl_launch.follow.verdict import GENERAL_FAIL, Verdict, judge_jobs
from nrl_launch.lines import info_line, skip_submission_line, submitting_line
from nrl_launch.plan import Experiment, Submission, build_submissions
from nrl_launch.settings import DryRun, LaunchSettings, SnapshotMode
from nrl_launch.slurm.client import QueuedJob, SbatchAnswer, SlurmClient
from nrl_launch.slurm.submit import adoptable, adopted_answer, option, submit_run

Emit = Callable[[str], None]
Progress = Callable[[int, int], None]
T = TypeVar("T")
R = TypeVar("R")
# Job variables that differ from one experiment to the next without changing whether Slurm
# accepts the submission: the pre-flight asks once for experiments that differ only there.
_PER_EXPERIMENT_ENV = frozenset({"COMMAND", "MOUNTS"})


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
    git_meta: str = ""  # the ++git_meta of its runs

    def with_stamp(self, settings: LaunchSettings, stamp: str) -> tuple[Submission, ...]:
        """Its runs as a launch with another stamp planned them (finishing a launch cut short)."""
        return build_submissions(self.experiment, settings._replace(launch_stamp=stamp), str(self.folder.path),
                                 self.rel_path, self.git_meta)

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
    """What :meth:`Pipeline.launch` did: the plan and the jobs of each experiment's launch (the runs
    a launch it finished had queued, then those it queued), with what tells their logs."""

    planned: tuple[PlannedExperiment, ...]
    jobs: dict[str, list[str]]  # experiment -> job ids, submission order
    tracked: dict[str, tuple[TrackedJob, ...]] = field(default_factory=dict)


class Outcome:
    """One experiment's part of the submission: its output lines (kept until it is done, then
    printed in argument order), its jobs, and how it ended."""

    def __init__(self) -> None:
        self.lines: list[tuple[bool, str]] = []  # (for stdout, text)
        self.jobs: list[str] = []
        self.tracked: list[TrackedJob] = []
        self.error: BaseException | None = None
        self.in_flight = False  # an sbatch was running when it stopped

    def out(self, text: str) -> None:
        """A stdout line."""
        self.lines.append((True, text))

    def err(self, text: str) -> None:
        """A stderr line."""
        self.lines.append((False, text))

    @property
    def uncertain(self) -> bool:
        """True when its last sbatch may have queued a job nobody knows of."""
        error = self.error
        return isinstance(error, SlurmUncertain) or (isinstance(error, KeyboardInterrupt) and self.in_flight)


class Pipeline:
    """Runs the effects of one launch with one settings object and one Slurm client."""

    def __init__(self, settings: LaunchSettings, slurm: SlurmClient, *, out: Emit, err: Emit,
                 progress: Callable[[Path], Progress | None] | None = None) -> None:
        self.settings = settings
        self.slurm = slurm
        self.out = out
        self.err = err
        self.progress = progress
        self.launch_id = new_launch_id(settings.launch_stamp)  # on the plan and the runs of every experiment

    def launch(self, experiments: Sequence[Experiment]) -> Launched:
        """Plan, pre-flight, snapshot and submit ``experiments`` (or skip submitting, DRYRUN=2).

        The pre-flight comes first, so a plan Slurm refuses leaves no snapshot behind.
        """
        planned = plan_submissions(experiments, self.settings)
        dry = self.settings.dryrun is DryRun.NO_SUBMIT
        if dry:
            self.dryrun2_preflight(planned)
        else:
            self.preflight(planned)
        # One launch (or continue.sh, or code_snapshot.sh) per experiment at a
        # time, from its snapshot to its last manifest entry.
        with locked((p.folder for p in planned), self.err):
            if not dry:  # a launch that would duplicate the runs of one cut short: refused before any snapshot
                self.chains(planned)
            reused = self.make_snapshots(planned)
            planned = with_snapshot_meta(planned, reused, self.settings)
            chains = self.chains(planned)
            planned = tuple(replace(p, submissions=chain.submissions) for p, chain in zip(planned, chains,
                                                                                          strict=True))
            self.write_continue_scripts(planned)
            self.record_plans(planned, chains)
            jobs, tracked = self.submit_all(planned, chains)
        return Launched(planned, jobs, tracked)

    def chains(self, planned: Sequence[PlannedExperiment]) -> list[Chain]:
        """What this launch submits for each experiment: all its runs, or, finishing a launch that
        was cut short, the runs it lacks (DRYRUN=2 records nothing: every run, as planned)."""
        dry = self.settings.dryrun is DryRun.NO_SUBMIT
        recorded = [None if dry else p.folder.recorded() for p in planned]
        finishing = finished_launches(recorded)
        return [decide(manifest, p.submissions, partial(p.with_stamp, self.settings),
                       stamp=self.settings.launch_stamp, launch=self.launch_id, finishing=finishing,
                       where=p.experiment.script) for p, manifest in zip(planned, recorded, strict=True)]

    def record_plans(self, planned: Sequence[PlannedExperiment], chains: Sequence[Chain]) -> None:
        """Record the plan of every experiment this launch starts, all before the first sbatch: a
        launch cut short anywhere is then finished by the same command, and an experiment it had
        completed is left as it is."""
        if self.settings.dryrun is DryRun.NO_SUBMIT:
            return
        for p, chain in zip(planned, chains, strict=True):
            if not chain.finishing:
                p.folder.record_plan(chain.plan)

    # ---- snapshots

    def write_continue_scripts(self, planned: Sequence[PlannedExperiment]) -> None:
        """Write each snapshot's continue.sh (after the pre-flight accepted the plan), and the same
        submission as data for the retries of ``nrl-launch watch`` (:mod:`nrl_launch.experiment.rerun`).

        A change of what an existing continue.sh pins is said on stderr, naming the variables;
        DRYRUN=2 changes nothing an experiment with runs will run: it leaves its continue.sh."""
        for p in planned:
            last = p.submissions[-1]
            changes = changed_pins(p.folder, last)
            recorded = p.folder.recorded()
            if self.settings.dryrun is DryRun.NO_SUBMIT and recorded is not None and recorded.runs:
                if changes:
                    self.err(f"[INFO]: {p.name}: DRYRUN=2 leaves its continue.sh as it is (the experiment has runs); "
                             f"a launch would pin {'; '.join(changes)}")
                continue
            if changes:
                self.err(f"[WARNING]: {p.name}: continue.sh now pins {'; '.join(changes)}")
            p.folder.write_continuation(last, script=p.rel_path, version=__version__)

    def make_snapshots(self, planned: Sequence[PlannedExperiment]) -> set[str]:
        """Create (or reuse) every experiment's snapshot; one copy per repository. The names
        of the experiments whose snapshot was reused."""
        maker = SnapshotMaker(self.settings.snapshot_mode, self.err, self.progress)
        reused = set()
        try:
            for p in planned:
                if not maker.provide(p.repo, p.folder, new_manifest(p)):
                    reused.add(p.name)
                    for line in reuse_notes(p, self.settings):
                        self.err(line)
        finally:
            maker.close()
        return reused

    # ---- Slurm

    def preflight(self, planned: Sequence[PlannedExperiment]) -> None:
        """``sbatch --test-only`` before any snapshot or job: one question per distinct submission
        (the name aside), the questions at once; every rejection is reported (one error naming each
        refused experiment and Slurm's reason). A Slurm that does not answer is said to be that,
        never a rejection."""
        groups: dict[tuple[object, ...], list[PlannedExperiment]] = {}
        for p in planned:
            groups.setdefault(preflight_key(p, self.settings.batch_script), []).append(p)
        with tempfile.TemporaryDirectory(prefix="nrl-preflight-") as folder:
            def ask(members: list[PlannedExperiment]) -> SlurmRejected | None:
                p = members[0]
                sub = p.submissions[0]
                # Slurm reads the batch script's #SBATCH lines: ask from a folder holding the
                # copy the job will run (the snapshot does not exist yet).
                cwd = Path(folder) / p.name
                cwd.mkdir()
                _copy_batch_script(p, self.settings.batch_script, cwd)
                try:
                    self.slurm.test_only(sub.argv, cwd=str(cwd), job_env=dict(sub.env))
                except SlurmRejected as e:
                    return e
                except SlurmUnreachable:
                    raise  # about Slurm, not about this experiment
                except SlurmError as e:  # transient, and still failing after the retries
                    raise SlurmError(f"the pre-flight (sbatch --test-only) got no answer from Slurm, which may "
                                     f"answer later: {e}. Nothing was submitted.", where=p.experiment.script,
                                     transient=e.transient) from e
                return None

            answers = dict(zip(groups, at_once(ask, list(groups.values()), self.settings.submit_parallel),
                               strict=True))
        rejected = [f"{p.experiment.script}: Slurm would reject experiment {p.name}: {answer}"
                    for p in planned for answer in [answers[preflight_key(p, self.settings.batch_script)]]
                    if answer is not None]
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

    def submit_all(self, planned: Sequence[PlannedExperiment],
                   chains: Sequence[Chain]) -> tuple[dict[str, list[str]], dict[str, tuple[TrackedJob, ...]]]:
        """Print each experiment's lines and submit its runs (or skip, DRYRUN=2), up to
        SUBMIT_PARALLEL experiments at once; the jobs of each experiment's launch.

        Stopped half-way (sbatch failing for good, Ctrl-C), every experiment's lines are printed
        and the error says which jobs are queued.
        """
        outcomes = [Outcome() for _ in planned]
        stop = threading.Event()
        interrupted = False
        work = list(zip(planned, chains, outcomes, strict=True))
        if self.settings.submit_parallel <= 1 or len(work) <= 1 or self.settings.dryrun is DryRun.NO_SUBMIT:
            for p, chain, outcome in work:
                self._chain(p, chain, outcome, stop)
                self._print(outcome)
        else:
            with ThreadPoolExecutor(min(self.settings.submit_parallel, len(work)),
                                    thread_name_prefix="nrl-submit") as pool:
                futures = [pool.submit(self._chain, p, chain, outcome, stop) for p, chain, outcome in work]
                printed = 0
                try:
                    for future, outcome in zip(futures, outcomes, strict=True):
                        future.result()
                        self._print(outcome)
                        printed += 1
                except KeyboardInterrupt:
                    interrupted = True
                    stop.set()  # the others stop before their next sbatch (theirs got the Ctrl-C too)
                    for future in futures:
                        future.exception()
                    for outcome in outcomes[printed:]:
                        self._print(outcome)
        jobs = {p.name: outcome.jobs for p, outcome in zip(planned, outcomes, strict=True)}
        tracked = {p.name: tuple(outcome.tracked) for p, outcome in zip(planned, outcomes, strict=True)}
        raise_stopped(outcomes, jobs, interrupted)
        return jobs, tracked

    def _print(self, outcome: Outcome) -> None:
        for to_stdout, text in outcome.lines:
            (self.out if to_stdout else self.err)(text)
        outcome.lines.clear()

    def _chain(self, p: PlannedExperiment, chain: Chain, outcome: Outcome, stop: threading.Event) -> None:
        """Submit one experiment's runs, keeping how it ended in ``outcome`` (and stopping the others
        when it failed)."""
        try:
            self._submit_chain(p, chain, outcome, stop)
        except BaseException as e:  # kept for submit_all, which reports it (Ctrl-C too)
            outcome.error = e
            stop.set()

    def _submit_chain(self, p: PlannedExperiment, chain: Chain, outcome: Outcome, stop: threading.Event) -> None:
        exp = p.experiment
        outcome.out(info_line(exp))
        if self.settings.dryrun is DryRun.NO_SUBMIT:
            count = len(p.submissions)
            script = shlex.quote(str(p.folder.continue_script))
            outcome.err(f"[INFO]: {exp.name}: DRYRUN=2 submits nothing. 'bash {script}' submits ONE run; launch "
                        f"without DRYRUN for all {count} planned run{'s' * (count != 1)}.")
            for sub in p.submissions:
                outcome.out(submitting_line(sub, exp))
                outcome.out(skip_submission_line(exp, str(p.snapshot_dir)))
            return
        folder = p.folder
        known = {run.job_id for run in folder.manifest.runs}
        if chain.finishing:
            outcome.err(finishing_note(p, chain))
            outcome.jobs.extend(run.job_id for run in chain.earlier)
            outcome.tracked.extend(folder.tracked_job(run) for run in chain.earlier)
        # a run the launch cut short had queued without recording it is adopted, not queued again
        listing = self._queued_as(chain, p) if chain.finishing else []
        for sub in chain.todo:
            if stop.is_set():  # another experiment failed or Ctrl-C: no new sbatch
                return
            outcome.out(submitting_line(sub, exp))
            where = f"{exp.script}: run {sub.run_label} of {exp.name}"
            token = run_token(chain.plan.launch, sub.index)
            found = adoptable(listing, sub.argv, known)
            since = epoch(chain.plan.at) if found else time.time()
            answer = (adopted_answer(found[0], "queued by the launch that was cut short, never recorded", token)
                      if found else self._submit(sub, token, known, outcome, where))
            if answer.adopted:
                outcome.err(f"[INFO]: {where}: job {answer.job_id} is this run's: {answer.adopted}")
            outcome.out(answer.text)
            outcome.jobs.append(answer.job_id)
            known.add(answer.job_id)
            outcome.tracked.append(TrackedJob(answer.job_id, folder.log_root(self.settings.base_log_dir or None),
                                              token, since))
            try:
                folder.record_run(answer.job_id, sub.run_label, VIA_LAUNCHER,
                                  base_log_dir=self.settings.base_log_dir or None, launch=chain.plan.launch,
                                  token=token, when=chain.plan.at if found else None)
            except (SnapshotError, OSError) as e:
                # The job is queued already: losing its manifest entry is not worth stopping the launch half-way.
                outcome.err(f"[WARNING]: could not record job {answer.job_id} in the manifest: {e}")

    def _submit(self, sub: Submission, token: str, known: set[str], outcome: Outcome, where: str) -> SbatchAnswer:
        outcome.in_flight = True
        try:
            answer = submit_run(self.slurm, sub.argv, cwd=sub.cwd, job_env={**dict(sub.env), TOKEN_VARIABLE: token},
                                known=known, token=token, say=outcome.err)
        except KeyboardInterrupt as e:
            # sbatch got the Ctrl-C too, perhaps after queueing the job
            raise SlurmUncertain("interrupted while submitting (sbatch was running)", where=where) from e
        except SlurmError as e:
            e.about(where)
            raise
        outcome.in_flight = False
        return answer

    def _queued_as(self, chain: Chain, p: PlannedExperiment) -> list[QueuedJob]:
        """The jobs of the experiment's job name the controller holds (to adopt what a launch cut
        short queued); SlurmUncertain when it cannot say."""
        try:
            return self.slurm.named(option(chain.todo[0].argv, "job-name")) if chain.todo else []
        except SlurmError as e:
            raise SlurmUncertain(f"cannot tell whether the launch of {p.name} that was cut short queued more runs "
                                 f"than it recorded: {e}", where=p.experiment.script) from e

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
        experiments = [TrackedExperiment(p.name, launched.tracked.get(p.name, ())) for p in launched.planned]
        retrier = None
        if self.settings.watching.max_retries:
            books = {p.name: RetryBook(p.folder, NextRun.of(p.submissions[-1])) for p in launched.planned}
            retrier = Retrier(self.slurm, self.settings.watching.max_retries, books, out=self.out, err=self.err,
                              clock=watch.timestamp)
        from nrl_launch.report.record import recorder_for  # the results history (nrl-launch report)

        watcher = watch.Watcher(self.slurm, self.settings.watching, out=self.out, err=self.err,
                                wait=wait or watch.wait_or_enter, interactive=interactive,
                                resume_hint=resume_hint(launched.planned, self.settings), retrier=retrier,
                                folders={p.name: p.folder for p in launched.planned},
                                recorder=recorder_for({p.name: p.folder for p in launched.planned}, self.slurm,
                                                      self.err))
        return watcher.watch(experiments)


SHARED_NOTE = ("[INFO]: the snapshots of this launch share their files through hard links (SNAPSHOT_MODE=auto on a "
               "filesystem without reflinks), so those files are read-only: to hot-fix one snapshot before its "
               "continue.sh, first give it files of its own with 'nrl-launch snapshot --writable <experiment>' "
               "(SNAPSHOT_MODE=copy makes every snapshot a copy of its own)")


class SnapshotMaker:
    """Creates or reuses the snapshots of one command: the launcher's and
    ``tools/code_snapshot.sh``'s one way to a snapshot. The first snapshot of
    a repository is a copy of its tree; later ones share it (SNAPSHOT_MODE)."""

    def __init__(self, mode: SnapshotMode, err: Emit, progress: Callable[[Path], Progress | None] | None) -> None:
        self.mode = mode
        self.err = err
        self.progress = progress
        self.batches: dict[Path, SnapshotBatch] = {}
        self.said_shared = False  # the note about read-only shared files, once per command

    def close(self) -> None:
        """Stop the copying threads of every batch."""
        for batch in self.batches.values():
            batch.close()

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
            made = self.batches[root].ensure(dest, manifest=new_manifest, progress=progress)
            if made.created:
                if made.mode_used == "link" and not self.said_shared:
                    self.said_shared = True
                    self.err(SHARED_NOTE)
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
    maker = SnapshotMaker(mode, err, progress)
    with folder.lock(err):
        try:
            maker.provide(repo, folder, fresh)
        finally:
            maker.close()
    return folder.path


def plan_submissions(experiments: Sequence[Experiment], settings: LaunchSettings) -> tuple[PlannedExperiment, ...]:
    """Git checks and submission plans for every experiment (nothing written).

    Each repository is described and listed once, however many of its
    scripts the launch has: a suite is hundreds of scripts of one repo.
    """
    repos: dict[Path, Repository] = {}
    roots: dict[Path, Path] = {}  # recipe folder -> project root (a suite's recipes share a few folders)
    planned = []
    for exp in experiments:
        check_experiment_name(exp)
        try:
            # A recipe inside a submodule runs in the superproject's tree.
            where = Path(exp.path).parent
            root = roots[where] if where in roots else roots.setdefault(where, gitrepo.project_root(where))
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
        planned.append(PlannedExperiment(exp, repo, rel_path, folder, subs, git_meta))
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
        settled.append(p if subs == p.submissions else replace(p, submissions=subs, git_meta=meta))
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
        raise EnvironmentProblem(f"CODE_SNAPSHOT_DIRNAME={dirname} is tracked by git ({clash}): choose a folder "
                                 "that is not part of the repository (and list it in .gitignore)", where=where)


def check_batch_script(exp: Experiment, batch_script: str, tracked: frozenset[str], folder: ExperimentDir) -> None:
    """The batch script must be in the snapshot the jobs will run from."""
    if Path(batch_script).is_absolute():  # outside the snapshot by the user's choice
        if not Path(batch_script).is_file():
            raise EnvironmentProblem(f"the batch script {batch_script} does not exist (BATCH_SCRIPT)",
                                     where=exp.script)
        return
    if folder.exists():
        if not (folder.path / batch_script).is_file():
            raise EnvironmentProblem(f"the existing snapshot {folder.path} has no batch script {batch_script} "
                                     "(BATCH_SCRIPT)", where=exp.script)
    elif Path(batch_script).as_posix() not in tracked:
        raise EnvironmentProblem(f"batch script {batch_script} is not a tracked file of the repository "
                                 "(the snapshot holds tracked files only; BATCH_SCRIPT)", where=exp.script)


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


def changed_pins(folder: ExperimentDir, last: Submission) -> list[str]:
    """What the continue.sh written for ``last`` would pin differently from the existing one
    (nothing when there is none, or no record of what it pins)."""
    if not folder.continue_script.exists():
        return []
    try:
        before = folder.next_run()
    except SnapshotError:
        return []
    return pin_changes(before, last)


def _batch_source(p: PlannedExperiment, batch_script: str) -> Path | None:
    """The batch script the job will run (None for an absolute one: it is used where it is)."""
    if Path(batch_script).is_absolute():
        return None
    return p.snapshot_dir / batch_script if p.folder.exists() else p.repo.info.root / batch_script


def _copy_batch_script(p: PlannedExperiment, batch_script: str, folder: Path) -> None:
    """Put the batch script the job will run into ``folder`` (an absolute one needs no copy)."""
    source = _batch_source(p, batch_script)
    if source is None:
        return
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


def preflight_key(p: PlannedExperiment, batch_script: str) -> tuple[object, ...]:
    """What Slurm's answer to ``sbatch --test-only`` for ``p`` depends on: its first run's sbatch
    words but the job name and the --output file, its job environment but the command and
    mounts, and the batch script (its bytes: Slurm reads its #SBATCH lines)."""
    sub = p.submissions[0]
    words = tuple(word.split("=", 1)[0] if word.startswith(("--job-name=", "--output=")) else word
                  for word in sub.argv)
    env = tuple(pair for pair in sub.env if pair[0] not in _PER_EXPERIMENT_ENV)
    source = _batch_source(p, batch_script)
    try:
        script: object = hashlib.sha256(source.read_bytes()).hexdigest() if source is not None else batch_script
    except OSError:
        script = str(source)  # unreadable: asked about on its own, and _copy_batch_script says why
    return words, env, script


def at_once(ask: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[ask(item) for item in items]``, up to ``workers`` at a time; the first exception (in the
    order of ``items``) is raised once every call has ended."""
    if workers <= 1 or len(items) <= 1:
        return [ask(item) for item in items]
    with ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="nrl-preflight") as pool:
        futures = [pool.submit(ask, item) for item in items]
        for future in futures:
            future.exception()  # wait for all: none is left running behind an error
        return [future.result() for future in futures]


def raise_stopped(outcomes: Sequence[Outcome], jobs: dict[str, list[str]], interrupted: bool) -> None:
    """Raise what stopped the submission, if anything: SubmissionInterrupted for Ctrl-C (exit 130),
    else SubmissionStopped with the first error in argument order; both list every queued job."""
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    certain = not any(outcome.uncertain for outcome in outcomes)
    ctrl_c = interrupted or any(isinstance(e, KeyboardInterrupt) or isinstance(e.__cause__, KeyboardInterrupt)
                                for e in errors)
    if ctrl_c:
        raise SubmissionInterrupted("interrupted while submitting", jobs, certain=certain)
    if not errors:
        return
    first = errors[0]
    if not isinstance(first, LauncherError):
        raise first
    raise SubmissionStopped(str(first), jobs, certain=certain) from first


def finishing_note(p: PlannedExperiment, chain: Chain) -> str:
    """What finishing a launch cut short does for one experiment (stderr)."""
    plan = chain.plan
    queued = len(chain.earlier)
    jobs = f" (jobs {' '.join(run.job_id for run in chain.earlier)})" if chain.earlier else ""
    head = (f"[INFO]: {p.name}: finishing the launch of {plan.at or plan.stamp}, which was cut short: {queued} of "
            f"{plan.runs} run{'s' * (plan.runs != 1)} queued{jobs}")
    if not chain.todo:
        return f"{head}; nothing more to submit"
    labels = ", ".join(sub.run_label for sub in chain.todo)
    return (f"{head}; submitting only run{'s' * (len(chain.todo) != 1)} {labels} (a run it queued without "
            "recording it is found in the queue and adopted)")


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
