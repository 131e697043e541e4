"""Real git repositories, recipes and the launcher's environment, as tests build them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,  # a developer's ~/.gitconfig (gpgsign, hooks) must not matter
}

# The launcher's required variables, as a test launch sets them.
BASE_ENV = {
    "CONTAINER": "nvcr.io/nvidia/nemo-rl:test",
    "ACCOUNT": "acct",
    "PARTITION": "batch",
    "HF_HOME": "/hf",
    "HF_DATASETS_CACHE": "/hf/datasets",
}

# A CONFIG block body: 1 node, 2 runs of 240 minutes.
CONFIG_1N = """\
NUM_NODES=1
STEPS_PER_RUN=60
MAX_STEPS=120
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=240
"""




# Variables of the developer's shell that would change what a launch or a
# recipe does; the tests set the ones they need explicitly.
SCRUBBED_ENV = (
    "DRYRUN", "WATCH", "WATCH_INTERVAL", "EXTRA_ENV", "MOUNTS", "IS_RELEASE",
    "EXCLUDE_GRES", "SLURM_JOB_SUFFIX", "EXTRA_SCRIPT_ARGS", "SANDBOX_CONTAINER",
    "SANDBOX_COMMAND", "SANDBOX_ENV_VARS", "CODE_SNAPSHOT_DIRNAME", "SNAPSHOT_MODE",
    "BATCH_SCRIPT", "NRL_FORCE_FAILING_CHECK", "TEST_DRYRUN", "NUM_NODES",
    "GPUS_PER_NODE", "SEGMENT_SIZE", "NUM_MINUTES", "NUM_RUNS", "CUDA_VISIBLE_DEVICES",
    "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NAME", "SLURM_SUBMIT_DIR",
)


# ---------------------------------------------------------------- files and git


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (fixed identity, file:// submodules allowed); return its stdout."""
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def write(path: Path, text: str, mode: int | None = None) -> Path:
    """Create ``path`` (and its folders) with ``text``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def make_repo(path: Path, files: Mapping[str, str], message: str = "initial commit") -> Path:
    """A new repository at ``path`` with ``files`` committed."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    for rel, text in files.items():
        write(path / rel, text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return path


def make_tree(base: Path) -> Path:
    """The top repository of a tree with a submodule that has a nested one.

    top/                         (repo)
      README.md, .gitignore (*.log)
      tests/test_suites/llm/exp1.sh   (executable)
      run-link.sh -> tests/test_suites/llm/exp1.sh   (symlink)
      third_party/sub/           (submodule)
        sub.txt, tools/run.sh
        deps/nested/             (nested submodule)
          nested.txt
    """
    nested = make_repo(base / "origin-nested", {"nested.txt": "nested v1\n"})
    sub = make_repo(base / "origin-sub", {"sub.txt": "sub v1\n", "tools/run.sh": "echo sub\n"})
    git(sub, "submodule", "add", "-q", str(nested), "deps/nested")
    git(sub, "commit", "-q", "-m", "add nested")
    top = base / "top"
    top.mkdir()
    git(top, "init", "-q")
    write(top / "README.md", "readme v1\n")
    write(top / ".gitignore", "*.log\n")
    write(top / "tests/test_suites/llm/exp1.sh", "#!/bin/bash\necho exp1\n", 0o755)
    os.symlink("tests/test_suites/llm/exp1.sh", top / "run-link.sh")
    git(top, "add", "-A")
    git(top, "submodule", "add", "-q", str(sub), "third_party/sub")
    git(top, "submodule", "update", "-q", "--init", "--recursive")
    git(top, "commit", "-q", "-m", "Add: the first version (with a sub-module)!")
    return top


# Every file a snapshot of ``make_tree``'s tree holds (manifest aside).
TREE_FILES = [
    ".gitignore",
    ".gitmodules",
    "README.md",
    "run-link.sh",
    "tests/test_suites/llm/exp1.sh",
    "third_party/sub/.gitmodules",
    "third_party/sub/deps/nested/nested.txt",
    "third_party/sub/sub.txt",
    "third_party/sub/tools/run.sh",
]


def copy_tree(template: Path, base: Path) -> Path:
    """A private copy of a ``make_tree`` top repository (submodules use
    relative git dirs, so the copy is a complete working tree)."""
    top = base / "top"
    shutil.copytree(template, top, symlinks=True)
    return top


def recipe_text(config: str, body: str = 'echo "recipe $@"\n') -> str:
    """A recipe script with the given CONFIG block body."""
    return f"#!/bin/bash\n# a test recipe\n# ===== BEGIN CONFIG =====\n{config}# ===== END CONFIG =====\n{body}"


def launch_env(env: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """``env`` with every other launch variable unset: what CliRunner.invoke(env=…) needs to hide
    the developer's own CONTAINER, DRYRUN, WATCH… from a test."""
    from nrl_launch.settings import SETTINGS

    return {**{setting.envvar: None for setting in SETTINGS}, **(env or {})}


# The GPU-hour oracle: bash's own evaluation of a recipe's CONFIG block, then the
# bash launcher's formula (spec section 3: the product first, then truncating division).
BASH_GPU_HOURS = r"""
eval "$(sed -n '/^# =* BEGIN CONFIG/,/^# =* END CONFIG/p')"
echo $(( NUM_RUNS * NUM_NODES * ${GPUS_PER_NODE:-8} * NUM_MINUTES / 60 ))
"""


def bash_gpu_hours(recipe: str | Path, **env: str) -> int:
    """The GPU-hours of a recipe (its text, or its path) as the bash launcher computed them,
    with only ``env`` in bash's environment (e.g. ``MAX_STEPS`` the CONFIG block reads)."""
    text = recipe.read_text() if isinstance(recipe, Path) else recipe
    done = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", BASH_GPU_HOURS],
                          input=text, capture_output=True, text=True, check=True)
    return int(done.stdout)


def config_block(**values: object) -> str:
    """A whole CONFIG block (markers included) assigning ``values`` in order."""
    body = "".join(f"{name}={value}\n" for name, value in values.items())
    return f"# ===== BEGIN CONFIG =====\n{body}# ===== END CONFIG =====\n"


@dataclass
class Project:
    """A real git repository holding recipes and a batch script."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Project:
        """A new repository at ``root`` with ``ray.sub``, a README and a .gitignore committed."""
        root.mkdir(parents=True)
        git(root, "init", "-q", "-b", "main")
        (root / "ray.sub").write_text("#!/bin/bash\n#SBATCH --exclusive\nbash -c \"$COMMAND\"\n")
        (root / ".gitignore").write_text("/code_snapshots/\n")
        (root / "README.md").write_text("demo project\n")
        project = cls(root)
        project.commit("Initial commit: batch script")
        return project

    def add_recipe(self, name: str, config: str = CONFIG_1N, kind: str = "llm", commit: bool = True) -> Path:
        """Write ``tests/test_suites/<kind>/<name>.sh`` (and commit it)."""
        path = self.root / "tests" / "test_suites" / kind / f"{name}.sh"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(recipe_text(config))
        path.chmod(0o755)
        if commit:
            self.commit(f"add {name}")
        return path

    def commit(self, message: str) -> None:
        """Commit everything in the working tree."""
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message)

    def meta(self) -> str:
        """What ``git log -1 --format=%h-%f`` prints (the job's ``++git_meta``)."""
        return git(self.root, "log", "-1", "--format=%h-%f").strip()


