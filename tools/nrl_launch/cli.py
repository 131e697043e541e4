"""The click layer: parse options, call one library function, print its result.

Every command is a :class:`LauncherCommand`: it owns the command's
:class:`~nrl_launch.console.Console` (all output goes through it) and makes a
usage problem click's usage error of that command. Every error, ours or
click's, becomes ``[ERROR]: …`` and an exit status in one place,
:func:`_report` (``UsageProblem`` 2, as click's usage errors; Ctrl-C 130; the
rest the error's own ``exit_code``, 1 unless it says otherwise).
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from nrl_launch import __version__
from nrl_launch.console import Console
from nrl_launch.errors import LauncherError, UsageProblem
from nrl_launch.options import kept_slurm_timeout, options, project_root_option, raw_settings, slurm_timeout_option

if TYPE_CHECKING:  # imported where used: the DRYRUN=1 path needs neither pathlib nor these
    from pathlib import Path

    from nrl_launch.experiment.folder import SnapshotRoot
    from nrl_launch.slurm.client import Runner, SlurmClient


class CliContext:
    """What the commands take from their caller besides options: the runner
    of Slurm commands (tests hand in a fake: ``testkit.run_cli(…, slurm=fake)``).

    A plain class: it is built at every start, DRYRUN=1 too, and a frozen
    dataclass's generated methods cost that start almost 1 % of its
    instructions (``benchmarks/bench_dryrun.py --instructions``).
    """

    __slots__ = ("slurm_clock", "slurm_runner")

    def __init__(self, slurm_runner: Runner | None = None,
                 slurm_clock: tuple[Callable[[float], None], Callable[[], float]] | None = None) -> None:
        self.slurm_runner = slurm_runner  # None: subprocess.run (slurm.run_command)
        self.slurm_clock = slurm_clock  # (sleep, now) between tries; None: time.sleep, time.monotonic


def slurm_client() -> SlurmClient:
    """The Slurm client of the running command, made from its environment (and --slurm-timeout,
    --slurm-retry); it says on the command's stderr when Slurm is slow to answer or retried."""
    from nrl_launch.settings import SLURM_RETRY, SLURM_TIMEOUT
    from nrl_launch.slurm.client import SlurmClient, run_command

    ctx = click.get_current_context()
    given = ctx.obj if isinstance(ctx.obj, CliContext) else CliContext()
    sleep, now = given.slurm_clock or (time.sleep, time.monotonic)
    # None: the client reads NRL_SLURM_TIMEOUT / NRL_SLURM_RETRY from the environment itself
    timeout, retry = kept_slurm_timeout(ctx, SLURM_TIMEOUT), kept_slurm_timeout(ctx, SLURM_RETRY)
    return SlurmClient(os.environ, given.slurm_runner or run_command,
                       timeout=None if timeout is None else SLURM_TIMEOUT.read(timeout),
                       retry_for=None if retry is None else SLURM_RETRY.read(retry), notify=console().err,
                       sleep=sleep, now=now)


def console() -> Console:
    """The console of the running command (made by :class:`LauncherCommand`)."""
    made = click.get_current_context().meta[_CONSOLE]
    assert isinstance(made, Console)
    return made


_CONSOLE = "nrl_launch.console"  # the key of the command's Console in ctx.meta


class LauncherCommand(click.Command):
    """Every command of the launcher (the group's ``command_class``).

    ``keep_going``: the command changes things (submits, cancels, records), so
    a stdout that is gone must not stop it half-way (see :class:`Console`).
    """

    def __init__(self, *args: Any, keep_going: bool = False,
                 deferred_params: Callable[[Callable[..., None]], Callable[..., None]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_going = keep_going
        # ``deferred_params``: click's argument and option decorators of the command, applied at its
        # first use: options made at import cost every start, DRYRUN=1 too (bench_dryrun.py --instructions)
        self.deferred_params = deferred_params

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if self.deferred_params is not None:
            self.params = click.command()(self.deferred_params(lambda **_: None)).params
            self.deferred_params = None
        return super().get_params(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        made = ctx.meta[_CONSOLE] = Console(self.name or "command", keep_going=self.keep_going)
        try:
            result = super().invoke(ctx)
        except UsageProblem as e:  # click's own kind of error, of this command: exit 2 and a --help hint
            raise click.UsageError(str(e), ctx) from e
        except click.exceptions.Exit:  # the command's own exit status (failed verdicts): a lost stdout fails it too
            made.check()
            raise
        made.check()
        return result


def _report(error: Exception) -> int:
    """The one place an error becomes its ``[ERROR]: …`` line on stderr and the exit status."""
    if isinstance(error, LauncherError):
        message, code = str(error), error.exit_code
    elif isinstance(error, click.Abort):  # Ctrl-C, as a shell reports SIGINT
        message, code = "aborted", 130
    elif isinstance(error, click.ClickException):
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `nrl-launch`: just the help
            click.echo(error.format_message(), err=True)
            return error.exit_code
        hint = ""
        if isinstance(error, click.UsageError) and error.ctx is not None:
            hint = f" (see '{error.ctx.command_path} --help')"
        message, code = error.format_message() + hint, error.exit_code
    else:  # an OSError, e.g. stdout on a full disk: one line, not a traceback
        message, code = str(error), 1
    click.echo(f"[ERROR]: {message}", err=True)
    return code


def _is_script(arg: str) -> bool:
    """Whether a first argument that is no command names a script (or a suite file) to launch."""
    return os.path.exists(arg) or "/" in arg or arg.endswith((".sh", ".txt"))


class LauncherGroup(click.Group):
    """``launch`` is the default command (``nrl-launch x.sh`` and ``python -m
    nrl_launch x.sh`` launch, as spec section 1 says), a mistyped command is
    not taken for a script, and every error is reported by :func:`_report`."""

    command_class = LauncherCommand

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
        # *args cannot match them, hence the ignore below.
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        sys.exit(self.run(*args, **kwargs))

    def run(self, *args: Any, **kwargs: Any) -> int:
        """Run one command line to its end: the exit status, every error reported on stderr."""
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except SystemExit as e:  # click's own end of a broken stdout pipe
            return e.code if isinstance(e.code, int) else 1
        except (LauncherError, click.ClickException, click.Abort, OSError) as e:
            return _report(e)
        return code if isinstance(code, int) else 0


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


@main.command(context_settings={"max_content_width": 100}, keep_going=True)
@click.argument("scripts", nargs=-1, required=True, metavar="SCRIPT...")
@options()
@slurm_timeout_option
def launch(scripts: tuple[str, ...], **values: Any) -> None:
    """Plan, snapshot and submit each recipe SCRIPT (NUM_RUNS chained jobs each).

    A SCRIPT ending in .txt is a suite file: every script it lists is launched.
    """
    from nrl_launch.launch import launch as run_launch
    from nrl_launch.settings import DryRun, make_settings

    settings = make_settings(raw_settings(values), launch_stamp=time.strftime("%y%m%d-%H%M%S"))
    slurm = None if settings.dryrun is DryRun.GPU_HOURS else slurm_client()  # DRYRUN=1 never asks Slurm
    shown = console()
    if slurm is not None:
        shown.hint = "; see what it did with: nrl-launch status"  # should stdout be lost
    result = run_launch(scripts, settings, environ=dict(os.environ), slurm=slurm, out=shown.out,
                        err=shown.err, progress=_snapshot_progress, interactive=sys.stdin.isatty())
    if result.failed:
        click.get_current_context().exit(1)  # verdicts are printed; exit code says it


def _snapshot_root(project_root: str | None, dirname: str | None) -> SnapshotRoot:
    from nrl_launch.follow.where import snapshot_root

    return snapshot_root(project_root, dirname)


@main.command(context_settings={"max_content_width": 100})
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Repository to check. Default: the nearest folder up from here whose pyproject.toml has "
                   "[tool.nrl-launch.lint], else the git root (the current directory outside git).")
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
    report = linter.run_lint(Path(root) if root is not None else linter.lint_root(Path.cwd()), budgets=overrides,
                             dryrun=dryrun)
    body = linter.render(report, fmt)
    shown = console()
    if body:
        shown.out(body)
    (shown.err if fmt == "json" else shown.out)(linter.summary(report))  # stdout stays one JSON document
    if report.failed(strict):
        click.get_current_context().exit(1)


@main.command()
@click.argument("experiments", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--wide", is_flag=True, help="Full cells, each job's id and state: no column shortened to fit the "
              "terminal (COLUMNS, else 120 characters).")
@project_root_option
@slurm_timeout_option
def status(experiments: tuple[str, ...], fmt: str, wide: bool, project_root: str | None,
           code_snapshot_dirname: str | None) -> None:
    """One row per snapshot: commit, runs, job states, steps reached, WATCH's verdict.

    Exit 1 when a named experiment has no snapshot or there is no snapshot at all, 128 when
    Slurm cannot be asked (no verdict can be given then).
    """
    from nrl_launch.errors import SlurmUnreachable
    from nrl_launch.follow import status as report

    snapshots = _snapshot_root(project_root, code_snapshot_dirname)
    slurm = slurm_client()  # its options checked first
    if not experiments and not snapshots.path.is_dir():
        raise LauncherError(f"no snapshots in {snapshots.path}: nothing was launched from this repository with "
                            f"CODE_SNAPSHOT_DIRNAME={snapshots.dirname}")
    found = report.collect(snapshots, experiments or None, slurm)
    shown = console()
    shown.out(report.format_json(found) if fmt == "json" else
              report.format_table(found, wide=wide, width=report.terminal_width()))
    (shown.err if fmt == "json" else shown.out)(report.summary(found))  # stdout stays one JSON document
    problem = report.problem(found)
    if problem:
        raise (SlurmUnreachable if found.slurm_error else LauncherError)(problem)


WATCH_VARIABLES = ("WATCH_INTERVAL", "WATCH_GIVE_UP", "STOP_CHAIN_ON_FAILURE", "MAX_RETRIES")


@main.command(keep_going=True)
@click.argument("experiments", nargs=-1, required=True)
@options(*WATCH_VARIABLES)
@project_root_option
@slurm_timeout_option
def watch(experiments: tuple[str, ...], project_root: str | None, code_snapshot_dirname: str | None,
          **values: Any) -> None:
    """Follow the recorded jobs of EXPERIMENTS until they end, then print verdicts.

    With --max-retries, a run lost to a node failure or preemption is submitted
    again as the snapshot's continue.sh would (retries recorded earlier count).
    """
    from nrl_launch.follow.watch import watch_recorded
    from nrl_launch.report.record import recorder_for
    from nrl_launch.settings import make_watch_settings

    settings = make_watch_settings(raw_settings(values, WATCH_VARIABLES))
    shown = console()
    snapshots, slurm = _snapshot_root(project_root, code_snapshot_dirname), slurm_client()
    verdicts = watch_recorded(snapshots, experiments, settings, slurm, out=shown.out, err=shown.err,
                              interactive=sys.stdin.isatty(), recorder=recorder_for(snapshots.experiment, slurm,
                                                                                    shown.err))
    if any(v.failed for v in verdicts):
        click.get_current_context().exit(1)


def _report_params(func: Callable[..., None]) -> Callable[..., None]:
    """The report command's argument and options (made at its first use: ``deferred_params``)."""
    for option in reversed((
        click.argument("targets", nargs=-1, metavar="[EXPERIMENT...|SUITE.txt]"),
        click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
                     help="File to write (default: <snapshot root>/nrl-report.html, or .json)."),
        click.option("--format", "fmt", type=click.Choice(["html", "json"]), default="html", show_default=True,
                     help="html: one self-contained page; json: the same data for other tools."),
        click.option("--compare", "compare_with", default=None, metavar="OTHER",
                     help="Another report's JSON, or another snapshot root (e.g. last night's "
                          "CODE_SNAPSHOT_DIRNAME): verdict changes and metric deltas."),
        click.option("--since", default=None, metavar="AGE", help="Add each recipe's nights from the history "
                     "database launched within AGE (7d, 36h, 2w)."),
        click.option("--db", default=None, metavar="FILE", help="The history database (default: NRL_REPORT_DB, "
                     "else $XDG_STATE_HOME/nrl-launch/history.sqlite3)."),
        project_root_option, slurm_timeout_option)):
        func = option(func)
    return func


@main.command(keep_going=True, deferred_params=_report_params)
def report(targets: tuple[str, ...], output: str | None, fmt: str, compare_with: str | None, since: str | None,
           db: str | None, project_root: str | None, code_snapshot_dirname: str | None) -> None:
    """Write one page (or JSON) of EXPERIMENTS or a suite's: verdicts and why, GPU-hours, a timeline,
    metric curves; print its path. Judged experiments are recorded in the history database.
    """
    from nrl_launch.report.command import run_report

    path = run_report(_snapshot_root(project_root, code_snapshot_dirname), targets, slurm_client(), output=output,
                      fmt=fmt, compare_with=compare_with, since=since, db=db, err=console().err)
    console().out(str(path))


@main.command(keep_going=True)
@click.argument("experiments", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Say what would be cancelled; cancel and record nothing.")
@project_root_option
@slurm_timeout_option
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
                          out=console().out, err=console().err)


@main.command()
@click.argument("experiment")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the log grows, moving on to the next run's "
              "log, until no job of the experiment is left in the queue.")
@click.option("--job", "job_id", default=None, metavar="ID", help="This job's log instead of the current run's.")
@click.option("--interval", type=click.FloatRange(min=0.05, max=3600), default=2.0, show_default=True,
              help="Seconds between looks at the log while following.")
@options("WATCH_GIVE_UP")
@project_root_option
@slurm_timeout_option
def logs(experiment: str, follow: bool, job_id: str | None, interval: float, project_root: str | None,
         code_snapshot_dirname: str | None, **values: Any) -> None:
    """Print the current run's ray-driver.log of EXPERIMENT (its Slurm --output file before
    the driver log exists). Reads files only: works from a login node.

    With --follow, Slurm is asked which jobs are still queued; when it does not answer for
    --watch-give-up seconds, following gives up as a watch does (exit 128).
    """
    from nrl_launch.follow import logs as follow_logs
    from nrl_launch.settings import WATCH_GIVE_UP

    give_up = WATCH_GIVE_UP.of(raw_settings(values, ["WATCH_GIVE_UP"]))
    snapshots = _snapshot_root(project_root, code_snapshot_dirname)
    shown = console()
    if follow:
        follow_logs.follow(snapshots, experiment, job_id, slurm_client(), write=shown.write, err=shown.err,
                           interval=interval, give_up=give_up)
    else:
        follow_logs.show(snapshots, experiment, job_id, write=shown.write, err=shown.err)


@main.command()
@click.argument("experiment")
@click.option("--writable", is_flag=True, help="Give the snapshot files of its own that you can edit (a hot-fix "
              "before its continue.sh): files it shares with other snapshots through hard links are replaced by "
              "private copies, read-only ones get their owner's write bit.")
@options("SNAPSHOT_MODE")
@project_root_option
def snapshot(experiment: str, writable: bool, snapshot_mode: str | None, project_root: str | None,
             code_snapshot_dirname: str | None) -> None:
    """Create (or reuse) the code snapshot of EXPERIMENT and print its absolute path.

    The snapshot is <project root>/<CODE_SNAPSHOT_DIRNAME>/EXPERIMENT, made
    exactly as a launch makes it; tools/code_snapshot.sh calls this.
    """
    from pathlib import Path

    from nrl_launch.experiment.snapshot import writable_snapshot
    from nrl_launch.pipeline import take_snapshot
    from nrl_launch.settings import parse_snapshot_dirname, parse_snapshot_mode

    shown = console()
    folder = take_snapshot(Path(project_root or "."), experiment, dirname=parse_snapshot_dirname(code_snapshot_dirname),
                           mode=parse_snapshot_mode(snapshot_mode), err=shown.err, progress=_snapshot_progress)
    if writable:
        writable_snapshot(folder, err=shown.err)
    shown.out(str(folder))


if __name__ == "__main__":  # pragma: no cover
    main()
