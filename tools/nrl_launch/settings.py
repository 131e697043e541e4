"""The launch settings: every environment variable of spec section 1, declared once, validated.

Each setting is one :class:`Setting` of :data:`SETTINGS`: its variable, its
option, its parser, its default and its help, rendered from that default. The
click layer (``options.py``) makes the options from this table and collects the
raw strings (option, else variable); :func:`make_settings` validates them into
the frozen :class:`LaunchSettings` everything below works on.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any, Generic, Literal, NamedTuple, TypeVar, get_args

from nrl_launch.bashcfg.config import BASH_READONLY_VARIABLES
from nrl_launch.errors import UsageProblem

T = TypeVar("T")
Raw = Mapping[str, "str | None"]  # raw strings by variable name; None: unset
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SnapshotMode = Literal["auto", "copy", "link"]
SNAPSHOT_MODES: tuple[SnapshotMode, ...] = get_args(SnapshotMode)
EnvPairs = tuple[tuple[str, str], ...]  # EXTRA_ENV: (name, value) in order
# Longer is a mistake, and beyond what time.sleep() accepts ("1e300") a crash.
DAY, WEEK = 86400.0, 7 * 86400.0
MAX_RETRIES_LIMIT = 100  # more is a typo: each retry is a whole run of the recipe
MAX_PARALLEL = 64  # sbatch processes at once: more only loads the controller


class DryRun(IntEnum):
    """What ``DRYRUN`` asks for."""

    OFF = 0  # a full launch
    GPU_HOURS = 1  # print GPU-hours only: no git, no snapshot, no Slurm
    NO_SUBMIT = 2  # also snapshot and write continue.sh, but submit nothing


class Setting(Generic[T]):
    """One setting, declared once: variable, option, parser, default and help.

    ``parse(setting, text)`` turns a non-empty raw value into the value, or
    raises :class:`UsageProblem` naming the variable; unset or empty means
    ``default``. ``{default}`` in ``help`` is replaced by the default as a user
    would write it. ``required``: "set" (an empty value will do) or "non-empty".
    A plain class, not a dataclass: the table is built at every start.
    """

    __slots__ = ("envvar", "flag", "help", "parse", "default", "metavar", "required", "switch")

    def __init__(self, envvar: str, flag: str, help: str, parse: Callable[[Setting[T], str], T], default: T, *,
                 metavar: str = "TEXT", required: str = "", switch: bool = False) -> None:
        self.envvar, self.flag = envvar, flag  # e.g. "WATCH_INTERVAL", "--watch-interval"
        self.help, self.metavar = help, metavar
        self.parse, self.default = parse, default
        self.required = required
        # A bare switch on the command line (--watch); the variable keeps the
        # contract's meaning (non-empty: on).
        self.switch = switch

    def read(self, raw: str | None) -> T:
        """The value of a raw string (None: unset)."""
        return self.parse(self, raw) if raw else self.default

    def of(self, raw: Raw) -> T:
        """The value of this setting's variable in ``raw``."""
        return self.read(raw.get(self.envvar))

    @property
    def param(self) -> str:
        """The name click gives the option's value (``watch_interval``)."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def help_text(self) -> str:
        """The help with the default written in."""
        shown = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        return self.help.replace("{default}", shown)


# ---------------------------------------------------------------- parsers: (setting, non-empty text) -> value


def _text(setting: Setting[str], text: str) -> str:
    return text


def _flag(setting: Setting[bool], text: str) -> bool:
    return True  # any non-empty value, as the bash launcher's [[ -n ... ]]


def _dryrun(setting: Setting[DryRun], text: str) -> DryRun:
    # Compared as given, not stripped: " " must not quietly mean a full launch.
    if text in ("0", "1", "2"):
        return DryRun(int(text))
    raise UsageProblem(f"{setting.envvar} must be empty, 0, 1 or 2 (got {text!r})")


def _snapshot_mode(setting: Setting[SnapshotMode], text: str) -> SnapshotMode:
    mode = text.strip() or setting.default
    if mode not in SNAPSHOT_MODES:
        raise UsageProblem(f"{setting.envvar} must be one of {', '.join(SNAPSHOT_MODES)} (got {mode!r})")
    return mode


def _snapshot_dirname(setting: Setting[str], text: str) -> str:
    """A relative folder path under the project root.

    Several components are fine (``code_snapshots_bisect/<sha>-<subject>``);
    an absolute path, ``.``/``..``/``.git`` or empty components and control
    characters are errors: the snapshots must stay inside the project and out
    of git's own folder.
    """
    path = text.strip() or setting.default
    problem = None
    if path.startswith("/"):
        problem = "is an absolute path"
    elif any(ord(char) < 32 or ord(char) == 127 for char in path):
        problem = "contains a control character"
    elif "" in path.split("/"):
        problem = "has an empty component (a doubled or trailing '/')"
    elif any(part in (".", "..", ".git") for part in path.split("/")):
        problem = "has a '.', '..' or '.git' component"
    if problem:
        raise UsageProblem(f"{setting.envvar} {problem}: give a relative folder under the project root, "
                           f"e.g. code_snapshots or code_snapshots_bisect/<name> (got {text!r})")
    return path


def _folder(setting: Setting[str], text: str) -> str:
    """A folder as the user means it: a relative one from where the command runs (the job, which
    runs in its snapshot, and continue.sh, run from anywhere, get the absolute path)."""
    import os.path  # os is loaded anyway; only its path functions are needed, only when the variable is set

    return os.path.abspath(text)


def _stripped(setting: Setting[str], text: str) -> str:
    return text.strip() or setting.default


def _extra_env(setting: Setting[EnvPairs], text: str) -> EnvPairs:
    return parse_extra_env(text)


def _shell_words(setting: Setting[str], text: str) -> str:
    return check_shell_words(setting.envvar, text)


def seconds(maximum: float, *, zero: bool = False) -> Callable[[Setting[float], str], float]:
    """The parser of a positive number of seconds up to ``maximum`` (blank: the default; ``zero``:
    0 too): the one seconds parser of every setting that takes a duration."""
    def parse(setting: Setting[float], text: str) -> float:
        if not text.strip():
            return setting.default
        try:
            value = float(text)
        except ValueError as e:
            raise UsageProblem(f"{setting.envvar} must be a number of seconds (got {text!r})") from e
        lowest_ok = value >= 0 if zero else value > 0
        if not lowest_ok or not value <= maximum:  # also refuses nan and inf
            span = "one day" if maximum == DAY else "one week"
            kind = "a number of seconds from 0" if zero else "a positive number of seconds"
            raise UsageProblem(f"{setting.envvar} must be {kind}, at most {maximum:g} ({span}) (got {text!r})")
        return value

    return parse


def _parallel(setting: Setting[int], text: str) -> int:
    count = text.strip()
    if not count:
        return setting.default
    if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= MAX_PARALLEL:
        raise UsageProblem(f"{setting.envvar} must be a whole number from 1 to {MAX_PARALLEL} (got {text!r})")
    return int(count)


def _retries(setting: Setting[int], text: str) -> int:
    count = text.strip()
    if not count:
        return setting.default
    if not (count.isascii() and count.isdigit()) or int(count) > MAX_RETRIES_LIMIT:
        raise UsageProblem(f"{setting.envvar} must be a whole number from 0 to {MAX_RETRIES_LIMIT} (got {text!r})")
    return int(count)


# ---------------------------------------------------------------- the table

CONTAINER = Setting("CONTAINER", "--container", "Container image for the job. Must be set (may be empty).", _text, "",
                    required="set")
ACCOUNT = Setting("ACCOUNT", "--account", "Slurm account; also the job-name prefix. Must be set (may be empty: "
                  "Slurm's default account).", _text, "", required="set")
PARTITION = Setting("PARTITION", "--partition", "Slurm partition. Must be set (may be empty: Slurm's default "
                    "partition).", _text, "", required="set")
HF_HOME = Setting("HF_HOME", "--hf-home", "Hugging Face home, passed into the job. Required, non-empty.", _text, "",
                  metavar="DIR", required="non-empty")
HF_DATASETS_CACHE = Setting("HF_DATASETS_CACHE", "--hf-datasets-cache", "Hugging Face datasets cache, passed into "
                            "the job. Required, non-empty.", _text, "", metavar="DIR", required="non-empty")
DRYRUN = Setting("DRYRUN", "--dryrun", "Empty or 0: full launch. 1: print GPU-hours only. 2: also snapshot and "
                 "write continue.sh, submit nothing.", _dryrun, DryRun.OFF, metavar="0|1|2")
EXTRA_ENV: Setting[EnvPairs] = Setting("EXTRA_ENV", "--extra-env", "Extra KEY=VALUE shell words added to the "
                                       "job's environment.", _extra_env, (), metavar="WORDS")
MOUNTS = Setting("MOUNTS", "--mounts", "Extra container mounts, appended after the snapshot's own mount.", _text, "")
IS_RELEASE = Setting("IS_RELEASE", "--is-release", "Non-empty: add logger.wandb.project=nemo-rl-release to the "
                     "recipe arguments.", _flag, False)
EXCLUDE_GRES = Setting("EXCLUDE_GRES", "--exclude-gres", "Non-empty: do not request --gres=gpu:N.", _flag, False)
SLURM_JOB_SUFFIX = Setting("SLURM_JOB_SUFFIX", "--slurm-job-suffix", "Appended to the job name.", _text, "")
EXTRA_SCRIPT_ARGS = Setting("EXTRA_SCRIPT_ARGS", "--extra-script-args", "Extra shell words appended to the "
                            "recipe's arguments.", _shell_words, "", metavar="WORDS")
SANDBOX_CONTAINER = Setting("SANDBOX_CONTAINER", "--sandbox-container", "Forwarded into the job's environment.",
                            _text, "")
SANDBOX_COMMAND = Setting("SANDBOX_COMMAND", "--sandbox-command", "Forwarded into the job's environment.", _text, "")
SANDBOX_ENV_VARS = Setting("SANDBOX_ENV_VARS", "--sandbox-env-vars", "Forwarded into the job's environment.", _text,
                           "")
WATCH = Setting("WATCH", "--watch", "Follow the jobs until they end, then print metric verdicts (WATCH=<non-empty> "
                "does the same).", _flag, False, switch=True)
WATCH_INTERVAL = Setting("WATCH_INTERVAL", "--watch-interval", "Seconds between polls while watching (default "
                         "{default}, at most a day).", seconds(DAY), 300.0, metavar="SECONDS")
WATCH_GIVE_UP = Setting("WATCH_GIVE_UP", "--watch-give-up", "Seconds of consecutive failed polls after which "
                        "watching gives up (default {default}, at most a week).", seconds(WEEK), 1800.0,
                        metavar="SECONDS")
STOP_CHAIN_ON_FAILURE = Setting("STOP_CHAIN_ON_FAILURE", "--stop-chain-on-failure", "Non-empty: while watching, "
                                "cancel the later runs of a chain whose run FAILED.", _flag, False)
MAX_RETRIES = Setting("MAX_RETRIES", "--max-retries", "While watching, resubmit an experiment's run up to this many "
                      "times after its job ended NODE_FAIL, BOOT_FAIL or PREEMPTED, or failed ray.sub's node check "
                      f"(default {{default}}, at most {MAX_RETRIES_LIMIT}).", _retries, 0, metavar="N")
CODE_SNAPSHOT_DIRNAME = Setting("CODE_SNAPSHOT_DIRNAME", "--code-snapshot-dirname", "Snapshot root folder under the "
                                "project root (default {default}; several components are fine).", _snapshot_dirname,
                                "code_snapshots", metavar="PATH")
SNAPSHOT_MODE: Setting[SnapshotMode] = Setting(
    "SNAPSHOT_MODE", "--snapshot-mode", "How the snapshots of one launch share files (default {default}).",
    _snapshot_mode, "auto", metavar="|".join(SNAPSHOT_MODES))
BATCH_SCRIPT = Setting("BATCH_SCRIPT", "--batch-script", "Batch script submitted from the snapshot root (default "
                       "{default}).", _stripped, "ray.sub", metavar="PATH")
BASE_LOG_DIR = Setting("BASE_LOG_DIR", "--base-log-dir", "Folder the jobs write their <job id>-logs folders to "
                       "(default: the snapshot; a relative one is taken from the current directory); passed into "
                       "the job and recorded for watch/status.", _folder, "", metavar="DIR")
SUBMIT_PARALLEL = Setting("SUBMIT_PARALLEL", "--submit-parallel", "Experiments submitted at once, the runs of each "
                          "chain in order (default {default}; 1: one after another).", _parallel, 4, metavar="N")
SLURM_TIMEOUT = Setting("NRL_SLURM_TIMEOUT", "--slurm-timeout", "Seconds any Slurm command may take (default "
                        "{default}, at most a day); a timeout is an error that says what was already queued.",
                        seconds(DAY), 120.0, metavar="SECONDS")
SLURM_RETRY = Setting("NRL_SLURM_RETRY", "--slurm-retry", "Seconds during which a Slurm command that failed "
                      "transiently (busy or restarting controller, lost reply, timeout) is tried again, with "
                      "exponential backoff (default {default}, at most a day; 0: never).", seconds(DAY, zero=True),
                      60.0, metavar="SECONDS")

# What ``nrl-launch launch`` takes, in the order --help lists them; NRL_SLURM_TIMEOUT and
# NRL_SLURM_RETRY are the Slurm client's (every command that talks to Slurm takes them, see
# options.slurm_timeout_option).
LAUNCH_SETTINGS: tuple[Setting[Any], ...] = (
    CONTAINER, ACCOUNT, PARTITION, HF_HOME, HF_DATASETS_CACHE, DRYRUN, EXTRA_ENV, MOUNTS, IS_RELEASE, EXCLUDE_GRES,
    SLURM_JOB_SUFFIX, EXTRA_SCRIPT_ARGS, SANDBOX_CONTAINER, SANDBOX_COMMAND, SANDBOX_ENV_VARS, WATCH,
    WATCH_INTERVAL, WATCH_GIVE_UP, STOP_CHAIN_ON_FAILURE, MAX_RETRIES, CODE_SNAPSHOT_DIRNAME, SNAPSHOT_MODE,
    BATCH_SCRIPT, BASE_LOG_DIR, SUBMIT_PARALLEL)
CLIENT_SETTINGS: tuple[Setting[float], ...] = (SLURM_TIMEOUT, SLURM_RETRY)
SETTINGS: tuple[Setting[Any], ...] = (*LAUNCH_SETTINGS, *CLIENT_SETTINGS)
BY_VARIABLE = {setting.envvar: setting for setting in SETTINGS}


# ---------------------------------------------------------------- the validated settings


class WatchSettings(NamedTuple):
    """How WATCH (and ``nrl-launch watch``) follows jobs (a NamedTuple, as LaunchSettings)."""

    interval: float = WATCH_INTERVAL.default  # seconds between polls
    give_up: float = WATCH_GIVE_UP.default  # seconds of failed polls in a row before giving up
    stop_chain_on_failure: bool = False  # cancel the rest of a chain whose run FAILED
    max_retries: int = MAX_RETRIES.default  # runs resubmitted per experiment after an infrastructure failure


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
    dryrun: DryRun = DRYRUN.default
    extra_env: EnvPairs = ()
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
    snapshot_dirname: str = CODE_SNAPSHOT_DIRNAME.default
    snapshot_mode: SnapshotMode = SNAPSHOT_MODE.default
    batch_script: str = BATCH_SCRIPT.default
    base_log_dir: str = ""  # BASE_LOG_DIR: where jobs write their <id>-logs (default: the snapshot)
    launch_stamp: str = ""  # YYMMDD-HHMMSS of the launch
    submit_parallel: int = SUBMIT_PARALLEL.default  # experiments submitted at once


def parse_snapshot_dirname(raw: str | None) -> str:
    """CODE_SNAPSHOT_DIRNAME: a relative folder under the project root (see :func:`_snapshot_dirname`)."""
    return CODE_SNAPSHOT_DIRNAME.read(raw)


def parse_snapshot_mode(raw: str | None) -> SnapshotMode:
    """SNAPSHOT_MODE: auto (default), copy or link."""
    return SNAPSHOT_MODE.read(raw)


def parse_max_retries(raw: str | None) -> int:
    """MAX_RETRIES: a whole number from 0 (default: no retry, as the bash launcher) to 100."""
    return MAX_RETRIES.read(raw)


def parse_extra_env(raw: str | None) -> EnvPairs:
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


def make_watch_settings(raw: Raw) -> WatchSettings:
    """WATCH_INTERVAL, WATCH_GIVE_UP, STOP_CHAIN_ON_FAILURE and MAX_RETRIES, validated."""
    return WatchSettings(interval=WATCH_INTERVAL.of(raw), give_up=WATCH_GIVE_UP.of(raw),
                         stop_chain_on_failure=STOP_CHAIN_ON_FAILURE.of(raw), max_retries=MAX_RETRIES.of(raw))


EXAMPLE = ("CONTAINER=<image or empty> ACCOUNT=<account or empty> PARTITION=<partition or empty> "
           "HF_HOME=<dir> HF_DATASETS_CACHE=<dir> tools/launch tests/test_suites/llm/<recipe>.sh")


def check_required(raw: Raw) -> None:
    """Every missing required variable, in one message with a complete example."""
    problems = []
    for setting in LAUNCH_SETTINGS:
        value = raw.get(setting.envvar)
        if setting.required == "set" and value is None:
            problems.append(f"{setting.envvar} must be set (an empty value is allowed)")
        elif setting.required == "non-empty" and not value:
            problems.append(f"{setting.envvar} must be set and non-empty (it is passed into the job)")
    if problems:
        raise UsageProblem("; ".join(problems) + f". For example:\n    {EXAMPLE}")


def make_settings(raw: Raw, launch_stamp: str) -> LaunchSettings:
    """Validate raw option/environment strings (keyed by variable name)."""
    snapshot_dirname = CODE_SNAPSHOT_DIRNAME.of(raw)
    mode = SNAPSHOT_MODE.of(raw)
    check_required(raw)
    return LaunchSettings(
        container=CONTAINER.of(raw),
        account=ACCOUNT.of(raw),
        partition=PARTITION.of(raw),
        hf_home=HF_HOME.of(raw),
        hf_datasets_cache=HF_DATASETS_CACHE.of(raw),
        dryrun=DRYRUN.of(raw),
        extra_env=EXTRA_ENV.of(raw),
        mounts=MOUNTS.of(raw),
        is_release=IS_RELEASE.of(raw),
        exclude_gres=EXCLUDE_GRES.of(raw),
        job_suffix=SLURM_JOB_SUFFIX.of(raw),
        extra_script_args=EXTRA_SCRIPT_ARGS.of(raw),
        sandbox_container=SANDBOX_CONTAINER.of(raw),
        sandbox_command=SANDBOX_COMMAND.of(raw),
        sandbox_env_vars=SANDBOX_ENV_VARS.of(raw),
        watch=WATCH.of(raw),
        watching=make_watch_settings(raw),
        snapshot_dirname=snapshot_dirname,
        snapshot_mode=mode,
        batch_script=BATCH_SCRIPT.of(raw),
        base_log_dir=BASE_LOG_DIR.of(raw),
        launch_stamp=launch_stamp,
        submit_parallel=SUBMIT_PARALLEL.of(raw),
    )
