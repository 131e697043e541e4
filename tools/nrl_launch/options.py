"""Every command-line option of the launcher, declared once.

Each launch setting is an environment variable of the contract (spec section
1) and an option of the same meaning; the option wins. Commands that share a
setting (``watch`` and ``launch`` both take ``--watch-interval``) take it from
here, so its name, variable and help text have one home.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class EnvOption(NamedTuple):
    """One launch setting: its option, its environment variable and its help."""

    flag: str  # e.g. "--container"
    envvar: str  # e.g. "CONTAINER"
    help: str
    # A bare switch on the command line (``--watch``); the variable keeps the
    # contract's meaning (non-empty: on).
    switch: bool = False

    @property
    def param(self) -> str:
        """The name click gives the option's value (``container``)."""
        return self.flag.lstrip("-").replace("-", "_")


LAUNCH_OPTIONS = (
    EnvOption("--container", "CONTAINER", "Container image for the job. Must be set (may be empty)."),
    EnvOption("--account", "ACCOUNT", "Slurm account; also the job-name prefix. Must be set (may be empty: "
              "Slurm's default account)."),
    EnvOption("--partition", "PARTITION", "Slurm partition. Must be set (may be empty: Slurm's default partition)."),
    EnvOption("--hf-home", "HF_HOME", "Hugging Face home, passed into the job. Required, non-empty."),
    EnvOption("--hf-datasets-cache", "HF_DATASETS_CACHE", "Hugging Face datasets cache, passed into the job. "
              "Required, non-empty."),
    EnvOption("--dryrun", "DRYRUN", "Empty or 0: full launch. 1: print GPU-hours only. 2: also snapshot and write "
              "continue.sh, submit nothing."),
    EnvOption("--extra-env", "EXTRA_ENV", "Extra KEY=VALUE shell words added to the job's environment."),
    EnvOption("--mounts", "MOUNTS", "Extra container mounts, appended after the snapshot's own mount."),
    EnvOption("--is-release", "IS_RELEASE", "Non-empty: add logger.wandb.project=nemo-rl-release to the recipe "
              "arguments."),
    EnvOption("--exclude-gres", "EXCLUDE_GRES", "Non-empty: do not request --gres=gpu:N."),
    EnvOption("--slurm-job-suffix", "SLURM_JOB_SUFFIX", "Appended to the job name."),
    EnvOption("--extra-script-args", "EXTRA_SCRIPT_ARGS", "Extra shell words appended to the recipe's arguments."),
    EnvOption("--sandbox-container", "SANDBOX_CONTAINER", "Forwarded into the job's environment."),
    EnvOption("--sandbox-command", "SANDBOX_COMMAND", "Forwarded into the job's environment."),
    EnvOption("--sandbox-env-vars", "SANDBOX_ENV_VARS", "Forwarded into the job's environment."),
    EnvOption("--watch", "WATCH", "Follow the jobs until they end, then print metric verdicts (WATCH=<non-empty> "
              "does the same).", switch=True),
    EnvOption("--watch-interval", "WATCH_INTERVAL", "Seconds between polls while watching (default 300)."),
    EnvOption("--watch-give-up", "WATCH_GIVE_UP", "Seconds of consecutive failed polls after which watching gives "
              "up (default 1800)."),
    EnvOption("--stop-chain-on-failure", "STOP_CHAIN_ON_FAILURE", "Non-empty: while watching, cancel the later runs "
              "of a chain whose run FAILED."),
    EnvOption("--max-retries", "MAX_RETRIES", "While watching, resubmit an experiment's run up to this many times "
              "after its job ended NODE_FAIL, BOOT_FAIL or PREEMPTED, or failed ray.sub's node check (default 0)."),
    EnvOption("--code-snapshot-dirname", "CODE_SNAPSHOT_DIRNAME", "Snapshot root folder under the project root "
              "(default code_snapshots; several components are fine)."),
    EnvOption("--snapshot-mode", "SNAPSHOT_MODE", "auto (default), copy or link: how snapshots of one launch share "
              "files."),
    EnvOption("--batch-script", "BATCH_SCRIPT", "Batch script submitted from the snapshot root (default ray.sub)."),
    EnvOption("--base-log-dir", "BASE_LOG_DIR", "Folder the jobs write their <job id>-logs folders to (default: the "
              "snapshot); passed into the job and recorded for watch/status."),
)
_BY_VARIABLE = {option.envvar: option for option in LAUNCH_OPTIONS}


def _set_but_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # click ignores an environment variable whose value is empty; the contract
    # distinguishes "set to empty" (allowed, e.g. CONTAINER= in CI) from unset.
    if value is None and param.envvar and os.environ.get(str(param.envvar)) == "":
        return ""
    return value


def _decorator(option: EnvOption) -> Callable[[F], F]:
    if option.switch:  # the variable is read by raw_settings: click would insist on a boolean
        return click.option(option.flag, is_flag=True, default=False,
                            help=f"{option.help}  [env var: {option.envvar}]")
    return click.option(option.flag, envvar=option.envvar, show_envvar=True, default=None, help=option.help,
                        callback=_set_but_empty)


def options(*envvars: str) -> Callable[[F], F]:
    """Attach the options of these variables (all launch options without any) to a command."""
    chosen = [_BY_VARIABLE[name] for name in envvars] if envvars else list(LAUNCH_OPTIONS)

    def attach(func: F) -> F:
        for option in reversed(chosen):
            func = _decorator(option)(func)
        return func

    return attach


def raw_settings(values: dict[str, Any], envvars: Iterable[str] | None = None) -> dict[str, str | None]:
    """The raw string of each variable (option value, else the environment), keyed by variable."""
    raw: dict[str, str | None] = {}
    for option in (LAUNCH_OPTIONS if envvars is None else [_BY_VARIABLE[v] for v in envvars]):
        value = values.get(option.param)
        if option.switch:
            raw[option.envvar] = "1" if value else os.environ.get(option.envvar)
        else:
            raw[option.envvar] = value
    return raw


def project_root_option(func: F) -> F:
    """``--project-root`` and ``--code-snapshot-dirname``: where snapshots live."""
    func = options("CODE_SNAPSHOT_DIRNAME")(func)
    return click.option("--project-root", type=click.Path(file_okay=False), default=None,
                        help="Project (git) root holding the snapshots; default: the git root of the current "
                             "directory.")(func)
