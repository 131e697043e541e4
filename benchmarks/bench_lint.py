"""Benchmark ``nrl_launch.lint.run_lint`` on a generated recipe repository.

    python benchmarks/bench_lint.py [--recipes 1000] [--runs 7]

Generates a repository of the shape real recipe repositories have: recipe
scripts with CONFIG blocks in ``llm/``, ``vlm/`` and a nested
``llm/performance/`` folder (with output folders next to some), YAML mirrors
inheriting per-algo base YAMLs through ``defaults:`` (some moving a node to
``env.<x>.num_gpu_nodes``), GB200 recipes on 4-GPU nodes, six suites (one
disabled) and a ``[tool.nrl-launch.lint]`` section using every kind of key.
Then prints the median wall time of:

* ``run_lint`` alone, in-process, over ``--runs`` runs (import time excluded,
  reading pyproject.toml included);
* a fresh interpreter that imports ``nrl_launch.lint`` and lints once
  (import time included), over ``--runs`` runs.

The target is under 1 s for 1,000 recipes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

ALGOS = ("sft", "dpo", "grpo", "distillation", "dapo", "prorlv2")
MODELS = ("llama3.1-8b-instruct", "qwen2.5-7b-instruct", "qwen3-30ba3b", "gemma3-1b-it")
STRATEGIES = ("fsdp2tp1", "fsdp2tp8sp", "megatron-tp4pp2", "dtensor2tp1")
MODIFIERS = ("", "-actckpt", "-tq_simple", "-temp0.8-topp0.9", "-fp8-long")
SUITES = ("nightly", "release", "nightly_gb200", "performance", "nightly_mcore", "disabled")
PYPROJECT = """\
[tool.nrl-launch.lint]
suite-dir = "tests/test_suites"
recipe-roots = ["tests/test_suites/llm", "tests/test_suites/vlm"]
yaml-root = "examples/configs/recipes"
extra-node-keys = ["env.*.num_gpu_nodes"]
base-check = "{base_check}"

[tool.nrl-launch.lint.algos]
{algos}

[tool.nrl-launch.lint.suites.nightly]
budget = 1000000000
[tool.nrl-launch.lint.suites.release]
budget = 1000000000
[tool.nrl-launch.lint.suites.nightly_gb200]
gpus-per-node = 4
[tool.nrl-launch.lint.suites.performance]
[tool.nrl-launch.lint.suites.nightly_mcore]
[tool.nrl-launch.lint.suites.disabled]
disabled = true

[tool.nrl-launch.lint.per-file-ignores]
"tests/test_suites/llm/performance/*" = ["name-strategy"]
"""


def recipe_script(nodes: int, gpus: int, minutes: int) -> str:
    return (
        "#!/bin/bash\n"
        'SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)\n'
        'source "$SCRIPT_DIR/common.env"\n'
        "\n"
        "# ===== BEGIN CONFIG =====\n"
        f'NUM_NODES="${{NUM_NODES:-{nodes}}}"\n'
        f"GPUS_PER_NODE={gpus}\n"
        "STEPS_PER_RUN=40  # step_time ~ 95sec\n"
        "MAX_STEPS=${MAX_STEPS:-120}\n"
        "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up\n"
        f"NUM_MINUTES={minutes}\n"
        'JOB_REAPER_COMMENT=\'{"Reaper":{"exemptIdleTimeMins":"120","reason":"long init"}}\'\n'
        "# ===== END CONFIG =====\n"
        "\n"
        "exit_if_max_steps_reached\n"
        'uv run examples/run_grpo_math.py --config $CONFIG_PATH "$@"\n'
    )


def recipe_name(index: int) -> tuple[str, str, int, int]:
    """(folder below the suite folder, name, nodes, GPUs per node) of recipe ``index``."""
    nodes = 1 + index % 4
    model = f"{MODELS[index % len(MODELS)]}-r{index}"
    if index % 10 == 9:
        return "vlm", f"vlm_grpo-{model}-{nodes}n8g-dtensor2tp1", nodes, 8
    algo = ALGOS[index % len(ALGOS)]
    if index % 10 == 8:
        return "llm/performance", f"{algo}-{model}-{nodes}n4g", nodes, 4
    if index % 10 == 7:
        return "llm", f"{algo}-{model}-{nodes}n4g-fsdp2tp1", nodes, 4
    tail = f"{STRATEGIES[index % len(STRATEGIES)]}{MODIFIERS[index % len(MODIFIERS)]}"
    return "llm", f"{algo}-{model}-{nodes}n8g-{tail}.v{1 + index % 3}", nodes, 8


def recipe_yaml(algo: str, depth: int, index: int, nodes: int, gpus: int) -> str:
    """A recipe YAML deriving from its algo's base; every fifth moves a node to env."""
    env = ""
    policy_nodes = nodes
    if index % 5 == 0 and nodes > 1:
        policy_nodes = nodes - 1
        env = "env:\n  gym:\n    num_gpu_nodes: 1\n"
    return (f"defaults: {'../' * depth}{algo}.yaml\n"
            f"{algo}:\n  max_num_steps: {100 + index}\n"
            f"logger:\n  wandb:\n    name: r{index}\n"
            f"cluster:\n  num_nodes: {policy_nodes}\n  gpus_per_node: {gpus}\n{env}")


def generate(root: Path, count: int, base_check: str = "inherits") -> None:
    suites_dir = root / "tests/test_suites"
    recipes_dir = root / "examples/configs/recipes"
    for folder in ("llm/performance", "vlm"):
        (suites_dir / folder).mkdir(parents=True)
        (recipes_dir / folder).mkdir(parents=True)
    (suites_dir / "llm/common.env").write_text("# helpers\n")
    bases = (*ALGOS, "vlm_grpo")
    for algo in bases:
        lines = [f"{algo}:", "  max_num_steps: 100", "  val_period: 10"]
        lines += [f"  option_{i}: {i}" for i in range(60)]
        lines += ["policy:", "  model_name: some/model", "  train_global_batch_size: 512"]
        lines += ["cluster:", "  gpus_per_node: 8", "  num_nodes: 1"]
        lines += ["logger:", "  wandb:", "    name: base"]
        lines += ["env:", "  gym:", "    num_gpu_nodes: null"]
        (root / f"examples/configs/{algo}.yaml").write_text("\n".join(lines) + "\n")
    algo_lines = "\n".join(f'{algo} = "examples/configs/{algo}.yaml"' for algo in bases)
    (root / "pyproject.toml").write_text(PYPROJECT.format(algos=algo_lines, base_check=base_check))
    suites: dict[str, list[str]] = {suite: [f"# {suite}", ""] for suite in SUITES}
    for index in range(count):
        folder, name, nodes, gpus = recipe_name(index)
        script = suites_dir / folder / f"{name}.sh"
        script.write_text(recipe_script(nodes, gpus, 60 + index % 120))
        if index % 7 == 0:  # an output folder, as a run by hand leaves it
            (script.parent / name / "logs").mkdir(parents=True)
            (script.parent / name / "logs" / "run.log").write_text("step 1\n")
        depth = folder.count("/") + 2
        yaml_text = recipe_yaml(name.split("-", 1)[0], depth, index, nodes, gpus)
        (recipes_dir / folder / f"{name}.yaml").write_text(yaml_text)
        eight_gpu_suites = [suite for suite in SUITES if not suite.endswith("_gb200")]
        suite = "nightly_gb200" if gpus == 4 else eight_gpu_suites[index % len(eight_gpu_suites)]
        suites[suite].append(f"tests/test_suites/{folder}/{name}.sh")
    for suite, entries in suites.items():
        (suites_dir / f"{suite}.txt").write_text("\n".join(entries) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--base-check", choices=("inherits", "merges"), default="inherits",
                        help="what the algo map's base YAMLs mean (merges compares every key of every recipe YAML)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-lint-") as tmp:
        root = Path(tmp)
        generate(root, args.recipes, args.base_check)

        from nrl_launch import lint

        report = lint.run_lint(root)
        if report.findings:
            print(lint.render(report, "text"))
            raise SystemExit("generated repository is not lint-clean: benchmark is invalid")

        in_process = []
        for _ in range(args.runs):
            start = time.perf_counter()
            lint.run_lint(root)
            in_process.append(time.perf_counter() - start)

        code = (
            "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from nrl_launch import lint; "
            "sys.exit(1 if lint.run_lint(Path(sys.argv[2])).findings else 0)"
        )
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="")
        fresh = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code, str(TOOLS), str(root)], check=True, env=env)
            fresh.append(time.perf_counter() - start)

        startup = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            startup.append(time.perf_counter() - start)

    print(f"recipes: {report.scripts} scripts, {report.yamls} YAMLs, {report.suites} suites, "
          f"{report.files} files read")
    print(f"run_lint, import excluded:        median {statistics.median(in_process) * 1000:7.1f} ms"
          f"  (min {min(in_process) * 1000:.1f}, {args.runs} runs)")
    print(f"python -c import+run_lint:        median {statistics.median(fresh) * 1000:7.1f} ms"
          f"  (min {min(fresh) * 1000:.1f}, {args.runs} runs)")
    print(f"  of which bare interpreter start: median {statistics.median(startup) * 1000:7.1f} ms")
    print(f"base-check: {args.base_check}; target: under 1000 ms for 1,000 recipes")


if __name__ == "__main__":
    main()
