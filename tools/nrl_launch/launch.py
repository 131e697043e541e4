"""The launch itself: plan everything, then snapshot, pre-flight and submit.

Order matters for the contract: every script is read and every git check
made before the first snapshot; every snapshot made and every submission
pre-flighted before the first real ``sbatch``. Output goes through the
``out`` (stdout lines) and ``err`` (stderr lines) callbacks: this module
never prints by itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nrl_launch import __version__
from nrl_launch.errors import GitError, LauncherError, SlurmError, SnapshotError
from nrl_launch.plan import Experiment, Submission, build_submissions, plan_experiments, total_gpu_hours
from nrl_launch.settings import LaunchSettings

if TYPE_CHECKING:  # pathlib costs milliseconds the DRYRUN=1 path does not need
    from pathlib import Path

    from nrl_launch.watch import Verdict

Emit = Callable[[str], None]
Runner = Callable[..., object]  # subprocess.run or a test's stand-in (see slurm.py)
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
        try:
            root = gitrepo.work_tree_root(script.parent)
            if root not in repos:
                files = tuple(gitrepo.list_tracked_files(root))
                repos[root] = (gitrepo.find_repo(root), files, frozenset(files))
            repo, files, tracked = repos[root]
            rel_path = gitrepo.tracked_path(script, root, tracked)
        except GitError as e:
            raise GitError(f"{exp.script}: {e}") from e
        snapshot_dir = root / settings.snapshot_dirname / exp.name
        _check_batch_script(exp, settings.batch_script, tracked, snapshot_dir)
        subs = build_submissions(exp, settings, str(snapshot_dir), rel_path, repo.short_meta)
        prepared.append(Prepared(exp, repo, files, rel_path, snapshot_dir, subs))
    return prepared


def _check_batch_script(exp: Experiment, batch_script: str, tracked: frozenset[str], snapshot_dir: Path) -> None:
    """The batch script must be in the snapshot the jobs will run from."""
    from pathlib import Path

    if Path(batch_script).is_absolute():
        return  # outside the snapshot by the user's choice
    if snapshot_dir.is_dir() and any(snapshot_dir.iterdir()):
        if not (snapshot_dir / batch_script).is_file():
            raise LauncherError(f"{exp.script}: the existing snapshot {snapshot_dir} "
                                f"has no batch script {batch_script}")
    elif Path(batch_script).as_posix() not in tracked:
        raise LauncherError(f"{exp.script}: batch script {batch_script} is not a tracked file of the repository "
                            "(the snapshot holds tracked files only)")


def _write_executable(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and make it executable."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def make_snapshots(prepared: Sequence[Prepared], settings: LaunchSettings, err: Emit,
                   progress: ProgressFactory | None = None) -> None:
    """Create (or reuse) every experiment's snapshot."""
    from nrl_launch.snapshot import SnapshotBatch, existing_snapshot

    batches: dict[Path, SnapshotBatch] = {}
    for p in prepared:
        if existing_snapshot(p.snapshot_dir) is not None:
            err(f"Using existing code snapshot in {p.snapshot_dir}")
            for reason in _stale_reasons(p):
                err(f"[WARNING]: reusing {p.snapshot_dir}: {reason}")
            continue
        err(f"Creating new code snapshot in {p.snapshot_dir}")
        root = p.repo.root
        if root not in batches:  # one batch (one first copy) per repository
            batches[root] = SnapshotBatch(root, p.tracked_files, mode=settings.snapshot_mode)
        batches[root].ensure(p.snapshot_dir, manifest=_manifest(p),
                             progress=progress(p.snapshot_dir) if progress else None)


def write_continue_scripts(prepared: Sequence[Prepared]) -> None:
    """Write each snapshot's continue.sh (after the pre-flight accepted the plan)."""
    from nrl_launch.continuation import render_continue_script

    for p in prepared:
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


def preflight(prepared: Sequence[Prepared], environ: Mapping[str, str], runner: Runner | None) -> None:
    """``sbatch --test-only`` for every experiment before anything is queued."""
    from nrl_launch import slurm

    for p in prepared:
        sub = p.submissions[0]
        try:
            slurm.sbatch_test_only(sub.argv, cwd=sub.cwd, env={**environ, **dict(sub.env)}, runner=runner)
        except SlurmError as e:
            raise LauncherError(f"{p.experiment.script}: Slurm would reject experiment {p.experiment.name}: {e}. "
                                "Nothing was submitted.") from e


def dryrun2_preflight(prepared: Sequence[Prepared], environ: Mapping[str, str], err: Emit,
                      runner: Runner | None) -> None:
    """DRYRUN=2 asks Slurm too when it can, but only warns: nothing is submitted."""
    from nrl_launch import slurm

    if not slurm.controller_reachable(environ, runner=runner):
        err("[INFO]: DRYRUN=2 and no Slurm controller reachable: pre-flight (sbatch --test-only) skipped")
        return
    try:
        preflight(prepared, environ, runner)
    except LauncherError as e:
        err(f"[WARNING]: pre-flight: {e}")


def _submitted_summary(jobs: Mapping[str, list[str]]) -> str:
    done = [f"{name}: {', '.join(ids)}" for name, ids in jobs.items() if ids]
    if not done:
        return "Nothing was submitted."
    all_ids = " ".join(i for ids in jobs.values() for i in ids)
    return f"Already submitted (still queued; cancel with 'scancel {all_ids}'): " + "; ".join(done)


def submit_all(prepared: Sequence[Prepared], settings: LaunchSettings, environ: Mapping[str, str],
               out: Emit, err: Emit, runner: Runner | None) -> dict[str, list[str]]:
    """Print each experiment's lines and submit its runs (or skip, DRYRUN=2).

    Stopped half-way (sbatch failing, Ctrl-C), it says which jobs are queued.
    """
    jobs: dict[str, list[str]] = {}
    try:
        for p in prepared:
            jobs[p.experiment.name] = []
            _submit_experiment(p, settings, environ, out, err, runner, jobs[p.experiment.name])
    except KeyboardInterrupt as e:
        raise LauncherError(f"interrupted while submitting. {_submitted_summary(jobs)}") from e
    except SlurmError as e:
        raise LauncherError(f"{e}. {_submitted_summary(jobs)}") from e
    return jobs


def _submit_experiment(p: Prepared, settings: LaunchSettings, environ: Mapping[str, str],
                       out: Emit, err: Emit, runner: Runner | None, job_ids: list[str]) -> None:
    from nrl_launch import manifest, slurm

    exp = p.experiment
    out(info_line(exp))
    for sub in p.submissions:
        out(f"Submitting {sub.run_label} job with {sub.num_nodes} nodes for {os.path.basename(exp.script)}")
        if settings.dryrun == 2:
            out(f"[DRY_RUN]: Skipping submission of {exp.script}. Find the snapshot at {p.snapshot_dir} "
                "and manually launch with 'bash continue.sh'")
            continue
        try:
            answer = slurm.sbatch(sub.argv, cwd=sub.cwd, env={**environ, **dict(sub.env)}, runner=runner)
        except SlurmError as e:
            raise SlurmError(f"{exp.script}: run {sub.run_label} of {exp.name}: {e}") from e
        out(answer.stdout)
        job_ids.append(answer.job_id)
        try:
            manifest.append_run(p.snapshot_dir, answer.job_id, sub.run_label, via="launcher")
        except (SnapshotError, OSError) as e:
            # The job is queued already: losing its manifest entry is not
            # worth stopping the launch half-way.
            err(f"[WARNING]: could not record job {answer.job_id} in the manifest: {e}")


def _resume_hint(prepared: Sequence[Prepared], settings: LaunchSettings) -> str:
    """The ``nrl-launch watch`` command(s) that pick up where this launch stops."""
    import shlex

    by_root: dict[str, list[str]] = {}
    for p in prepared:
        by_root.setdefault(str(p.repo.root), []).append(p.experiment.name)
    return "; ".join(
        f"nrl-launch watch --project-root {shlex.quote(root)} --code-snapshot-dirname "
        f"{shlex.quote(settings.snapshot_dirname)} " + " ".join(shlex.quote(n) for n in names)
        for root, names in by_root.items())


def watch_jobs(prepared: Sequence[Prepared], jobs: Mapping[str, list[str]], settings: LaunchSettings,
               err: Emit, runner: Runner | None, wait: Callable[[float], None]) -> list[Verdict]:
    """Follow the submitted jobs until they leave the queue, then judge them."""
    from nrl_launch import slurm, watch

    ids = [i for name in jobs for i in jobs[name]]
    watch.follow(ids, interval=settings.watch_interval, report=err, wait=wait,
                 queued=lambda remaining: slurm.queued_job_ids(remaining, runner=runner),
                 resume_hint=_resume_hint(prepared, settings))
    return [watch.judge(p.experiment.name, watch.driver_logs(p.snapshot_dir, jobs[p.experiment.name]))
            for p in prepared]


def _load_launch_dependencies() -> None:
    """Import what a launch needs beyond DRYRUN=1, as one clear error if broken."""
    try:
        import git  # noqa: F401  (GitPython; fails at import when git is not on PATH)
        import simple_slurm  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        raise LauncherError(f"cannot launch: {e}. Install git and the package's dependencies "
                            "(pip install -e <checkout>); DRYRUN=1 works without them") from e


def launch(scripts: Sequence[str], settings: LaunchSettings, environ: Mapping[str, str], *,
           out: Emit, err: Emit, runner: Runner | None = None,
           wait: Callable[[float], None] | None = None,
           progress: ProgressFactory | None = None) -> LaunchResult:
    """Run one launch as spec sections 2-8 describe; raise LauncherError on any problem.

    ``runner`` runs the Slurm client commands (default ``subprocess.run``).
    """
    experiments = plan_experiments(scripts, environ)
    _warn_defaults(experiments, err)
    if settings.dryrun == 1:
        return dry_run(experiments, out)
    _load_launch_dependencies()
    prepared = prepare(experiments, settings)
    make_snapshots(prepared, settings, err, progress)
    if settings.dryrun == 2:
        dryrun2_preflight(prepared, environ, err, runner)
    else:
        preflight(prepared, environ, runner)
    write_continue_scripts(prepared)
    jobs = submit_all(prepared, settings, environ, out, err, runner)
    result = LaunchResult(total_gpu_hours(experiments), jobs)
    if settings.watch and settings.dryrun == 0:
        from nrl_launch import watch

        result.verdicts = watch_jobs(prepared, jobs, settings, err, runner, wait or watch.wait_or_enter)
        for verdict in result.verdicts:
            out(verdict.render())
    out(total_line(result.total_gpu_hours))
    return result
