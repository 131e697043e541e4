"""The click layer: parse options, call one library function, print its result.

Our own errors become ``[ERROR]: …`` on stderr at one boundary
(:func:`reports_errors`): each ``LauncherError`` carries its exit code
(``UsageProblem`` 2, as click's usage errors; Ctrl-C 130; the rest 1).
"""

from __future__ import annotations

import errno
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any

import click

from nrl_launch import __version__
from nrl_launch.errors import LauncherError, UsageProblem
from nrl_launch.options import options, project_root_option, raw_settings

if TYPE_CHECKING:  # imported where used: the DRYRUN=1 path needs neither pathlib nor these
    from pathlib import Path

    from nrl_launch.experiment.folder import SnapshotRoot
    from nrl_launch.slurm.client import Runner, SlurmClient


@dataclass(frozen=True)
class CliContext:
    """What the commands take from their caller besides options: the runner
    of Slurm commands (tests hand in a fake with ``CliRunner.invoke(obj=…)``)."""

    slurm_runner: Runner | None = None  # None: subprocess.run (slurm.run_command)


def slurm_client() -> SlurmClient:
    """The Slurm client of the running command, made from its environment."""
    from nrl_launch.slurm.client import SlurmClient, run_command

    ctx = click.get_current_context()
    chosen = ctx.obj.slurm_runner if isinstance(ctx.obj, CliContext) and ctx.obj.slurm_runner else run_command
    return SlurmClient(os.environ, chosen)


def reports_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Map our exception hierarchy to click's: usage problems exit 2, the rest their own code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageProblem as e:
            raise click.UsageError(str(e), click.get_current_context(silent=True)) from e
        except LauncherError as e:
            raise LaunchFailure(e) from e

    return wrapper


class LaunchFailure(click.ClickException):
    """A :class:`LauncherError` as click carries it to :meth:`LauncherGroup.main`, with the
    exit status the error asks for (click keeps ``exit_code`` on the class, so it goes here)."""

    def __init__(self, error: LauncherError) -> None:
        super().__init__(str(error))
        self.status = error.exit_code


def _show(error: click.ClickException) -> None:
    """Every error, ours or click's own, in the launcher's ``[ERROR]:`` format."""
    if type(error).__name__ == "NoArgsIsHelpError":  # bare `nrl-launch`: just the help
        click.echo(error.format_message(), err=True)
        return
    hint = ""
    if isinstance(error, click.UsageError) and error.ctx is not None:
        hint = f" (see '{error.ctx.command_path} --help')"
    click.echo(f"[ERROR]: {error.format_message()}{hint}", err=True)


def _is_script(arg: str) -> bool:
    """Whether a first argument that is no command names a script (or a suite file) to launch."""
    return os.path.exists(arg) or "/" in arg or arg.endswith((".sh", ".txt"))


class LauncherGroup(click.Group):
    """``launch`` is the default command (``nrl-launch x.sh`` and ``python -m
    nrl_launch x.sh`` launch, as spec section 1 says), a mistyped command is
    not taken for a script, and errors click reports itself (a missing
    argument, an unknown option) use the ``[ERROR]:`` format."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first is not None and first not in self.commands and first not in ("-h", "--help", "--version"):
            if not first.startswith("-") and not _is_script(first):
                import difflib  # only for a mistyped command

                close = difflib.get_close_matches(first, list(self.commands), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else \
                    f"; commands: {', '.join(sorted(self.commands))}, or a script path to launch"
                raise click.UsageError(f"unknown command '{first}'{hint}", ctx)
            args = ["launch", *args]
        return super().parse_args(ctx, args)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        # click types main() with overloads on a literal standalone_mode; forwarding
        # *args cannot match them, hence the two ignores below.
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.ClickException as e:
            _show(e)
            sys.exit(e.status if isinstance(e, LaunchFailure) else e.exit_code)
        except click.Abort:
            click.echo("[ERROR]: aborted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(1)  # whoever read our output stopped reading (e.g. `| head`)
        except OSError as e:  # e.g. stdout on a full disk: one line, not a traceback
            click.echo(f"[ERROR]: {e}", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _echo(line: str) -> None:
    # The contract's lines are plain text: print() costs a fraction of click.echo,
    # which counts when DRYRUN=1 prints two lines per recipe of a whole suite.
    if sys.stdout is None:  # the shell closed it (>&-): print() would drop the line without a word
        _lose_stdout(OSError(errno.EBADF, "stdout is closed"))
    try:
        print(line, flush=True)
    except OSError as e:
        _lose_stdout(e)


_STDOUT_LOST: list[str] = []  # why stdout could not be written (at most one reason)


def _lose_stdout(error: OSError) -> None:
    """stdout is gone (its reader closed the pipe, the disk is full): the launch goes on to
    its end, so that nothing is left half-submitted, with the rest of its output sent nowhere;
    said once on stderr, and the launch exits 1 (its output is incomplete)."""
    if not _STDOUT_LOST:
        _STDOUT_LOST.append(error.strerror or str(error))
        click.echo(f"[WARNING]: cannot write to stdout ({_STDOUT_LOST[0]}): the launch goes on, "
                   "its output is lost", err=True)
    try:
        fd = sys.stdout.fileno() if sys.stdout is not None else None
    except (OSError, ValueError):  # a stream without a file descriptor (io.UnsupportedOperation)
        fd = None
    if fd is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stands for stdout until the process ends)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)  # the unwritten buffer is flushed there too, not again into the broken stream
    os.close(devnull)


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


class SnapshotProgress:
    """A click progress bar on stderr for one snapshot copy.

    Shown only on a terminal, and only once the copy has taken longer than
    ``delay`` seconds: a fast copy (or a link batch) prints nothing extra.
    """

    def __init__(self, label: str, delay: float = 1.0) -> None:
        self.label = label
        self.started = time.monotonic()
        self.delay = delay
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < self.delay or done >= total:
                return
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.render_progress()
        self.bar.update(done - self.shown)
        self.shown = done
        if done >= total:
            self.bar.render_finish()


def _snapshot_progress(dest: Path) -> Callable[[int, int], None] | None:
    return SnapshotProgress(f"snapshot {dest.name}") if sys.stderr.isatty() else None


@click.group(cls=LauncherGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nrl-launch")
def main() -> None:
    """Launch RL recipe test suites on Slurm as snapshotted, chained jobs."""
    # A non-UTF-8 byte of an argument or an environment variable is held by
    # Python as a surrogate escape; a strict UTF-8 stdout would refuse it with
    # a traceback. Written back as the byte it was, a path prints as given.
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="surrogateescape")


@main.command(context_settings={"max_content_width": 100})
@click.argument("scripts", nargs=-1, required=True, metavar="SCRIPT...")
@options()
@reports_errors
def launch(scripts: tuple[str, ...], **values: Any) -> None:
    """Plan, snapshot and submit each recipe SCRIPT (NUM_RUNS chained jobs each).

    A SCRIPT ending in .txt is a suite file: every script it lists is launched.
    """
    from nrl_launch.launch import launch as run_launch
    from nrl_launch.settings import DryRun, make_settings

    settings = make_settings(raw_settings(values), launch_stamp=time.strftime("%y%m%d-%H%M%S"))
    slurm = None if settings.dryrun is DryRun.GPU_HOURS else slurm_client()  # DRYRUN=1 never asks Slurm
    result = run_launch(scripts, settings, environ=dict(os.environ), slurm=slurm, out=_echo,
                        err=_echo_err, progress=_snapshot_progress, interactive=sys.stdin.isatty())
    if _STDOUT_LOST:
        hint = "" if settings.dryrun is DryRun.GPU_HOURS else "; see what it did with: nrl-launch status"
        raise click.ClickException(f"the launch finished but its output could not be written to stdout "
                                   f"({_STDOUT_LOST[0]}){hint}")
    if result.failed:
        click.get_current_context().exit(1)  # verdicts are printed; exit code says it


def _git_root_or_cwd(*, outermost: bool = False) -> Path:
    """The git root of the current directory; the current directory outside git.

    ``outermost``: inside a submodule, the top superproject's root, where the
    launcher puts the snapshots of every recipe of the tree (lint keeps the
    innermost: a submodule may be a recipe repository of its own).
    """
    from pathlib import Path

    from nrl_launch.errors import GitError
    from nrl_launch.experiment.gitrepo import project_root, work_tree_root

    try:
        return project_root(Path.cwd()) if outermost else work_tree_root(Path.cwd())
    except GitError:
        return Path.cwd()


def _project_root(project_root: str | None) -> Path:
    from pathlib import Path

    return Path(project_root).resolve() if project_root is not None else _git_root_or_cwd(outermost=True)


def _snapshot_root(project_root: str | None, dirname: str | None) -> SnapshotRoot:
    from nrl_launch.experiment.folder import SnapshotRoot
    from nrl_launch.settings import parse_snapshot_dirname

    return SnapshotRoot(_project_root(project_root), parse_snapshot_dirname(dirname))


@main.command(context_settings={"max_content_width": 100})
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Repository to check. Default: the git root of the current directory (the current directory "
                   "outside git).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True,
              help="text: one line per finding; json: one document; github: GitHub Actions annotations.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too (by default only errors fail).")
@click.option("--budget", "budgets", multiple=True, metavar="SUITE=HOURS",
              help="GPU-hour budget of suite SUITE (e.g. nightly=500); overrides pyproject.toml. Repeatable.")
@click.option("--exec-dryrun", is_flag=True,
              help="Also run every launched recipe with TEST_DRYRUN=1 (executes the scripts) and report failures.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Dry runs at a time (default: CPU count).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a dry run may take (default 60).")
@reports_errors
def lint(root: str | None, fmt: str, strict: bool, budgets: tuple[str, ...], exec_dryrun: bool, jobs: int | None,
         timeout: float | None) -> None:
    """Check recipes, suites, YAML mirrors, CONFIG blocks and budgets (docs/lint.md).

    Prints the findings and a last line 'N errors, M warnings in K files'
    (on stderr with --format json). Exit 1 on errors (--strict: on warnings
    too), 2 when the configuration or an option is wrong.
    """
    from pathlib import Path

    from nrl_launch import lint as linter

    if not exec_dryrun and (jobs is not None or timeout is not None):
        raise UsageProblem("--jobs and --timeout only apply with --exec-dryrun")
    overrides: dict[str, int] = {}
    for text in budgets:
        suite, hours = linter.parse_budget(text)
        if suite in overrides:
            raise UsageProblem(f"--budget given twice for suite {suite!r}")
        overrides[suite] = hours
    dryrun = None
    if exec_dryrun:
        defaults = linter.DryrunOptions()
        dryrun = linter.DryrunOptions(jobs=jobs or defaults.jobs, timeout=timeout or defaults.timeout)
    report = linter.run_lint(Path(root) if root is not None else _git_root_or_cwd(), budgets=overrides,
                             dryrun=dryrun)
    body = linter.render(report, fmt)
    if body:
        click.echo(body)
    click.echo(linter.summary(report), err=fmt == "json")  # stdout stays one JSON document
    if report.failed(strict):
        click.get_current_context().exit(1)


@main.command()
@click.argument("experiments", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--wide", is_flag=True, help="Do not shorten columns to fit 120 characters.")
@project_root_option
@reports_errors
def status(experiments: tuple[str, ...], fmt: str, wide: bool, project_root: str | None,
           code_snapshot_dirname: str | None) -> None:
    """One row per snapshot: commit, runs, job states, steps reached, last verdict.

    Exit 1 when a named experiment has no snapshot or Slurm cannot be asked.
    """
    from nrl_launch.follow import status as report

    found = report.collect(_snapshot_root(project_root, code_snapshot_dirname), experiments or None, slurm_client())
    click.echo(report.format_json(found) if fmt == "json" else report.format_table(found, wide=wide))
    click.echo(report.summary(found), err=fmt == "json")  # stdout stays one JSON document
    problem = report.problem(found)
    if problem:
        raise LauncherError(problem)


WATCH_VARIABLES = ("WATCH_INTERVAL", "WATCH_GIVE_UP", "STOP_CHAIN_ON_FAILURE", "MAX_RETRIES")


@main.command()
@click.argument("experiments", nargs=-1, required=True)
@options(*WATCH_VARIABLES)
@project_root_option
@reports_errors
def watch(experiments: tuple[str, ...], project_root: str | None, code_snapshot_dirname: str | None,
          **values: Any) -> None:
    """Follow the recorded jobs of EXPERIMENTS until they end, then print verdicts.

    With --max-retries, a run lost to a node failure or preemption is submitted
    again as the snapshot's continue.sh would (retries recorded earlier count).
    """
    from nrl_launch.follow.watch import watch_recorded
    from nrl_launch.settings import make_watch_settings

    settings = make_watch_settings(raw_settings(values, WATCH_VARIABLES))
    verdicts = watch_recorded(_snapshot_root(project_root, code_snapshot_dirname), experiments, settings,
                              slurm_client(), out=_echo, err=_echo_err, interactive=sys.stdin.isatty())
    if any(v.failed for v in verdicts):
        click.get_current_context().exit(1)


@main.command()
@click.argument("experiments", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Say what would be cancelled; cancel and record nothing.")
@project_root_option
@reports_errors
def cancel(experiments: tuple[str, ...], dry_run: bool, project_root: str | None,
           code_snapshot_dirname: str | None) -> None:
    """scancel every queued or running job recorded for EXPERIMENTS (one scancel call).

    The cancellation is recorded in each experiment's manifest; 'nrl-launch
    status' shows it, and continue.sh still adds a run afterwards. Cancelling
    again finds nothing left to cancel.
    """
    from nrl_launch.follow import cancel as cancelling

    slurm = slurm_client()
    cancelling.run_cancel(_snapshot_root(project_root, code_snapshot_dirname), experiments, slurm, dry=dry_run,
                          out=click.echo, err=_echo_err)


def _write_stdout(data: bytes) -> None:
    # bytes as the log holds them (click writes bytes to the binary stream, flushed)
    click.echo(data, nl=False)


@main.command()
@click.argument("experiment")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the log grows, moving on to the next run's "
              "log, until no job of the experiment is left in the queue.")
@click.option("--job", "job_id", default=None, metavar="ID", help="This job's log instead of the current run's.")
@click.option("--interval", type=click.FloatRange(min=0.05, max=3600), default=2.0, show_default=True,
              help="Seconds between looks at the log while following.")
@project_root_option
@reports_errors
def logs(experiment: str, follow: bool, job_id: str | None, interval: float, project_root: str | None,
         code_snapshot_dirname: str | None) -> None:
    """Print the current run's ray-driver.log of EXPERIMENT (its Slurm --output file before
    the driver log exists). Reads files only: works from a login node.
    """
    from nrl_launch.follow import logs as follow_logs

    snapshots = _snapshot_root(project_root, code_snapshot_dirname)
    if follow:
        follow_logs.follow(snapshots, experiment, job_id, slurm_client(), write=_write_stdout, err=_echo_err,
                           interval=interval)
    else:
        follow_logs.show(snapshots, experiment, job_id, write=_write_stdout, err=_echo_err)


@main.command()
@click.argument("experiment")
@options("SNAPSHOT_MODE")
@project_root_option
@reports_errors
def snapshot(experiment: str, snapshot_mode: str | None, project_root: str | None,
             code_snapshot_dirname: str | None) -> None:
    """Create (or reuse) the code snapshot of EXPERIMENT and print its absolute path.

    The snapshot is <project root>/<CODE_SNAPSHOT_DIRNAME>/EXPERIMENT, made
    exactly as a launch makes it; tools/code_snapshot.sh calls this.
    """
    from pathlib import Path

    from nrl_launch.pipeline import take_snapshot
    from nrl_launch.settings import parse_snapshot_dirname, parse_snapshot_mode

    folder = take_snapshot(Path(project_root or "."), experiment, dirname=parse_snapshot_dirname(code_snapshot_dirname),
                           mode=parse_snapshot_mode(snapshot_mode), err=_echo_err, progress=_snapshot_progress)
    click.echo(folder)


if __name__ == "__main__":  # pragma: no cover
    main()
