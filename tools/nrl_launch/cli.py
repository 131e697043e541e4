"""The click layer: parse options, call one library function, print its result.

Our own errors become ``[ERROR]: …`` on stderr: ``UsageProblem`` exits 2 (as
click's usage errors do), every other ``LauncherError`` exits 1.
"""

from __future__ import annotations

import os
import time
from functools import wraps
from pathlib import Path
from typing import Any, Callable, IO

import click

from nrl_launch import __version__
from nrl_launch.errors import LauncherError, UsageProblem


class LauncherClickError(click.ClickException):
    """A launch problem (exit 1), shown in the launcher's ``[ERROR]:`` format."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"[ERROR]: {self.format_message()}", err=True)


class LauncherUsageError(click.UsageError):
    """An invalid invocation (exit 2), shown in the launcher's ``[ERROR]:`` format."""

    def show(self, file: IO[Any] | None = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx else ""
        click.echo(f"[ERROR]: {self.format_message()}{hint}", err=True)


def reports_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Map our exception hierarchy to click's exit codes."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageProblem as e:
            raise LauncherUsageError(str(e), click.get_current_context(silent=True)) from e
        except LauncherError as e:
            raise LauncherClickError(str(e)) from e

    return wrapper


def _set_but_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # click ignores an environment variable whose value is empty; the contract
    # distinguishes "set to empty" (allowed, e.g. CONTAINER= in CI) from unset.
    if value is None and param.envvar and os.environ.get(str(param.envvar)) == "":
        return ""
    return value


def env_option(name: str, envvar: str, help: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An option that also reads ``envvar`` (the option wins), shown in --help."""
    return click.option(name, envvar=envvar, show_envvar=True, default=None, help=help,
                        callback=_set_but_empty, **kwargs)


# Declared once: (option, environment variable, help).
LAUNCH_OPTIONS = (
    ("--container", "CONTAINER", "Container image for the job. Must be set (may be empty)."),
    ("--account", "ACCOUNT", "Slurm account; also the job-name prefix. Must be set (may be empty)."),
    ("--partition", "PARTITION", "Slurm partition. Must be set (may be empty)."),
    ("--hf-home", "HF_HOME", "Hugging Face home, passed into the job. Required, non-empty."),
    ("--hf-datasets-cache", "HF_DATASETS_CACHE", "Hugging Face datasets cache, passed into the job. Required, non-empty."),
    ("--dryrun", "DRYRUN", "Empty: full launch. 1: print GPU-hours only. 2: also snapshot and write continue.sh, submit nothing."),
    ("--extra-env", "EXTRA_ENV", "Extra KEY=VALUE shell words added to the job's environment."),
    ("--mounts", "MOUNTS", "Extra container mounts, appended after the snapshot's own mount."),
    ("--is-release", "IS_RELEASE", "Non-empty: add logger.wandb.project=nemo-rl-release to the recipe arguments."),
    ("--exclude-gres", "EXCLUDE_GRES", "Non-empty: do not request --gres=gpu:N."),
    ("--slurm-job-suffix", "SLURM_JOB_SUFFIX", "Appended to the job name."),
    ("--extra-script-args", "EXTRA_SCRIPT_ARGS", "Extra shell words appended to the recipe's arguments."),
    ("--sandbox-container", "SANDBOX_CONTAINER", "Forwarded into the job's environment."),
    ("--sandbox-command", "SANDBOX_COMMAND", "Forwarded into the job's environment."),
    ("--sandbox-env-vars", "SANDBOX_ENV_VARS", "Forwarded into the job's environment."),
    ("--watch", "WATCH", "Non-empty: follow the jobs until they end, then print metric verdicts."),
    ("--watch-interval", "WATCH_INTERVAL", "Seconds between polls while watching (default 300)."),
    ("--code-snapshot-dirname", "CODE_SNAPSHOT_DIRNAME", "Snapshot root folder under the project root (default code_snapshots)."),
    ("--snapshot-mode", "SNAPSHOT_MODE", "auto (default), copy or link: how snapshots of one launch share files."),
    ("--batch-script", "BATCH_SCRIPT", "Batch script submitted from the snapshot root (default ray.sub)."),
)


def launch_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Attach every LAUNCH_OPTIONS option to ``func``."""
    for name, envvar, help in reversed(LAUNCH_OPTIONS):
        func = env_option(name, envvar, help)(func)
    return func


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nrl-launch")
def main() -> None:
    """Launch RL recipe test suites on Slurm as snapshotted, chained jobs."""


@main.command(context_settings={"max_content_width": 100})
@click.argument("scripts", nargs=-1, required=True, metavar="SCRIPT...")
@launch_options
@reports_errors
def launch(scripts: tuple[str, ...], **options: str | None) -> None:
    """Plan, snapshot and submit each recipe SCRIPT (NUM_RUNS chained jobs each)."""
    from nrl_launch.launch import launch as run_launch
    from nrl_launch.settings import make_settings

    raw = {envvar: options[name.lstrip("-").replace("-", "_")] for name, envvar, _ in LAUNCH_OPTIONS}
    settings = make_settings(raw, launch_stamp=time.strftime("%y%m%d-%H%M%S"))
    result = run_launch(scripts, settings, dict(os.environ), out=click.echo, err=_echo_err)
    if result.failed:
        click.get_current_context().exit(1)  # verdicts are printed; exit code says it


if __name__ == "__main__":  # pragma: no cover
    main()
