"""The click options of the settings table (:data:`nrl_launch.settings.SETTINGS`).

Each launch setting is an environment variable of the contract (spec section
1) and an option of the same meaning; the option wins. Its flag, variable,
default and help live in the table; this module only turns table entries into
click options, so commands that share a setting (``watch`` and ``launch`` both
take ``--watch-interval``) share its one declaration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from nrl_launch.settings import BY_VARIABLE, CLIENT_SETTINGS, LAUNCH_SETTINGS, Setting

F = TypeVar("F", bound=Callable[..., Any])


def _set_but_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # click ignores an environment variable whose value is empty; the contract
    # distinguishes "set to empty" (allowed, e.g. CONTAINER= in CI) from unset.
    if value is None and param.envvar and os.environ.get(str(param.envvar)) == "":
        return ""
    return value


def _decorator(setting: Setting[Any], **extra: Any) -> Callable[[F], F]:
    if setting.switch:  # the variable is read by raw_settings: click would insist on a boolean
        return click.option(setting.flag, is_flag=True, default=False,
                            help=f"{setting.help_text}  [env var: {setting.envvar}]")
    return click.option(setting.flag, envvar=setting.envvar, show_envvar=True, default=None, metavar=setting.metavar,
                        help=setting.help_text, **{"callback": _set_but_empty, **extra})


def _chosen(envvars: Iterable[str] | None) -> list[Setting[Any]]:
    return list(LAUNCH_SETTINGS) if envvars is None else [BY_VARIABLE[name] for name in envvars]


def options(*envvars: str) -> Callable[[F], F]:
    """Attach the options of these variables (all launch options without any) to a command."""
    chosen = _chosen(envvars or None)

    def attach(func: F) -> F:
        for setting in reversed(chosen):
            func = _decorator(setting)(func)
        return func

    return attach


def raw_settings(values: dict[str, Any], envvars: Iterable[str] | None = None) -> dict[str, str | None]:
    """The raw string of each variable (option value, else the environment), keyed by variable."""
    raw: dict[str, str | None] = {}
    for setting in _chosen(envvars):
        value = values.get(setting.param)
        if setting.switch:
            raw[setting.envvar] = "1" if value else os.environ.get(setting.envvar)
        else:
            raw[setting.envvar] = value
    return raw


def project_root_option(func: F) -> F:
    """``--project-root`` and ``--code-snapshot-dirname``: where snapshots live."""
    func = options("CODE_SNAPSHOT_DIRNAME")(func)
    return click.option("--project-root", type=click.Path(file_okay=False), default=None,
                        help="Project (git) root holding the snapshots; default: the git root of the current "
                             "directory.")(func)


def _keep_for_client(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta[str(param.envvar)] = _set_but_empty(ctx, param, value)


def slurm_timeout_option(func: F) -> F:
    """``--slurm-timeout`` (NRL_SLURM_TIMEOUT) and ``--slurm-retry`` (NRL_SLURM_RETRY) on a
    command that talks to Slurm.

    Settings of the command's Slurm client rather than of the command: their raw
    values are kept in the context for :func:`nrl_launch.cli.slurm_client`, so the
    command function takes no parameter for them.
    """
    for setting in reversed(CLIENT_SETTINGS):
        func = _decorator(setting, expose_value=False, callback=_keep_for_client)(func)
    return func


def kept_slurm_timeout(ctx: click.Context, setting: Setting[float] = CLIENT_SETTINGS[0]) -> str | None:
    """The raw value of a client setting (default ``--slurm-timeout``/NRL_SLURM_TIMEOUT) the
    running command was given (None: neither option nor variable)."""
    raw = ctx.meta.get(setting.envvar)
    return raw if isinstance(raw, str) else None
