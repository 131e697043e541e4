"""Benchmark ``nrl_launch.lint.run_lint`` on a generated 250-recipe repository.

    python benchmarks/bench_lint.py [--recipes 250] [--runs 7]

Generates recipe scripts (with CONFIG blocks), YAML mirrors inheriting from a
few parents through ``defaults:``, and three suites in a temporary folder,
then prints the median wall time of:

* ``run_lint`` alone, in-process, over ``--runs`` runs (import time excluded);
* a fresh interpreter that imports ``nrl_launch.lint`` and lints once
  (import time included), over ``--runs`` runs.
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

ALGOS = ("sft", "dpo", "grpo", "distillation")
MODELS = ("llama3.1-8b-instruct", "qwen2.5-7b-instruct", "qwen3-30ba3b", "gemma3-1b-it")
STRATEGIES = ("fsdp2tp1", "fsdp2tp8sp", "megatron-tp4pp2", "dtensor2tp1")
MODIFIERS = ("", "-actckpt", "-quick", "-fp8-long")


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


def generate(root: Path, count: int) -> None:
    suites_dir = root / "tests/test_suites"
    recipes_dir = root / "examples/configs/recipes"
    for kind in ("llm", "vlm"):
        (suites_dir / kind).mkdir(parents=True)
        (recipes_dir / kind).mkdir(parents=True)
        (suites_dir / kind / "common.env").write_text("# helpers\n")
    for algo in ALGOS:
        lines = [f"{algo}:", "  max_num_steps: 100", "  val_period: 10"]
        lines += [f"  option_{i}: {i}" for i in range(60)]
        lines += ["policy:", "  model_name: some/model", "  train_global_batch_size: 512"]
        lines += ["cluster:", "  gpus_per_node: 8", "  num_nodes: 1"]
        (root / f"examples/configs/{algo}.yaml").write_text("\n".join(lines) + "\n")
    suites: dict[str, list[str]] = {"nightly": [], "release": [], "weekly": []}
    for index in range(count):
        vlm = index % 10 == 9
        algo = "grpo" if vlm else ALGOS[index % len(ALGOS)]
        nodes = 1 + index % 4
        gpus = 2 if vlm else 8
        name = (
            f"{'vlm_' if vlm else ''}{algo}-{MODELS[index % len(MODELS)]}-r{index}-{nodes}n{gpus}g-"
            f"{STRATEGIES[index % len(STRATEGIES)]}{MODIFIERS[index % len(MODIFIERS)]}.v{1 + index % 3}"
        )
        kind = "vlm" if vlm else "llm"
        (suites_dir / kind / f"{name}.sh").write_text(recipe_script(nodes, gpus, 60 + index % 120))
        (recipes_dir / kind / f"{name}.yaml").write_text(
            f"defaults: ../../{algo}.yaml\n"
            f"{algo}:\n  max_num_steps: {100 + index}\n"
            f"logger:\n  wandb:\n    name: {name}\n"
            f"cluster:\n  num_nodes: {nodes}\n  gpus_per_node: {gpus}\n"
        )
        suites[list(suites)[index % len(suites)]].append(f"tests/test_suites/{kind}/{name}.sh")
    for suite, entries in suites.items():
        (suites_dir / f"{suite}.txt").write_text(f"# {suite}\n\n" + "\n".join(entries) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", type=int, default=250)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-lint-") as tmp:
        root = Path(tmp)
        generate(root, args.recipes)

        from nrl_launch import lint

        budgets = {"nightly": 10**9, "release": 10**9, "weekly": 10**9}
        report = lint.run_lint(root, budgets)
        if report.findings:
            print(lint.render(report, "text"))
            raise SystemExit("generated repository is not lint-clean: benchmark is invalid")

        in_process = []
        for _ in range(args.runs):
            start = time.perf_counter()
            lint.run_lint(root, budgets)
            in_process.append(time.perf_counter() - start)

        code = (
            "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from nrl_launch import lint; "
            "sys.exit(1 if lint.run_lint(Path(sys.argv[2]), {}).findings else 0)"
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

    print(f"recipes: {report.scripts} scripts, {report.yamls} YAMLs, {report.suites} suites")
    print(f"run_lint, import excluded:        median {statistics.median(in_process) * 1000:7.1f} ms"
          f"  (min {min(in_process) * 1000:.1f}, {args.runs} runs)")
    print(f"python -c import+run_lint:        median {statistics.median(fresh) * 1000:7.1f} ms"
          f"  (min {min(fresh) * 1000:.1f}, {args.runs} runs)")
    print(f"  of which bare interpreter start: median {statistics.median(startup) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
