"""The launch itself: plan everything, then snapshot, pre-flight and submit.

Order matters for the contract: every script is read and every git check
made before the first snapshot; every snapshot made and every submission
pre-flighted before the first real ``sbatch``. Output goes through the
``out`` (stdout lines) and ``err`` (stderr lines) callbacks: this module
never prints by itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from nrl_launch import __version__
from nrl_launch.errors import LauncherError, SlurmError, SnapshotError
from nrl_launch.plan import Experiment, Submission, build_submissions, plan_experiments, total_gpu_hours
from nrl_launch.settings import LaunchSettings

if TYPE_CHECKING:  # pathlib costs milliseconds the DRYRUN=1 path does not need
    from pathlib import Path

    from nrl_launch.watch import Verdict

Emit = Callable[[str], None]
# Given a snapshot folder, a ``progress(done, total)`` callback for its copy.
ProgressFactory = Callable[["Path"], Callable[[int, int], None]]


@dataclass(frozen=True)
class Prepared:
    """One experiment with everything git told us and its submissions."""

    experiment: Experiment
    repo: object  # gitrepo.RepoInfo (kept untyped: gitrepo imports GitPython)
    tracked_files: tuple[str, ...]  # of its repository, shared by its experiments
    rel_path: str
    snapshot_dir: Path
    submissions: tuple[Submission, ...]


@dataclass
class LaunchResult:
    """What a launch did: GPU-hours, submitted jobs and (with WATCH) verdicts."""

    total_gpu_hours: int
    jobs: dict[str, list[str]] = field(default_factory=dict)  # experiment -> job ids
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when WATCH judged any experiment failed."""
        return any(v.failed for v in self.verdicts)


def info_line(exp: Experiment) -> str:
    """``[INFO]: <gpu_hours> GPUhrs to run <script>``."""
    return f"[INFO]: {exp.config.gpu_hours} GPUhrs to run {exp.script}"


def total_line(total: int) -> str:
    """The last stdout line of every successful launch."""
    return f"[INFO]: Total GPU hours: {total}"


def _warn_defaults(experiments: Sequence[Experiment], err: Emit) -> None:
    for exp in experiments:
        if exp.config.num_runs_defaulted:
            err(f"[WARNING]: {exp.script}: NUM_RUNS is not set in the CONFIG block; using {exp.config.num_runs}")


def dry_run(experiments: Sequence[Experiment], out: Emit) -> LaunchResult:
    """DRYRUN=1: GPU-hours only; no git, no snapshot, no Slurm."""
    for exp in experiments:
        out(info_line(exp))
        out(f"[DRY_RUN]: Skipping creation of snapshot and submission of {exp.script}.")
    total = total_gpu_hours(experiments)
    out(total_line(total))
    return LaunchResult(total)


def prepare(experiments: Sequence[Experiment], settings: LaunchSettings) -> list[Prepared]:
    """Git checks and submission plans for every experiment (no side effects).

    Each repository is described and listed once, however many of its
    scripts the launch has: a suite is hundreds of scripts of one repo.
    """
    from pathlib import Path

    from nrl_launch import gitrepo

    repos: dict[Path, tuple[object, tuple[str, ...], frozenset[str]]] = {}
    prepared = []
    for exp in experiments:
        script = Path(exp.path)
        root = gitrepo.work_tree_root(script.parent)
        if root not in repos:
            files = tuple(gitrepo.list_tracked_files(root))
            repos[root] = (gitrepo.find_repo(root), files, frozenset(files))
        repo, files, tracked = repos[root]
        rel_path = gitrepo.tracked_path(script, root, tracked)
        if not Path(settings.batch_script).is_absolute() and not (root / settings.batch_script).is_file():
            raise LauncherError(f"{exp.script}: batch script {settings.batch_script} not found at {root}")
        snapshot_dir = root / settings.snapshot_dirname / exp.name
        subs = build_submissions(exp, settings, str(snapshot_dir), rel_path, repo.short_meta)
        prepared.append(Prepared(exp, repo, files, rel_path, snapshot_dir, subs))
    return prepared


def _write_executable(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and make it executable."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, path)


def make_snapshots(prepared: Sequence[Prepared], settings: LaunchSettings, err: Emit,
                   progress: ProgressFactory | None = None) -> None:
    """Create (or reuse) every experiment's snapshot and write its continue.sh."""
    from nrl_launch.continuation import render_continue_script
    from nrl_launch.snapshot import SnapshotBatch

    batches: dict[Path, SnapshotBatch] = {}
    for p in prepared:
        if p.snapshot_dir.is_dir():
            err(f"Using existing code snapshot in {p.snapshot_dir}")
            for reason in _stale_reasons(p):
                err(f"[WARNING]: reusing {p.snapshot_dir}: {reason}")
        else:
            err(f"Creating new code snapshot in {p.snapshot_dir}")
            root = p.repo.root
            if root not in batches:  # one batch (one first copy) per repository
                batches[root] = SnapshotBatch(root, p.tracked_files, mode=settings.snapshot_mode)
            batches[root].ensure(p.snapshot_dir, manifest=_manifest(p),
                                 progress=progress(p.snapshot_dir) if progress else None)
        script = render_continue_script(p.submissions[-1], script=p.rel_path, version=__version__)
        try:
            _write_executable(p.snapshot_dir / "continue.sh", script)
        except OSError as e:
            raise LauncherError(f"cannot write {p.snapshot_dir / 'continue.sh'}: {e}") from e


def _stale_reasons(p: Prepared) -> list[str]:
    """Why a reused snapshot may not hold the code the user has now."""
    from nrl_launch import manifest

    try:
        recorded = manifest.read_manifest(p.snapshot_dir)
    except SnapshotError as e:
        # e.g. a snapshot made by the bash launcher, which wrote no manifest
        return [f"its commit is unknown ({e})"]
    return manifest.stale_reasons(recorded, p.repo)


def _manifest(p: Prepared) -> dict:
    from nrl_launch import manifest

    config = p.experiment.config
    return manifest.build_manifest(p.repo, config_values=config.values, gpu_hours=config.gpu_hours,
                                   experiment=p.experiment.name, script=p.rel_path)


def preflight(prepared: Sequence[Prepared], environ: Mapping[str, str], runner: Callable) -> None:
    """``sbatch --test-only`` for every experiment before anything is queued."""
    from nrl_launch import slurm

    for p in prepared:
        sub = p.submissions[0]
        try:
            slurm.sbatch_test_only(sub.argv, cwd=sub.cwd, env={**environ, **dict(sub.env)}, runner=runner)
        except SlurmError as e:
            raise LauncherError(f"{p.experiment.script}: Slurm would reject experiment {p.experiment.name}: {e}. Nothing was submitted.") from e


def _submitted_summary(jobs: Mapping[str, list[str]]) -> str:
    done = [f"{name}: {', '.join(ids)}" for name, ids in jobs.items() if ids]
    if not done:
        return "Nothing was submitted."
    all_ids = " ".join(i for ids in jobs.values() for i in ids)
    return f"Already submitted (still queued; cancel with 'scancel {all_ids}'): " + "; ".join(done)


def submit_all(prepared: Sequence[Prepared], settings: LaunchSettings, environ: Mapping[str, str],
               out: Emit, err: Emit, runner: Callable) -> dict[str, list[str]]:
    """Print each experiment's lines and submit its runs (or skip, DRYRUN=2)."""
    from nrl_launch import manifest, slurm

    jobs: dict[str, list[str]] = {}
    for p in prepared:
        exp = p.experiment
        out(info_line(exp))
        jobs[exp.name] = []
        for sub in p.submissions:
            out(f"Submitting {sub.run_label} job with {sub.num_nodes} nodes for {os.path.basename(exp.script)}")
            if settings.dryrun == 2:
                out(f"[DRY_RUN]: Skipping submission of {exp.script}. Find the snapshot at {p.snapshot_dir} and manually launch with 'bash continue.sh'")
                continue
            try:
                answer = slurm.sbatch(sub.argv, cwd=sub.cwd, env={**environ, **dict(sub.env)}, runner=runner)
            except SlurmError as e:
                raise LauncherError(f"{exp.script}: run {sub.run_label} of {exp.name}: {e}. {_submitted_summary(jobs)}") from e
            out(answer.stdout)
            jobs[exp.name].append(answer.job_id)
            try:
                manifest.append_run(p.snapshot_dir, answer.job_id, sub.run_label, via="launcher")
            except (SnapshotError, OSError) as e:
                # The job is queued already: losing its manifest entry is not
                # worth stopping the launch half-way.
                err(f"[WARNING]: could not record job {answer.job_id} in the manifest: {e}")
    return jobs


def watch_jobs(prepared: Sequence[Prepared], jobs: Mapping[str, list[str]], settings: LaunchSettings,
               err: Emit, runner: Callable, wait: Callable[[float], None]) -> list[Verdict]:
    """Follow the submitted jobs until they leave the queue, then judge them."""
    from nrl_launch import slurm, watch

    ids = [i for name in jobs for i in jobs[name]]
    watch.follow(ids, interval=settings.watch_interval, report=err, wait=wait,
                 queued=lambda remaining: slurm.queued_job_ids(remaining, runner=runner),
                 resume_hint=f"nrl-launch watch {' '.join(jobs)}")
    return [watch.judge(p.experiment.name, watch.driver_logs(p.snapshot_dir.parent, jobs[p.experiment.name]))
            for p in prepared]


def launch(scripts: Sequence[str], settings: LaunchSettings, environ: Mapping[str, str], *,
           out: Emit, err: Emit, runner: Callable | None = None,
           wait: Callable[[float], None] | None = None,
           progress: ProgressFactory | None = None) -> LaunchResult:
    """Run one launch as spec sections 2-8 describe; raise LauncherError on any problem.

    ``runner`` runs the Slurm client commands (default ``subprocess.run``).
    """
    experiments = plan_experiments(scripts, environ)
    _warn_defaults(experiments, err)
    if settings.dryrun == 1:
        return dry_run(experiments, out)
    import subprocess

    from nrl_launch import slurm, watch

    runner = runner or subprocess.run
    prepared = prepare(experiments, settings)
    make_snapshots(prepared, settings, err, progress)
    if settings.dryrun == 0:
        preflight(prepared, environ, runner)
    elif slurm.controller_reachable(environ, runner=runner):
        preflight(prepared, environ, runner)  # DRYRUN=2: check what we would submit
    else:
        err("[INFO]: DRYRUN=2 and no Slurm controller reachable: pre-flight (sbatch --test-only) skipped")
    jobs = submit_all(prepared, settings, environ, out, err, runner)
    result = LaunchResult(total_gpu_hours(experiments), jobs)
    if settings.watch and settings.dryrun == 0:
        result.verdicts = watch_jobs(prepared, jobs, settings, err, runner, wait or watch.wait_or_enter)
        for verdict in result.verdicts:
            out(verdict.render())
    out(total_line(result.total_gpu_hours))
    return result
