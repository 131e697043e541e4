"""Repositories for the lint tests, built in tmp_path.

:func:`build_realworld` writes a recipe repository of the shape real ones
have (the shapes issue 10 lists: eight suite files with comments and blank
lines, a disabled suite, nested recipe folders, many algos mapped to base
YAMLs, names that bend the grammar, a YAML whose extra ``env.*.num_gpu_nodes``
add to ``cluster.num_nodes``, GB200 recipes on 4-GPU nodes, output folders
next to recipes) with a ``[tool.nrl-launch.lint]`` that encodes its
conventions. Every recipe is described by a :class:`Spec`, so a test can
compute what a recipe asks for without the linter.
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
    base: str = "examples/configs/grpo_math_1B.yaml"
    yaml_cluster: tuple[int, int] | None = None  # cluster.num_nodes / gpus_per_node; None: name's
    yaml_extra: str = ""
    header: str = ""
    dryrun_fails: bool = False
    state_gpus: bool = True  # write GPUS_PER_NODE into CONFIG

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
        """The recipe YAML: defaults: its base, then its cluster."""
        parent = posixpath.relpath(self.base, posixpath.dirname(self.yaml_rel))
        nodes, gpus = self.yaml_cluster or (self.nodes, self.gpus)
        return f"defaults: {parent}\ncluster:\n  num_nodes: {nodes}\n  gpus_per_node: {gpus}\n{self.yaml_extra}"


BASES = {
    "examples/configs/sft.yaml": "sft:\n  max_num_steps: 10\n",
    "examples/configs/dpo.yaml": "dpo:\n  max_num_steps: 10\n",
    "examples/configs/grpo_math_1B.yaml": "grpo:\n  num_prompts_per_step: 32\n",
    "examples/configs/grpo_gym.yaml": "defaults: grpo_math_1B.yaml\nenv:\n  gym:\n    num_gpu_nodes: 3\n",
    "examples/configs/dapo.yaml": "defaults: grpo_math_1B.yaml\ngrpo:\n  overlong_filtering: true\n",
    "examples/configs/mopd.yaml": "mopd:\n  teachers: 2\n",
    "examples/configs/prorlv2.yaml": "defaults: grpo_math_1B.yaml\nprorl:\n  reset_ref: true\n",
    "examples/configs/gdpo.yaml": "gdpo:\n  groups: 4\n",
    "examples/configs/ppo.yaml": "ppo:\n  value_coef: 0.5\n",
    "examples/configs/rm.yaml": "rm:\n  margin: 0.1\n",
    "examples/configs/distillation_math.yaml": "distillation:\n  topk_logits_k: 64\n",
    "examples/configs/vlm_grpo_3B.yaml": "defaults: grpo_math_1B.yaml\ncluster:\n  gpus_per_node: 2\n",
    "examples/configs/sft_vlm_3B.yaml": "defaults: sft.yaml\n",
}

GYM = Spec("llm/grpo-qwen3-30ba3b-6n8g-megatron-gym", "nightly", 6, 8, base="examples/configs/grpo_gym.yaml",
           yaml_cluster=(1, 8), yaml_extra="env:\n  gym:\n    num_gpu_nodes: 5\n")
GB200 = Spec("llm/grpo-llama3.1-8b-instruct-4n4g-fsdp2tp1", "nightly_gb200", 4, 4)
PERF_GB200 = Spec("llm/performance/grpo-qwen3-32b-4n4g", "performance_gb200", 4, 4)
DISABLED = Spec("llm/grpo-llama3.1-70b-instruct-8n8g-megatron-tp8pp4", "disabled", 8, 8, dryrun_fails=True)
VERSION_FIRST = Spec("llm/grpo-qwen3-8b-1n8g-fsdp2tp1.v3-tq_simple", "nightly", 1, 8)
NO_CLUSTER = Spec("llm/dapo-qwen2.5-7b.v2", "release", 2, 8, base="examples/configs/dapo.yaml",
                  header="# nrl-lint: disable=name-cluster  (dapo recipes are named by model only)")
CONTEXT = Spec("llm/grpo-deepscaler-1.5b-8K", "nightly", 1, 8)
SFT = Spec("llm/sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2", "nightly", 1, 8, base="examples/configs/sft.yaml",
           minutes=30, steps=(20, 40))
VLM = Spec("vlm/vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-dtensor2tp1.v1", "nightly", 1, 2,
           base="examples/configs/vlm_grpo_3B.yaml")

RECIPES: tuple[Spec, ...] = (
    SFT, GYM, GB200, PERF_GB200, DISABLED, VERSION_FIRST, NO_CLUSTER, CONTEXT, VLM,
    Spec("llm/sft-llama3.1-8b-instruct-1n4g-fsdp2tp1", "release_gb200", 1, 4, base="examples/configs/sft.yaml"),
    Spec("llm/dpo-llama3.1-8b-instruct-4n8g-megatron-tp4pp2-quick", "nightly", 4, 8,
         base="examples/configs/dpo.yaml", minutes=45),
    Spec("llm/grpo-llama3.1-8b-instruct-1n8g-megatron_generation", "nightly_mcore", 1, 8),
    Spec("llm/grpo-qwen2.5-7b-instruct-1n8g-fsdp2tp1-temp0.8-topp0.9-topk50", "release", 1, 8),
    Spec("llm/grpo-llama3.2-1b-instruct-1n8g-megatron-rollouts.v3", "release", 1, 8),
    Spec("llm/grpo-qwen2.5-math-1.5b-instruct-1n8g-fsdp2tp1-16K", "release", 1, 8),
    Spec("llm/grpo-qwen3-8b-4n8g-megatron-gymlite", "nightly_mcore", 4, 8, base="examples/configs/grpo_gym.yaml",
         yaml_cluster=(1, 8)),
    Spec("llm/mopd-qwen3-8b-2n8g-megatron", "nightly", 2, 8, base="examples/configs/mopd.yaml"),
    Spec("llm/prorlv2-qwen3-1.7b-1n8g-fsdp2tp1", "nightly", 1, 8, base="examples/configs/prorlv2.yaml"),
    Spec("llm/gdpo-llama3.1-8b-instruct-1n8g-fsdp2tp1", "release", 1, 8, base="examples/configs/gdpo.yaml"),
    Spec("llm/ppo-qwen3-8b-base-2n8g-fsdp2tp1fp8-quick", "release", 2, 8, base="examples/configs/ppo.yaml"),
    Spec("llm/rm-llama3.2-1b-1n8g-tp4pp2", "nightly", 1, 8, base="examples/configs/rm.yaml"),
    Spec("llm/distillation-qwen3-32b-to-1.7b-base-1n8g-megatron-tp2pp2cp2-pack", "nightly", 1, 8,
         base="examples/configs/distillation_math.yaml"),
    Spec("llm/performance/grpo-qwen3-32b-4n8g", "performance", 4, 8),
    Spec("llm/performance/dapo-qwen3-32b-2n4g", "performance_gb200", 2, 4, base="examples/configs/dapo.yaml"),
    Spec("vlm/vlm_sft-qwen2.5-vl-3b-instruct-1n8g-dtensor2tp1", "release", 1, 8,
         base="examples/configs/sft_vlm_3B.yaml"),
)

SUITE_NAMES = ("nightly", "release", "nightly_gb200", "release_gb200", "performance", "performance_gb200",
               "nightly_mcore", "disabled")
GB200_SUITES = ("nightly_gb200", "release_gb200", "performance_gb200")


def suite_total(suite: str) -> int:
    """A suite's GPU-hours, from the specs."""
    return sum(spec.gpu_hours for spec in RECIPES if spec.suite == suite)


BUDGETS = {"nightly": suite_total("nightly") + 50, "release": suite_total("release") + 50}

ALGOS = {
    "sft": "examples/configs/sft.yaml", "dpo": "examples/configs/dpo.yaml",
    "grpo": "examples/configs/grpo_math_1B.yaml", "dapo": "examples/configs/dapo.yaml",
    "mopd": "examples/configs/mopd.yaml", "prorlv2": "examples/configs/prorlv2.yaml",
    "gdpo": "examples/configs/gdpo.yaml", "ppo": "examples/configs/ppo.yaml", "rm": "examples/configs/rm.yaml",
    "distillation": "examples/configs/distillation_math.yaml", "vlm_grpo": "examples/configs/vlm_grpo_3B.yaml",
    "vlm_sft": "examples/configs/sft_vlm_3B.yaml",
}

# The repository's conventions that bend the default rules.
CONVENTIONS = """
[tool.nrl-launch.lint.severity]
name-version = "off"  # '.v3-tq_simple': the version tags the strategy here

[tool.nrl-launch.lint.per-file-ignores]
"tests/test_suites/llm/performance/*.sh" = ["name-strategy"]  # performance recipes: model + hardware only
"""


def pyproject(conventions: bool = True, extra: str = "") -> str:
    """The real-world fixture's pyproject.toml."""
    lines = [
        "[project]", 'name = "some-rl-project"', "",
        "[tool.nrl-launch.lint]",
        'suite-dir = "tests/test_suites"',
        'recipe-roots = ["tests/test_suites/llm", "tests/test_suites/vlm"]',
        'yaml-root = "examples/configs/recipes"',
        'extra-node-keys = ["env.*.num_gpu_nodes"]', "",
        "[tool.nrl-launch.lint.algos]",
        *(f'{algo} = "{base}"' for algo, base in ALGOS.items()), "",
    ]
    for name in SUITE_NAMES:
        lines.append(f"[tool.nrl-launch.lint.suites.{name}]")
        if name in BUDGETS:
            lines.append(f"budget = {BUDGETS[name]}")
        if name in GB200_SUITES:
            lines.append("gpus-per-node = 4")
        if name == "disabled":
            lines.append("disabled = true")
        lines.append("")
    return "\n".join(lines) + (CONVENTIONS if conventions else "") + extra


def suite_text(name: str) -> str:
    """A suite file: comment header, blank lines, entries grouped by algo."""
    lines = [f"# {name} suite: one recipe per line, relative to the repository root", ""]
    previous = None
    for spec in RECIPES:
        if spec.suite != name:
            continue
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
