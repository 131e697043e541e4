"""Pure planning: what each script costs and exactly what would be submitted.

Nothing here touches git, the snapshot folder or Slurm. The functions take
values and return frozen dataclasses or strings, so the whole plan can be
checked before the first ``sbatch`` and compared byte for byte in tests.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nrl_launch.bashcfg.config import RecipeConfig, read_recipe
from nrl_launch.errors import PlanError
from nrl_launch.settings import LaunchSettings

RELEASE_ARG = "logger.wandb.project=nemo-rl-release"


@dataclass(frozen=True)
class Experiment:
    """One script of the launch, with its evaluated CONFIG block."""

    script: str  # as the user typed it
    path: str  # absolute (a str: pathlib is not imported on the DRYRUN=1 path)
    name: str  # basename without .sh
    config: RecipeConfig


@dataclass(frozen=True)
class Submission:
    """One ``sbatch`` call: options, batch script, working dir, extra environment."""

    experiment: str
    index: int  # 1-based run number
    total: int  # NUM_RUNS
    num_nodes: int
    options: tuple[str, ...]
    batch_script: str
    cwd: str
    env: tuple[tuple[str, str], ...]  # added on top of the launcher's environment
    # What the CONFIG block read from the launcher's environment (None: unset).
    # The job inherits it anyway; continue.sh must pin it to plan the same run.
    config_env: tuple[tuple[str, str | None], ...] = ()
    stamp: str = ""  # YYMMDD-HHMMSS of the launch, in the --output file name

    @property
    def argv(self) -> tuple[str, ...]:
        """The sbatch argument list (without the program name)."""
        return (*self.options, self.batch_script)

    @property
    def run_label(self) -> str:
        """``i/NUM_RUNS`` as printed and recorded in the manifest."""
        return f"{self.index}/{self.total}"


def output_file(stamp: str, experiment: str, run: str, total: int) -> str:
    """The ``--output`` file name of run ``run`` of an experiment launched with ``total`` runs."""
    return f"slurm-{stamp}-%j-{experiment}-{run}.{total}.out"


def experiment_name(script: str) -> str:
    """The experiment name: the script's basename without ``.sh``."""
    base = os.path.basename(script)
    return base[: -len(".sh")] if base.endswith(".sh") else base


def _check_path(shown: str) -> None:
    """A script path with a control character is refused (a newline would split the stdout lines,
    the snapshot folder's and the job's name): one line, the path shown escaped."""
    from nrl_launch.recipes.experiments import control_character  # only for a name that is not printable

    found = control_character(shown)
    if found is not None:
        raise PlanError(f"the script path {shown!r} contains a control character ({found}): its stdout lines, "
                        "snapshot folder and job name would break; rename the file")


def _repository_root(folder: str) -> str | None:
    """The nearest folder at or above ``folder`` holding ``.git`` (no git process:
    the DRYRUN=1 path runs none)."""
    while True:
        if os.path.lexists(os.path.join(folder, ".git")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def suite_scripts(suite: str) -> list[tuple[str, str]]:
    """(entry as the suite lists it, path to read) of every script a suite file lists.

    Entries are relative to the repository root (the nearest folder above the
    suite file holding ``.git``); comments and blank lines are skipped.
    """
    try:
        with open(suite, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlanError(f"cannot read the suite file: {e}", where=suite) from e
    root = _repository_root(os.path.dirname(os.path.abspath(suite)))
    if root is None:
        raise PlanError("no git repository above the suite file: its entries are relative to the repository root",
                        where=suite)
    from nrl_launch.recipes.layout import parse_suite  # only when a suite file is given

    entries = [entry for _, entry in parse_suite(text)]
    if not entries:
        raise PlanError("the suite lists no script", where=suite)
    return [(entry, os.path.relpath(os.path.join(root, entry))) for entry in entries]


def script_arguments(args: Sequence[str]) -> list[tuple[str, str]]:
    """(name as shown, path to read) per script: a suite file (``*.txt``) stands for its entries."""
    scripts: list[tuple[str, str]] = []
    for arg in args:
        if not arg:
            raise PlanError("an empty SCRIPT argument (an unset variable in the command line?): pass a recipe "
                            "script or a suite file")
        scripts.extend(suite_scripts(arg) if arg.endswith(".txt") else [(arg, arg)])
    return scripts


def plan_experiments(args: Sequence[str], environ: Mapping[str, str], *,
                     allow_duplicates: bool = False) -> tuple[Experiment, ...]:
    """Read and validate every script's CONFIG block (each on its own).

    The same experiment name twice is an error unless ``allow_duplicates``
    (DRYRUN=1 counts it twice, as the bash launcher did): two runs of it
    would share one snapshot and one singleton chain and interleave.
    """
    if not args:
        raise PlanError("no SCRIPT given: pass one or more recipe scripts (or suite files, *.txt)")
    experiments: list[Experiment] = []
    seen: dict[str, str] = {}
    for shown, path in script_arguments(args):
        if not shown.isprintable():  # the usual name needs no closer look (DRYRUN=1 checks every script)
            _check_path(shown)
        name = experiment_name(shown)
        if name in seen and not allow_duplicates:
            raise PlanError(f"experiment {name!r} is also given as {seen[name]}; give each experiment once",
                            where=shown)
        seen.setdefault(name, shown)
        config = read_recipe(path, environ)
        experiments.append(Experiment(shown, os.path.abspath(path), name, config))
    return tuple(experiments)


def duplicates(experiments: Sequence[Experiment]) -> dict[str, list[str]]:
    """Experiment name -> the scripts that share it, for names given more than once."""
    scripts: dict[str, list[str]] = {}
    for exp in experiments:
        scripts.setdefault(exp.name, []).append(exp.script)
    return {name: given for name, given in scripts.items() if len(given) > 1}


def total_gpu_hours(experiments: Sequence[Experiment]) -> int:
    """Sum of every experiment's GPU-hours."""
    return sum(exp.config.gpu_hours for exp in experiments)


def build_command(rel_path: str, experiment: str, git_meta: str, settings: LaunchSettings) -> str:
    """The COMMAND the batch script runs (spec section 5), as one shell string."""
    words = [
        "uv run",
        shlex.quote(rel_path),
        shlex.quote(f"logger.wandb.name={experiment}"),
        shlex.quote(f"++git_meta={git_meta}"),
        shlex.quote(f"++container={settings.container}"),
    ]
    if settings.extra_script_args:
        words.append(settings.extra_script_args)  # already shell words, by contract
    if settings.is_release:
        words.append(RELEASE_ARG)
    return " ".join(words)


def _option_values(config: RecipeConfig, settings: LaunchSettings, experiment: str, index: int) -> list[tuple[str,
                   str]]:
    # An empty ACCOUNT or PARTITION (allowed by the contract) leaves the option
    # out, so Slurm uses its defaults: sbatch rejects "--partition=" as "(null)".
    values = [("account", settings.account)] if settings.account else []
    values.append(("job_name", f"{settings.account}:{experiment}{settings.job_suffix}"))
    if settings.partition:
        values.append(("partition", settings.partition))
    values.append(("time", f"0:{config.num_minutes}:0"))
    if not settings.exclude_gres:
        values.append(("gres", f"gpu:{config.gpus_per_node}"))
    if config.job_reaper_comment:
        values.append(("comment", config.job_reaper_comment))
    output = output_file(settings.launch_stamp, experiment, str(index), config.num_runs)
    values += [("output", output), ("dependency", "singleton")]
    return values


@lru_cache(maxsize=1)
def _sbatch_vocabulary() -> Any:
    """simple-slurm's Slurm object: it knows sbatch's option names and values.

    Built once (about 3 ms: it loads its option list into argparse) and only
    used to validate and normalize; every rendering uses a fresh namespace.
    """
    from simple_slurm import Slurm  # imported here: the DRYRUN=1 path never needs it

    return Slurm()


@lru_cache(maxsize=4096)
def _render_option(key: str, value: str) -> str:
    """``--key=value`` as sbatch spells it, validated by simple-slurm.

    Cached: a suite repeats the same account, partition, time... in
    thousands of submissions, and argparse is slow.

    simple-slurm's public ``add_arguments`` hands key and value to argparse as
    two tokens (a value starting with "-" is then taken for an option, and a
    mistake prints argparse's usage to stderr) and its rendering writes a
    whole ``#SBATCH`` script. So this one function uses its argparse parser
    (the ``parser`` attribute) with a single ``--key=value`` token, and its
    ``_valid_key`` for the spelling: the one place that relies on simple-slurm
    beyond its documented API.
    """
    slurm = _sbatch_vocabulary()
    namespace = type(slurm.namespace)()
    try:
        slurm.parser.parse_args([f"--{key}={value}"], namespace=namespace)
    except SystemExit as e:  # argparse's way of saying "unknown option/bad value"
        raise PlanError(f"simple-slurm rejected sbatch option --{key}={value!r}") from e
    return f"--{slurm._valid_key(key)}={getattr(namespace, key)}"


def sbatch_options(config: RecipeConfig, settings: LaunchSettings, experiment: str, index: int) -> tuple[str, ...]:
    """Render the sbatch options of run ``index`` in the contract's order.

    simple-slurm validates each option name and value; its argparse list
    lacks ``--segment`` (Slurm 23.02+), which we add ourselves.
    """
    rendered = [f"--nodes={config.num_nodes}"]
    if config.segment_size is not None:
        rendered.append(f"--segment={config.segment_size}")
    rendered += [_render_option(key, value) for key, value in _option_values(config, settings, experiment, index)]
    return tuple(rendered)


# Where a job writes its logs, and so where WATCH and status look for them (ray.sub honours it).
LOG_DIR_VARIABLE = "BASE_LOG_DIR"


def unset_for_job(env: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Variables a later run of the chain (continue.sh, a retry) removes from the environment it
    is submitted from, because the launch's job environment ``env`` does not have them: a
    ``BASE_LOG_DIR`` exported in that shell would put the run's logs where no one looks."""
    return () if any(name == LOG_DIR_VARIABLE for name, _ in env) else (LOG_DIR_VARIABLE,)


def job_environment(config: RecipeConfig, settings: LaunchSettings, snapshot_dir: str,
                    command: str) -> tuple[tuple[str, str], ...]:
    """Variables added to the job's environment, in a stable order.

    EXTRA_ENV comes first so that the contract's own variables (which the
    batch script relies on) cannot be shadowed by it by accident.
    """
    mounts = f"{snapshot_dir}:{snapshot_dir}" + (f",{settings.mounts}" if settings.mounts else "")
    # BASE_LOG_DIR reaches the job from the launcher's environment anyway; set
    # here, continue.sh pins it too, so every run of the chain logs to one place.
    log_dir = ((LOG_DIR_VARIABLE, settings.base_log_dir),) if settings.base_log_dir else ()
    return (
        *settings.extra_env,
        ("HF_HOME", settings.hf_home),
        ("HF_DATASETS_CACHE", settings.hf_datasets_cache),
        ("CONTAINER", settings.container),
        ("GPUS_PER_NODE", str(config.gpus_per_node)),
        ("SANDBOX_CONTAINER", settings.sandbox_container),
        ("SANDBOX_COMMAND", settings.sandbox_command),
        ("SANDBOX_ENV_VARS", settings.sandbox_env_vars),
        *log_dir,
        ("MOUNTS", mounts),
        ("COMMAND", command),
    )


def build_submissions(
    exp: Experiment, settings: LaunchSettings, snapshot_dir: str, rel_path: str, git_meta: str
) -> tuple[Submission, ...]:
    """Every run of one experiment, in submission order."""
    command = build_command(rel_path, exp.name, git_meta, settings)
    env = job_environment(exp.config, settings, snapshot_dir, command)
    return tuple(
        Submission(
            experiment=exp.name,
            index=i,
            total=exp.config.num_runs,
            num_nodes=exp.config.num_nodes,
            options=sbatch_options(exp.config, settings, exp.name, i),
            batch_script=settings.batch_script,
            cwd=snapshot_dir,
            env=env,
            config_env=tuple(exp.config.environment.items()),
            stamp=settings.launch_stamp,
        )
        for i in range(1, exp.config.num_runs + 1)
    )
