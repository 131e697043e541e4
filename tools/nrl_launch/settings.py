"""The launch settings: every environment variable of spec section 1, validated.

The click layer collects raw strings (option or environment variable) and
calls :func:`make_settings`; everything below works on the frozen result.
"""

from __future__ import annotations

import re
import shlex
from enum import IntEnum
from typing import Literal, NamedTuple, get_args

from nrl_launch.bashcfg.config import BASH_READONLY_VARIABLES
from nrl_launch.errors import UsageProblem

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SnapshotMode = Literal["auto", "copy", "link"]
SNAPSHOT_MODES: tuple[SnapshotMode, ...] = get_args(SnapshotMode)
DEFAULT_SNAPSHOT_DIRNAME = "code_snapshots"
DEFAULT_WATCH_INTERVAL = 300.0
DEFAULT_WATCH_GIVE_UP = 1800.0


class WatchSettings(NamedTuple):
    """How WATCH (and ``nrl-launch watch``) follows jobs (a NamedTuple, as LaunchSettings)."""

    interval: float = DEFAULT_WATCH_INTERVAL  # seconds between polls
    give_up: float = DEFAULT_WATCH_GIVE_UP  # seconds of failed polls in a row before giving up
    stop_chain_on_failure: bool = False  # cancel the rest of a chain whose run FAILED
    max_retries: int = 0  # runs resubmitted per experiment after an infrastructure failure


class DryRun(IntEnum):
    """What ``DRYRUN`` asks for."""

    OFF = 0  # a full launch
    GPU_HOURS = 1  # print GPU-hours only: no git, no snapshot, no Slurm
    NO_SUBMIT = 2  # also snapshot and write continue.sh, but submit nothing


class LaunchSettings(NamedTuple):
    """What one launch was asked to do (independent of the scripts).

    Immutable, like every settings record here; a NamedTuple rather than a
    frozen dataclass because the class is built at every start, DRYRUN=1 too,
    and a dataclass of two dozen fields costs that start a few milliseconds.
    """

    container: str
    account: str
    partition: str
    hf_home: str
    hf_datasets_cache: str
    dryrun: DryRun = DryRun.OFF
    extra_env: tuple[tuple[str, str], ...] = ()
    mounts: str = ""
    is_release: bool = False
    exclude_gres: bool = False
    job_suffix: str = ""
    extra_script_args: str = ""
    sandbox_container: str = ""
    sandbox_command: str = ""
    sandbox_env_vars: str = ""
    watch: bool = False
    watching: WatchSettings = WatchSettings()
    snapshot_dirname: str = DEFAULT_SNAPSHOT_DIRNAME
    snapshot_mode: SnapshotMode = "auto"
    batch_script: str = "ray.sub"
    base_log_dir: str = ""  # BASE_LOG_DIR: where jobs write their <id>-logs (default: the snapshot)
    launch_stamp: str = ""  # YYMMDD-HHMMSS of the launch


def parse_dryrun(raw: str | None) -> DryRun:
    """DRYRUN: unset, empty or "0" → a full launch, "1", "2"; anything else is an error.

    Compared as given, not stripped: " " must not quietly mean a full launch.
    """
    value = raw or "0"
    if value in ("0", "1", "2"):
        return DryRun(int(value))
    raise UsageProblem(f"DRYRUN must be empty, 0, 1 or 2 (got {raw!r})")


def parse_snapshot_mode(raw: str | None) -> SnapshotMode:
    """SNAPSHOT_MODE: auto (default), copy or link."""
    mode = (raw or "auto").strip()
    if mode not in SNAPSHOT_MODES:
        raise UsageProblem(f"SNAPSHOT_MODE must be one of {', '.join(SNAPSHOT_MODES)} (got {mode!r})")
    return mode


def parse_snapshot_dirname(raw: str | None) -> str:
    """CODE_SNAPSHOT_DIRNAME: a relative folder path under the project root.

    Several components are fine (``code_snapshots_bisect/<sha>-<subject>``);
    an absolute path, ``.``/``..``/``.git`` or empty components and control
    characters are errors: the snapshots must stay inside the project and out
    of git's own folder.
    """
    text = (raw or DEFAULT_SNAPSHOT_DIRNAME).strip()
    problem = None
    if text.startswith("/"):
        problem = "is an absolute path"
    elif any(ord(char) < 32 or ord(char) == 127 for char in text):
        problem = "contains a control character"
    elif "" in text.split("/"):
        problem = "has an empty component (a doubled or trailing '/')"
    elif any(part in (".", "..", ".git") for part in text.split("/")):
        problem = "has a '.', '..' or '.git' component"
    if problem:
        raise UsageProblem(f"CODE_SNAPSHOT_DIRNAME {problem}: give a relative folder under the project root, "
                           f"e.g. code_snapshots or code_snapshots_bisect/<name> (got {raw!r})")
    return text


def parse_extra_env(raw: str | None) -> tuple[tuple[str, str], ...]:
    """EXTRA_ENV: space-separated shell words, each ``KEY=VALUE``."""
    try:
        words = shlex.split(raw or "")
    except ValueError as e:
        raise UsageProblem(f"EXTRA_ENV is not valid shell words: {e} (got {raw!r})") from e
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not _NAME_RE.match(key):
            raise UsageProblem(f"EXTRA_ENV entries must be KEY=VALUE with a valid name (got {word!r})")
        if key in BASH_READONLY_VARIABLES:
            raise UsageProblem(f"EXTRA_ENV cannot set {key}: bash keeps it read-only, so neither the job's "
                               f"batch script nor continue.sh could take it (got {word!r})")
        pairs.append((key, value))
    return tuple(pairs)


def check_shell_words(name: str, raw: str | None) -> str:
    """Return ``raw`` stripped, after checking it splits into shell words."""
    text = (raw or "").strip()
    try:
        shlex.split(text)
    except ValueError as e:
        raise UsageProblem(f"{name} is not valid shell words: {e} (got {raw!r})") from e
    return text


# Longer is a mistake, and beyond what time.sleep() accepts ("1e300") a crash.
DAY, WEEK = 86400.0, 7 * 86400.0


def _seconds(name: str, raw: str | None, default: float, maximum: float) -> float:
    """A positive number of seconds up to ``maximum`` (``default`` when unset or blank)."""
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError as e:
        raise UsageProblem(f"{name} must be a number of seconds (got {raw!r})") from e
    if not 0 < value <= maximum:  # also refuses nan and inf
        span = "one day" if maximum == DAY else "one week"
        raise UsageProblem(f"{name} must be a positive number of seconds, at most {maximum:g} ({span}) "
                           f"(got {raw!r})")
    return value


def parse_interval(raw: str | None) -> float:
    """WATCH_INTERVAL: a positive number of seconds, default 300."""
    return _seconds("WATCH_INTERVAL", raw, DEFAULT_WATCH_INTERVAL, DAY)


MAX_RETRIES_LIMIT = 100  # more is a typo: each retry is a whole run of the recipe


def parse_max_retries(raw: str | None) -> int:
    """MAX_RETRIES: a whole number from 0 (default: no retry, as the bash launcher) to 100."""
    text = (raw or "").strip()
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_RETRIES_LIMIT:
        raise UsageProblem(f"MAX_RETRIES must be a whole number from 0 to {MAX_RETRIES_LIMIT} (got {raw!r})")
    return int(text)


def make_watch_settings(raw: dict[str, str | None]) -> WatchSettings:
    """WATCH_INTERVAL, WATCH_GIVE_UP, STOP_CHAIN_ON_FAILURE and MAX_RETRIES, validated."""
    return WatchSettings(
        interval=parse_interval(raw.get("WATCH_INTERVAL")),
        give_up=_seconds("WATCH_GIVE_UP", raw.get("WATCH_GIVE_UP"), DEFAULT_WATCH_GIVE_UP, WEEK),
        stop_chain_on_failure=bool(raw.get("STOP_CHAIN_ON_FAILURE")),
        max_retries=parse_max_retries(raw.get("MAX_RETRIES")),
    )


# The variables a launch needs, and whether an empty value will do.
REQUIRED = (("CONTAINER", True), ("ACCOUNT", True), ("PARTITION", True),
            ("HF_HOME", False), ("HF_DATASETS_CACHE", False))
EXAMPLE = ("CONTAINER=<image or empty> ACCOUNT=<account or empty> PARTITION=<partition or empty> "
           "HF_HOME=<dir> HF_DATASETS_CACHE=<dir> tools/launch tests/test_suites/llm/<recipe>.sh")


def check_required(raw: dict[str, str | None]) -> None:
    """Every missing required variable, in one message with a complete example."""
    problems = []
    for name, empty_ok in REQUIRED:
        value = raw.get(name)
        if value is None and empty_ok:
            problems.append(f"{name} must be set (an empty value is allowed)")
        elif not value and not empty_ok:
            problems.append(f"{name} must be set and non-empty (it is passed into the job)")
    if problems:
        raise UsageProblem("; ".join(problems) + f". For example:\n    {EXAMPLE}")


def make_settings(raw: dict[str, str | None], launch_stamp: str) -> LaunchSettings:
    """Validate raw option/environment strings (keyed by variable name)."""
    snapshot_dirname = parse_snapshot_dirname(raw.get("CODE_SNAPSHOT_DIRNAME"))
    mode = parse_snapshot_mode(raw.get("SNAPSHOT_MODE"))
    check_required(raw)
    return LaunchSettings(
        container=raw.get("CONTAINER") or "",
        account=raw.get("ACCOUNT") or "",
        partition=raw.get("PARTITION") or "",
        hf_home=raw.get("HF_HOME") or "",
        hf_datasets_cache=raw.get("HF_DATASETS_CACHE") or "",
        dryrun=parse_dryrun(raw.get("DRYRUN")),
        extra_env=parse_extra_env(raw.get("EXTRA_ENV")),
        mounts=raw.get("MOUNTS") or "",
        is_release=bool(raw.get("IS_RELEASE")),
        exclude_gres=bool(raw.get("EXCLUDE_GRES")),
        job_suffix=raw.get("SLURM_JOB_SUFFIX") or "",
        extra_script_args=check_shell_words("EXTRA_SCRIPT_ARGS", raw.get("EXTRA_SCRIPT_ARGS")),
        sandbox_container=raw.get("SANDBOX_CONTAINER") or "",
        sandbox_command=raw.get("SANDBOX_COMMAND") or "",
        sandbox_env_vars=raw.get("SANDBOX_ENV_VARS") or "",
        watch=bool(raw.get("WATCH")),
        watching=make_watch_settings(raw),
        snapshot_dirname=snapshot_dirname,
        snapshot_mode=mode,
        batch_script=(raw.get("BATCH_SCRIPT") or "ray.sub").strip(),
        base_log_dir=raw.get("BASE_LOG_DIR") or "",
        launch_stamp=launch_stamp,
    )
