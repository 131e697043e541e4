"""Repositories for the lint tests, built in tmp_path.

:func:`build_realworld` writes a recipe repository of upstream NeMo-RL's
layout and conventions (issues 10 and 22), written here, not copied: nine
suite files with comments and blank lines, among them a disabled suite and
two subset suites (``nightly_mcore*`` run some recipes of ``nightly*``
again), nested recipe folders and a recipe outside the recipe roots,
upstream's algo map and its base YAMLs (recipes merge into them: some
inherit them, some a parent of theirs, some are full configs without
``defaults:``, one adds a key upstream allows), names that bend the
grammar, a YAML whose extra ``env.*.num_gpu_nodes`` add to
``cluster.num_nodes``, GB200 recipes on 4-GPU nodes, output folders next to
recipes; and a ``[tool.nrl-launch.lint]`` (:data:`CONFIG`, the example of
docs/lint.md) with which it lints clean. Every recipe is described by a
:class:`Spec`, so a test can compute what a recipe asks for without the linter.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from nrl_launch import lint
from testkit import bash_gpu_hours

SUITES_DIR = "tests/test_suites"
YAML_ROOT = "examples/configs/recipes"


def write(root: Path, rel: str, content: str | bytes, mode: int | None = None) -> Path:
    """Create ``root/rel`` (and its folders) with ``content``."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    if mode is not None:
        path.chmod(mode)
    return path


def append(root: Path, rel: str, text: str) -> None:
    """Add ``text`` at the end of ``root/rel``."""
    path = root / rel
    path.write_text(path.read_text() + text)


def replace_in(root: Path, rel: str, old: str, new: str) -> None:
    """Replace the first ``old`` of ``root/rel`` (which must hold it) with ``new``."""
    path = root / rel
    text = path.read_text()
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new, 1))


def script(*assignments: str, body: str = 'echo "training"\n', header: str = "") -> str:
    """A recipe script whose CONFIG block holds ``assignments``: the BEGIN
    marker is on line 5 and the first assignment on line 6."""
    lines = [
        "#!/bin/bash",
        header or "# a recipe",
        'SCRIPT_DIR=$( cd -- "$( dirname -- "${BASH_SOURCE[0]}" )" &> /dev/null && pwd)',
        "",
        "# ===== BEGIN CONFIG =====",
        *assignments,
        "# ===== END CONFIG =====",
        "",
    ]
    return "\n".join(lines) + "\n" + body


CONFIG_LINE = 5  # the BEGIN CONFIG marker of script()

DRYRUN_OK = ('if [[ -n "${TEST_DRYRUN:-}" ]]; then\n    echo "dry run: $NUM_NODES nodes"\n    exit 0\nfi\n'
             'echo "training"\n')
DRYRUN_FAILS = 'if [[ -n "${TEST_DRYRUN:-}" ]]; then\n    echo "no such cluster any more" >&2\n    exit 1\nfi\n'


@dataclass(frozen=True)
class Spec:
    """One recipe of the real-world fixture."""

    path: str  # below the suite folder, without .sh: "llm/performance/grpo-qwen3-32b-4n4g"
    suite: str
    nodes: int  # what CONFIG says
    gpus: int
    minutes: int = 60
    steps: tuple[int, int] = (50, 100)  # STEPS_PER_RUN, MAX_STEPS
    base: str | None = "examples/configs/grpo_math_1B.yaml"  # its defaults: parent; None: a full config
    standalone: str = ""  # without a parent: the keys it sets besides its cluster
    yaml_cluster: tuple[int, int] | None = None  # cluster.num_nodes / gpus_per_node; None: name's
    yaml_extra: str = ""
    header: str = ""
    dryrun_fails: bool = False
    state_gpus: bool = True  # write GPUS_PER_NODE into CONFIG
    subsets: tuple[str, ...] = ()  # subset suites that list it again

    @property
    def rel(self) -> str:
        """The script, repo-relative."""
        return f"{SUITES_DIR}/{self.path}.sh"

    @property
    def yaml_rel(self) -> str:
        """The YAML mirror, repo-relative."""
        return f"{YAML_ROOT}/{self.path}.yaml"

    @property
    def gpu_hours(self) -> int:
        """What the launcher must print for it, as bash computes it from the script."""
        return bash_gpu_hours(self.script_text())

    def script_text(self) -> str:
        """The recipe script."""
        steps_per_run, max_steps = self.steps
        assignments = [f"NUM_NODES={self.nodes}"]
        if self.state_gpus:
            assignments.append(f"GPUS_PER_NODE={self.gpus}")
        assignments += [
            f"STEPS_PER_RUN=${{STEPS_PER_RUN:-{steps_per_run}}}",
            f"MAX_STEPS=${{MAX_STEPS:-{max_steps}}}",
            "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up",
            f"NUM_MINUTES={self.minutes}",
        ]
        return script(*assignments, body=DRYRUN_FAILS if self.dryrun_fails else DRYRUN_OK, header=self.header)

    def yaml_text(self) -> str:
        """The recipe YAML: defaults: its parent (or keys of its own), then its cluster."""
        nodes, gpus = self.yaml_cluster or (self.nodes, self.gpus)
        head = self.standalone
        if self.base is not None:
            head = f"defaults: {posixpath.relpath(self.base, posixpath.dirname(self.yaml_rel))}\n"
        return f"{head}cluster:\n  num_nodes: {nodes}\n  gpus_per_node: {gpus}\n{self.yaml_extra}"


# The base YAMLs of upstream NeMo-RL's algo map (and two parents recipes use),
# each holding every key its recipes set: recipes merge into them.
_CLUSTER = "cluster:\n  gpus_per_node: 8\n  num_nodes: 1\n"
BASES = {
    "examples/configs/grpo_math_1B.yaml": (
        "grpo:\n  num_prompts_per_step: 32\n  max_num_steps: 100\npolicy:\n  model_name: Qwen/Qwen2.5-1.5B\n"
        "  generation:\n    backend: vllm\n    max_new_tokens: 512\nenv:\n  math:\n    num_workers: 8\n  gym:\n"
        "    num_gpu_nodes: null\n" + _CLUSTER),
    "examples/configs/grpo_math_1B_megatron.yaml": "defaults: grpo_math_1B.yaml\npolicy:\n  model_name: llama-1b\n",
    "examples/configs/grpo_math_1B_gym.yaml": "defaults: grpo_math_1B.yaml\nenv:\n  gym:\n    num_gpu_nodes: 3\n",
    "examples/configs/vlm_grpo_3B.yaml": ("grpo:\n  num_prompts_per_step: 8\npolicy:\n  model_name: Qwen2.5-VL-3B\n"
                                          "cluster:\n  gpus_per_node: 2\n  num_nodes: 1\n"),
    "examples/configs/sft.yaml": "sft:\n  max_num_steps: 10\npolicy:\n  model_name: llama-1b\n" + _CLUSTER,
    "examples/configs/sft_vlm_3B.yaml": "defaults: sft.yaml\npolicy:\n  model_name: Qwen2.5-VL-3B\n",
    "examples/configs/vlm_mpo.yaml": "mpo:\n  beta: 0.1\n" + _CLUSTER,
    "examples/configs/dpo.yaml": "dpo:\n  max_num_steps: 10\n" + _CLUSTER,
    "examples/configs/rm.yaml": "rm:\n  margin: 0.1\n" + _CLUSTER,
    "examples/configs/distillation_math.yaml": "distillation:\n  topk_logits_k: 64\n" + _CLUSTER,
    "examples/configs/prorlv2.v2.yaml": "defaults: grpo_math_1B.yaml\nprorl:\n  reset_ref: true\n",
    "examples/configs/ppo_math_1B_megatron.yaml": "ppo:\n  value_coef: 0.5\n" + _CLUSTER,
    "examples/configs/gdpo_math_1B.yaml": "gdpo:\n  groups: 4\n" + _CLUSTER,
}

UNUSED_BASES = ("examples/configs/vlm_mpo.yaml",)  # no recipe of its algo: the lint never reads it

GYM = Spec("llm/grpo-qwen3-30ba3b-6n8g-megatron-gym", "nightly", 6, 8, base="examples/configs/grpo_math_1B_gym.yaml",
           yaml_cluster=(1, 8), yaml_extra="env:\n  gym:\n    num_gpu_nodes: 5\n")
GB200 = Spec("llm/grpo-llama3.1-8b-instruct-4n4g-fsdp2tp1", "nightly_gb200", 4, 4, subsets=("nightly_mcore_gb200",))
PERF_GB200 = Spec("llm/performance/grpo-qwen3-32b-4n4g", "performance_gb200", 4, 4)
DISABLED = Spec("llm/grpo-llama3.1-70b-instruct-8n8g-megatron-tp8pp4", "disabled", 8, 8, dryrun_fails=True)
VERSION_FIRST = Spec("llm/grpo-qwen3-8b-1n8g-fsdp2tp1.v3-tq_simple", "nightly", 1, 8)
NO_CLUSTER = Spec("llm/dapo-qwen2.5-7b.v2", "release", 2, 8,
                  header="# nrl-lint: disable=name-cluster  (dapo recipes are named by model only)")
CONTEXT = Spec("llm/grpo-deepscaler-1.5b-8K", "nightly", 1, 8)
SFT = Spec("llm/sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2", "nightly", 1, 8, base="examples/configs/sft.yaml",
           minutes=30, steps=(20, 40))
VLM = Spec("vlm/vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-dtensor2tp1.v1", "nightly", 1, 2,
           base="examples/configs/vlm_grpo_3B.yaml")
# A full config without defaults: (upstream keeps some): it merges into its base all the same.
FULL = Spec("llm/grpo-llama3.2-1b-instruct-1n8g-megatron", "nightly", 1, 8, base=None,
            standalone="grpo:\n  num_prompts_per_step: 32\npolicy:\n  model_name: llama-1b\n",
            subsets=("nightly_mcore",))
# Derives from another parent of the base; adds a key the base allows (base-extra-keys).
MEGATRON = Spec("llm/grpo-llama3.1-8b-instruct-1n8g-megatron_generation", "nightly", 1, 8,
                base="examples/configs/grpo_math_1B_megatron.yaml", subsets=("nightly_mcore",),
                yaml_extra="policy:\n  generation:\n    vllm_kwargs:\n      enforce_eager: true\n")
# Outside the recipe roots: upstream's suite test globs tests/test_suites/**/*.sh.
UPGRADE = Spec("dependency_upgrade_tests/grpo-deepscaler-1.5b-8K-megatron", "disabled", 1, 8)

RECIPES: tuple[Spec, ...] = (
    SFT, GYM, GB200, PERF_GB200, DISABLED, VERSION_FIRST, NO_CLUSTER, CONTEXT, VLM, FULL, MEGATRON, UPGRADE,
    Spec("llm/sft-llama3.1-8b-instruct-1n4g-fsdp2tp1", "release_gb200", 1, 4, base=None,
         standalone="sft:\n  max_num_steps: 250\n"),
    Spec("llm/dpo-llama3.1-8b-instruct-4n8g-megatron-tp4pp2-quick", "nightly", 4, 8,
         base="examples/configs/dpo.yaml", minutes=45),
    Spec("llm/grpo-qwen2.5-7b-instruct-1n8g-fsdp2tp1-temp0.8-topp0.9-topk50", "release", 1, 8),
    Spec("llm/grpo-llama3.2-1b-instruct-1n8g-megatron-rollouts.v3", "release", 1, 8),
    Spec("llm/grpo-qwen2.5-math-1.5b-instruct-1n8g-fsdp2tp1-16K", "release", 1, 8),
    Spec("llm/grpo-qwen3-8b-4n8g-megatron-gymlite", "nightly", 4, 8, base="examples/configs/grpo_math_1B_gym.yaml",
         yaml_cluster=(1, 8), subsets=("nightly_mcore",)),
    Spec("llm/mopd-qwen3-8b-2n8g-megatron", "nightly", 2, 8),
    Spec("llm/prorlv2-qwen3-1.7b-1n8g-fsdp2tp1", "nightly", 1, 8, base="examples/configs/prorlv2.v2.yaml"),
    Spec("llm/gdpo-llama3.1-8b-instruct-1n8g-fsdp2tp1", "release", 1, 8, base="examples/configs/gdpo_math_1B.yaml"),
    Spec("llm/ppo-qwen3-8b-base-2n8g-fsdp2tp1fp8-quick", "release", 2, 8,
         base="examples/configs/ppo_math_1B_megatron.yaml"),
    Spec("llm/rm-llama3.2-1b-1n8g-tp4pp2", "nightly", 1, 8, base="examples/configs/rm.yaml"),
    Spec("llm/distillation-qwen3-32b-to-1.7b-base-1n8g-megatron-tp2pp2cp2-pack", "nightly", 1, 8,
         base="examples/configs/distillation_math.yaml"),
    Spec("llm/performance/grpo-qwen3-32b-4n8g", "performance", 4, 8),
    Spec("llm/performance/dapo-qwen3-32b-2n4g", "performance_gb200", 2, 4),
    Spec("vlm/vlm_sft-qwen2.5-vl-3b-instruct-1n8g-dtensor2tp1", "release", 1, 8,
         base="examples/configs/sft_vlm_3B.yaml"),
)

SUITE_NAMES = ("nightly", "release", "nightly_gb200", "release_gb200", "performance", "performance_gb200",
               "nightly_mcore", "nightly_mcore_gb200", "disabled")
SUBSETS = {"nightly_mcore": "nightly", "nightly_mcore_gb200": "nightly_gb200"}  # subset suite -> its suite


def members(suite: str) -> list[Spec]:
    """The recipes a suite lists, in fixture order."""
    return [spec for spec in RECIPES if spec.suite == suite or suite in spec.subsets]


def suite_total(suite: str) -> int:
    """A suite's GPU-hours, from the specs."""
    return sum(spec.gpu_hours for spec in members(suite))


NIGHTLY_BUDGET = 4741  # upstream: test_nightly_compute_stays_below_4741_hours
BUDGETS = {"nightly": NIGHTLY_BUDGET}

# The configuration of a repository of upstream NeMo-RL's layout: docs/lint.md
# shows exactly this text (tests/unit/test_lint_realworld.py compares them).
CONFIG = """\
[tool.nrl-launch.lint]
suite-dir = "tests/test_suites"
recipe-roots = ["tests/test_suites/llm", "tests/test_suites/vlm"]
yaml-root = "examples/configs/recipes"
yaml-requires-script = true  # every recipe YAML has its script
extra-node-keys = ["env.*.num_gpu_nodes"]  # 6n8g = cluster.num_nodes 1 + env.gym.num_gpu_nodes 5
base-check = "merges"  # every key a recipe YAML sets is a key of its algo's base YAML
base-extra-keys = ["policy.draft", "policy.generation.vllm_kwargs"]  # keys recipes may add to it

# upstream's ALGO_MAPPING_TO_BASE_YAML
[tool.nrl-launch.lint.algos]
sft = "examples/configs/sft.yaml"
dpo = "examples/configs/dpo.yaml"
grpo = "examples/configs/grpo_math_1B.yaml"
vlm_grpo = "examples/configs/vlm_grpo_3B.yaml"
vlm_sft = "examples/configs/sft_vlm_3B.yaml"
vlm_mpo = "examples/configs/vlm_mpo.yaml"
distillation = "examples/configs/distillation_math.yaml"
rm = "examples/configs/rm.yaml"
dapo = "examples/configs/grpo_math_1B.yaml"
prorlv2 = "examples/configs/prorlv2.v2.yaml"
ppo = "examples/configs/ppo_math_1B_megatron.yaml"
mopd = "examples/configs/grpo_math_1B.yaml"
gdpo = "examples/configs/gdpo_math_1B.yaml"

[tool.nrl-launch.lint.suites.nightly]
budget = 4741  # GPU-hours of one nightly run
[tool.nrl-launch.lint.suites.release]
[tool.nrl-launch.lint.suites.nightly_gb200]
gpus-per-node = 4
[tool.nrl-launch.lint.suites.release_gb200]
gpus-per-node = 4
[tool.nrl-launch.lint.suites.performance]
[tool.nrl-launch.lint.suites.performance_gb200]
gpus-per-node = 4
[tool.nrl-launch.lint.suites.nightly_mcore]  # runs some nightly recipes again
subset-of = "nightly"
[tool.nrl-launch.lint.suites.nightly_mcore_gb200]
subset-of = "nightly_gb200"
gpus-per-node = 4
[tool.nrl-launch.lint.suites.disabled]
disabled = true
"""

# The repository's conventions that bend the default rules.
CONVENTIONS = """
[tool.nrl-launch.lint.severity]
name-version = "off"  # '.v3-tq_simple': the version tags the strategy here

[tool.nrl-launch.lint.per-file-ignores]
"tests/test_suites/llm/performance/*.sh" = ["name-strategy"]  # performance recipes: model + hardware only
"""


def pyproject(conventions: bool = True, extra: str = "") -> str:
    """The real-world fixture's pyproject.toml."""
    return '[project]\nname = "some-rl-project"\n\n' + CONFIG + (CONVENTIONS if conventions else "") + extra


def suite_text(name: str) -> str:
    """A suite file: comment header, blank lines, entries grouped by algo."""
    lines = [f"# {name} suite: one recipe per line, relative to the repository root", ""]
    previous = None
    for spec in members(name):
        algo = spec.path.rsplit("/", 1)[-1].split("-", 1)[0]
        if algo != previous:
            lines += ["", f"# {algo.upper()}"]
            previous = algo
        lines.append(spec.rel)
    return "\n".join(lines) + "\n"


def build_realworld(root: Path) -> Path:
    """The real-world fixture repository at ``root`` (see the module docstring)."""
    write(root, "pyproject.toml", pyproject())
    write(root, f"{SUITES_DIR}/llm/common.env", "# sourced by every recipe\n")
    write(root, f"{SUITES_DIR}/README.md", "# suites\n")
    for rel, text in BASES.items():
        write(root, rel, text)
    for spec in RECIPES:
        write(root, spec.rel, spec.script_text(), mode=0o755)
        write(root, spec.yaml_rel, spec.yaml_text())
    for name in SUITE_NAMES:
        write(root, f"{SUITES_DIR}/{name}.txt", suite_text(name))
    # output folders a run by hand leaves next to its recipe; one even holds a *.sh
    for spec in (SFT, PERF_GB200):
        out = f"{SUITES_DIR}/{spec.path}"
        write(root, f"{out}/logs/run.log", "step 1\n")
        write(root, f"{out}/ckpts/resume.sh", "#!/bin/bash\necho not a recipe\n")
    return root


def add_recipe(root: Path, spec: Spec) -> None:
    """Add one more recipe (script, YAML, suite entry) to a built fixture."""
    write(root, spec.rel, spec.script_text(), mode=0o755)
    write(root, spec.yaml_rel, spec.yaml_text())
    suite = root / f"{SUITES_DIR}/{spec.suite}.txt"
    suite.write_text(suite.read_text() + spec.rel + "\n")


def where(report: lint.LintReport) -> list[tuple[str, int | None, str]]:
    """(path, line, rule) of every finding."""
    return [(f.path, f.line, f.rule) for f in report.findings]


def errors(report: lint.LintReport) -> list[tuple[str, int | None, str]]:
    """(path, line, rule) of every error."""
    return [(f.path, f.line, f.rule) for f in report.findings if f.severity == "error"]
