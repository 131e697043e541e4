#!/usr/bin/env python3
"""A tiny, deterministic, CPU-only stand-in for an RL/post-training job.

The recipe scripts under ``tests/test_suites/`` call this program instead of a
real GPU trainer, so the whole launch pipeline (CONFIG block, snapshot, chained
Slurm jobs, resume from checkpoint, metric checks) can be exercised anywhere.
Only the Python standard library and PyYAML are used.

Usage::

    cpu_trainer.py --config RECIPE.yaml [--ckpt-dir DIR] [--metrics FILE]
                   [--log-dir DIR] [--steps-per-run N] [--max-steps N]
                   [--dry-run] [OVERRIDE ...]

OVERRIDE is Hydra-like: ``a.b=c``, ``+a.b=c`` or ``++a.b=c`` set the key
(missing keys are created, whichever prefix is used) and ``~a.b`` deletes
it. The value is read as a YAML scalar (``3`` is an int, ``true`` a bool,
``[1, 2]`` a list); anything that is not a plain value stays a string, so
``++git_meta=abc123-fix-thing`` and ``++container=`` are always accepted.
Keys are split on dots only, so metric names with slashes work:
``checks.train/loss.max=0.5``.

The algorithm is chosen by the top-level ``algorithm`` key (sft, dpo or grpo):

* sft  - logistic regression trained with binary cross-entropy;
* dpo  - linear scorer trained with the DPO preference loss against a frozen
         reference (its initial weights);
* grpo - softmax policy over a few actions, group-relative advantages,
         reward-weighted log-likelihood (REINFORCE with a group baseline).

Each invocation trains at most ``--steps-per-run`` steps starting from the
checkpoint in ``--ckpt-dir`` and never goes past ``--max-steps``. The
checkpoint (parameters, Adam moments, RNG state, step) and the metrics file
(``{"train/loss": {"1": 0.69, ...}, ...}``) are JSON, rewritten atomically
(temporary file + rename). Floats survive the JSON round trip exactly, so N
resumed runs produce bit-identical metrics to one uninterrupted run.

When the last step (``--max-steps``) has been trained, the ``checks:``
section of the config is evaluated on the final step's metrics and printed::

    Metric Checks
      [PASS] train/loss@40 = 0.1234 < 0.5
      [FAIL] train/accuracy@40 = 0.8 > 0.9

A check is ``<metric>: {max: X}`` (PASS when value < X) and/or
``{min: X}`` (PASS when value > X); ``step: N`` checks another step than the
last. To force a failure (for tests), pass ``checks.train/accuracy.min=2``
(accuracy is at most 1), or set ``NRL_FORCE_FAILING_CHECK=1`` in the
recipe's environment, which makes the recipe pass that override.

Exit status: 0 on success (all checks PASS, or final step not reached yet),
1 when a metric check FAILs, 2 on a usage/config error.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import tempfile
import time

import yaml

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
CHECKPOINT_NAME = "checkpoint.json"
CHECKPOINT_FORMAT = 1


class UsageError(Exception):
    """Bad command line or configuration."""


# --------------------------------------------------------------------------
# configuration: YAML with `defaults:` inheritance, plus overrides
# --------------------------------------------------------------------------


def deep_merge(base: dict, update: dict) -> dict:
    """Return ``base`` updated recursively by ``update`` (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(path: str, _seen: tuple[str, ...] = ()) -> dict:
    """Load a recipe YAML; ``defaults:`` (a path or list of paths relative to
    the file) names parent configs that are merged first, in order."""
    real = os.path.realpath(path)
    if real in _seen:
        raise UsageError(f"{path}: circular 'defaults:' chain")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the top level must be a mapping")
    parents = data.pop("defaults", None) or []
    if isinstance(parents, str):
        parents = [parents]
    merged: dict = {}
    for parent in parents:
        parent_path = os.path.join(os.path.dirname(path), str(parent))
        merged = deep_merge(merged, load_config(parent_path, _seen + (real,)))
    return deep_merge(merged, data)


def parse_value(text: str):
    """Read an override value as a YAML scalar/list; fall back to the raw text."""
    if text == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict):
        return text
    return value


def apply_override(config: dict, override: str) -> None:
    """Apply one Hydra-style override to ``config`` in place."""
    if override.startswith("~"):
        keys = override[1:].split("=", 1)[0].split(".")
        node = config
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                return
        if isinstance(node, dict):
            node.pop(keys[-1], None)
        return
    body = override.lstrip("+")
    if "=" not in body:
        raise UsageError(f"override {override!r} is not of the form key=value")
    dotted, raw = body.split("=", 1)
    keys = dotted.split(".")
    if not dotted or any(not key for key in keys):
        raise UsageError(f"override {override!r} has an empty key")
    node = config
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = parse_value(raw)


def get(config: dict, dotted: str, default=None):
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def as_int(config: dict, dotted: str, default: int) -> int:
    value = get(config, dotted, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise UsageError(f"config {dotted}={value!r} must be an integer")
    return int(value)


def as_float(config: dict, dotted: str, default: float) -> float:
    value = get(config, dotted, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"config {dotted}={value!r} must be a number")
    return float(value)


# --------------------------------------------------------------------------
# small numeric helpers (lists of floats)
# --------------------------------------------------------------------------


def dot(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def log_sigmoid(z: float) -> float:
    if z >= 0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = math.fsum(exps)
    return [e / total for e in exps]


def gauss_vector(rng: random.Random, size: int, scale: float = 1.0) -> list[float]:
    return [rng.gauss(0.0, scale) for _ in range(size)]


# --------------------------------------------------------------------------
# the three algorithms: data, initial parameters, loss + gradient per step
# --------------------------------------------------------------------------


class Task:
    """Common shape: ``init_params()`` and ``step(params, rng)`` returning
    (gradient, metrics); the metrics of a step are measured before its update."""

    def __init__(self, config: dict, algo: str) -> None:
        self.config = config
        self.algo = algo
        self.seed = as_int(config, f"{algo}.seed", 42)
        text = as_int(config, "data.num_features", 8)
        image = as_int(config, "data.image_features", 0)  # VLM recipes
        self.dim = text + image
        if self.dim < 1:
            raise UsageError("data.num_features + data.image_features must be >= 1")
        self.num_samples = as_int(config, "data.num_samples", 256)
        self.batch = as_int(config, "policy.train_global_batch_size", 32)
        self.noise = as_float(config, "data.noise", 0.1)
        if self.num_samples < 1 or self.batch < 1:
            raise UsageError("data.num_samples and policy.train_global_batch_size must be >= 1")
        data_rng = random.Random(as_int(config, "data.seed", 1234))
        self.build_data(data_rng)

    def num_params(self) -> int:
        return self.dim + 1

    def init_params(self) -> list[float]:
        return gauss_vector(random.Random(self.seed), self.num_params(), 0.01)

    def sample_indices(self, rng: random.Random) -> list[int]:
        return [rng.randrange(self.num_samples) for _ in range(self.batch)]


class SFTTask(Task):
    def build_data(self, rng: random.Random) -> None:
        truth = gauss_vector(rng, self.dim)
        self.xs, self.ys = [], []
        for _ in range(self.num_samples):
            x = gauss_vector(rng, self.dim)
            score = dot(truth, x) + rng.gauss(0.0, self.noise * math.sqrt(self.dim))
            self.xs.append(x)
            self.ys.append(1.0 if score > 0 else 0.0)

    def step(self, params, rng):
        w, b = params[:-1], params[-1]
        grad = [0.0] * len(params)
        loss = 0.0
        for i in self.sample_indices(rng):
            x, y = self.xs[i], self.ys[i]
            z = dot(w, x) + b
            loss -= log_sigmoid(z) if y else log_sigmoid(-z)
            p = sigmoid(z)
            err = (p - y) / self.batch
            for j in range(self.dim):
                grad[j] += err * x[j]
            grad[-1] += err
        return grad, {"train/loss": loss / self.batch, "train/accuracy": self.accuracy(params)}

    def accuracy(self, params) -> float:
        """Accuracy on the whole (tiny) training set: smoother than a batch's."""
        w, b = params[:-1], params[-1]
        hits = sum(1 for x, y in zip(self.xs, self.ys, strict=True) if (dot(w, x) + b > 0) == (y > 0.5))
        return hits / self.num_samples


class DPOTask(Task):
    def num_params(self) -> int:
        return self.dim

    def build_data(self, rng: random.Random) -> None:
        truth = gauss_vector(rng, self.dim)
        self.pairs = []
        for _ in range(self.num_samples):
            a, b = gauss_vector(rng, self.dim), gauss_vector(rng, self.dim)
            margin = dot(truth, a) - dot(truth, b) + rng.gauss(0.0, self.noise * math.sqrt(self.dim))
            chosen, rejected = (a, b) if margin > 0 else (b, a)
            self.pairs.append([c - r for c, r in zip(chosen, rejected, strict=True)])
        self.beta = as_float(self.config, "dpo.reference_policy_kl_penalty", 0.5)
        self.reference = self.init_params()  # frozen reference policy

    def step(self, params, rng):
        grad = [0.0] * len(params)
        loss = margin_sum = 0.0
        delta = [p - r for p, r in zip(params, self.reference, strict=True)]
        for i in self.sample_indices(rng):
            diff = self.pairs[i]
            margin = self.beta * dot(delta, diff)  # beta * (policy - reference) log-ratio gap
            loss -= log_sigmoid(margin)
            margin_sum += margin
            coeff = -(1.0 - sigmoid(margin)) * self.beta / self.batch
            for j in range(self.dim):
                grad[j] += coeff * diff[j]
        return grad, {
            "train/loss": loss / self.batch,
            "train/accuracy": sum(1 for diff in self.pairs if dot(delta, diff) > 0) / self.num_samples,
            "train/rewards_margin": margin_sum / self.batch,
        }


class GRPOTask(Task):
    def __init__(self, config: dict, algo: str) -> None:
        self.actions = as_int(config, "grpo.num_actions", 4)
        self.group = as_int(config, "grpo.num_generations_per_prompt", 8)
        if self.actions < 2 or self.group < 1:
            raise UsageError("grpo.num_actions must be >= 2 and grpo.num_generations_per_prompt >= 1")
        self.normalize = bool(get(config, "grpo.normalize_rewards", True))
        super().__init__(config, algo)
        self.prompts = as_int(config, "grpo.num_prompts_per_step", 8)

    def num_params(self) -> int:
        return self.actions * (self.dim + 1)

    def build_data(self, rng: random.Random) -> None:
        truth = [gauss_vector(rng, self.dim) for _ in range(self.actions)]
        self.xs, self.answers = [], []
        for _ in range(self.num_samples):
            x = gauss_vector(rng, self.dim)
            scores = [dot(t, x) for t in truth]
            self.xs.append(x)
            self.answers.append(scores.index(max(scores)))

    def sample_indices(self, rng: random.Random) -> list[int]:
        return [rng.randrange(self.num_samples) for _ in range(self.prompts)]

    def step(self, params, rng):
        width = self.dim + 1
        grad = [0.0] * len(params)
        total = self.prompts * self.group
        loss = reward_sum = 0.0
        for i in self.sample_indices(rng):
            x, answer = self.xs[i], self.answers[i]
            logits = [dot(params[k * width:k * width + self.dim], x) + params[k * width + self.dim]
                      for k in range(self.actions)]
            probs = softmax(logits)
            samples = [rng.choices(range(self.actions), weights=probs)[0] for _ in range(self.group)]
            rewards = [1.0 if a == answer else 0.0 for a in samples]
            mean = math.fsum(rewards) / self.group
            std = math.sqrt(math.fsum((r - mean) ** 2 for r in rewards) / self.group)
            reward_sum += math.fsum(rewards)
            for action, reward in zip(samples, rewards, strict=True):
                adv = reward - mean
                if self.normalize:
                    adv /= std + 1e-6
                loss -= adv * math.log(max(probs[action], 1e-300)) / total
                # d(-adv * log p_a)/d logit_k = -adv * (1[k == a] - p_k)
                for k in range(self.actions):
                    g = -adv * ((1.0 if k == action else 0.0) - probs[k]) / total
                    base = k * width
                    for j in range(self.dim):
                        grad[base + j] += g * x[j]
                    grad[base + self.dim] += g
        return grad, {
            "train/loss": loss,
            "train/reward": reward_sum / total,
            "train/accuracy": self.greedy_accuracy(params),
        }

    def greedy_accuracy(self, params) -> float:
        """Fraction of all prompts whose most likely action is the right one."""
        width = self.dim + 1
        hits = 0
        for x, answer in zip(self.xs, self.answers, strict=True):
            logits = [dot(params[k * width:k * width + self.dim], x) + params[k * width + self.dim]
                      for k in range(self.actions)]
            hits += 1 if logits.index(max(logits)) == answer else 0
        return hits / self.num_samples


TASKS = {"sft": SFTTask, "dpo": DPOTask, "grpo": GRPOTask}


# --------------------------------------------------------------------------
# optimizer
# --------------------------------------------------------------------------


class Adam:
    def __init__(self, config: dict, size: int) -> None:
        self.lr = as_float(config, "policy.optimizer.lr", 0.05)
        betas = get(config, "policy.optimizer.betas", [0.9, 0.999])
        if not (isinstance(betas, list) and len(betas) == 2):
            raise UsageError("policy.optimizer.betas must be a list of two numbers")
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = as_float(config, "policy.optimizer.eps", 1e-8)
        self.weight_decay = as_float(config, "policy.optimizer.weight_decay", 0.0)
        self.max_grad_norm = as_float(config, "policy.max_grad_norm", 0.0)
        self.m = [0.0] * size
        self.v = [0.0] * size
        self.t = 0

    def update(self, params: list[float], grad: list[float]) -> float:
        """Apply one step in place; return the gradient norm before clipping."""
        norm = math.sqrt(math.fsum(g * g for g in grad))
        if self.max_grad_norm > 0 and norm > self.max_grad_norm:
            scale = self.max_grad_norm / norm
            grad = [g * scale for g in grad]
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        for j, g in enumerate(grad):
            self.m[j] = self.beta1 * self.m[j] + (1.0 - self.beta1) * g
            self.v[j] = self.beta2 * self.v[j] + (1.0 - self.beta2) * g * g
            step = self.lr * (self.m[j] / c1) / (math.sqrt(self.v[j] / c2) + self.eps)
            params[j] -= step + self.lr * self.weight_decay * params[j]
        return norm

    def state(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load(self, state: dict) -> None:
        self.m, self.v, self.t = list(state["m"]), list(state["v"]), int(state["t"])


# --------------------------------------------------------------------------
# atomic JSON files, checkpoint and metrics
# --------------------------------------------------------------------------


def write_json_atomic(path: str, data) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str, default):
    if not path or not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def rng_state_to_json(state) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def rng_state_from_json(data) -> tuple:
    version, internal, gauss_next = data
    return (version, tuple(internal), gauss_next)


# --------------------------------------------------------------------------
# metric checks
# --------------------------------------------------------------------------


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value == value and abs(value) < 1e6 else repr(value)
    return str(value)


def run_checks(checks, metrics: dict, final_step: int) -> tuple[list[str], bool]:
    """Evaluate the ``checks:`` section; return (printed lines, all passed)."""
    lines, ok = [], True
    if not checks:
        return ["  (no checks configured)"], True
    if not isinstance(checks, dict):
        raise UsageError("checks: must map metric names to {max: X} / {min: X}")
    for name, spec in checks.items():
        if not isinstance(spec, dict):
            raise UsageError(f"checks.{name} must be a mapping like {{max: 0.5}}")
        step = spec.get("step", final_step)
        value = metrics.get(name, {}).get(str(step))
        for kind, op in (("max", "<"), ("min", ">")):
            if kind not in spec:
                continue
            bound = spec[kind]
            if value is None:
                passed = False
                shown = "missing"
            else:
                try:
                    passed = value < bound if kind == "max" else value > bound
                except TypeError:
                    raise UsageError(f"checks.{name}.{kind}={bound!r} is not a number") from None
                shown = fmt(value)
            ok = ok and passed
            lines.append(f"  [{'PASS' if passed else 'FAIL'}] {name}@{step} = {shown} {op} {fmt(bound)}")
        unknown = set(spec) - {"max", "min", "step"}
        if unknown:
            raise UsageError(f"checks.{name}: unknown keys {sorted(unknown)} (use max, min, step)")
    return lines, ok


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Deterministic CPU stand-in trainer for recipe test suites.",
        epilog="Exit status: 0 ok, 1 a metric check failed, 2 usage/config error.",
    )
    parser.add_argument("--config", required=True, help="recipe YAML")
    parser.add_argument("--ckpt-dir", help="checkpoint folder (resume from it)")
    parser.add_argument("--metrics", help="metrics JSON file (appended to)")
    parser.add_argument("--log-dir", help="folder for the resolved config")
    parser.add_argument("--steps-per-run", type=int, help="steps to train in this invocation")
    parser.add_argument("--max-steps", type=int, help="total steps of the experiment")
    parser.add_argument("--dry-run", action="store_true", help="resolve and print the config only")
    parser.add_argument("overrides", nargs="*", help="a.b=c, +a.b=c, ++a.b=c, ~a.b")
    return parser.parse_intermixed_args(argv)


def resolve(args) -> tuple[dict, str, int, int]:
    config = load_config(args.config)
    for override in args.overrides:
        apply_override(config, override)
    algo = config.get("algorithm")
    if algo not in TASKS:
        raise UsageError(f"config 'algorithm' must be one of {sorted(TASKS)}, got {algo!r}")
    max_steps = args.max_steps if args.max_steps is not None else as_int(config, f"{algo}.max_num_steps", 10)
    steps_per_run = args.steps_per_run if args.steps_per_run is not None else max_steps
    if max_steps < 1 or steps_per_run < 1:
        raise UsageError("--max-steps and --steps-per-run must be >= 1")
    config.setdefault(algo, {})
    if isinstance(config[algo], dict):
        config[algo]["max_num_steps"] = max_steps
    return config, algo, max_steps, steps_per_run


def _resume(ckpt_path: str, algo: str, task, optimizer: Adam, rng: random.Random) -> tuple[int, list]:
    """(step, params) from the checkpoint, restoring optimizer and RNG; a fresh start without one."""
    ckpt = read_json(ckpt_path, None)
    if ckpt is None:
        print(f"[cpu_trainer] no checkpoint at {ckpt_path}: starting from scratch", flush=True)
        return 0, task.init_params()
    if ckpt.get("algorithm") != algo or len(ckpt.get("params", [])) != task.num_params():
        raise UsageError(f"checkpoint {ckpt_path} does not match this config "
                         f"(algorithm {ckpt.get('algorithm')!r}, {len(ckpt.get('params', []))} params)")
    optimizer.load(ckpt["optimizer"])
    rng.setstate(rng_state_from_json(ckpt["rng_state"]))
    print(f"[cpu_trainer] resumed from {ckpt_path} at step {ckpt['step']}", flush=True)
    return int(ckpt["step"]), list(ckpt["params"])


def _checks(config: dict, metrics: dict, max_steps: int) -> int:
    """Print the Metric Checks section; the exit status they give."""
    lines, ok = run_checks(copy.deepcopy(config.get("checks") or {}), metrics, max_steps)
    print("Metric Checks")
    for line in lines:
        print(line)
    sys.stdout.flush()
    return EXIT_OK if ok else EXIT_CHECK_FAILED


def train(args) -> int:
    """One run: resume, train up to STEPS_PER_RUN steps, checkpoint, and check at MAX_STEPS."""
    config, algo, max_steps, steps_per_run = resolve(args)
    name = get(config, "logger.wandb.name", "")
    print(f"[cpu_trainer] algorithm={algo} model={get(config, 'policy.model_name', '?')} "
          f"cluster={get(config, 'cluster.num_nodes', '?')}x{get(config, 'cluster.gpus_per_node', '?')} "
          f"wandb={get(config, 'logger.wandb.project', '')}/{name} "
          f"git_meta={config.get('git_meta', '')} container={config.get('container', '')}", flush=True)
    task = TASKS[algo](config, algo)
    if args.dry_run:
        print(yaml.safe_dump(config, sort_keys=False).rstrip())
        print(f"[cpu_trainer] dry run: {task.num_params()} parameters, "
              f"max_steps={max_steps} steps_per_run={steps_per_run}; nothing trained")
        return EXIT_OK
    if not args.ckpt_dir or not args.metrics:
        raise UsageError("--ckpt-dir and --metrics are required unless --dry-run")

    ckpt_path = os.path.join(args.ckpt_dir, CHECKPOINT_NAME)
    optimizer = Adam(config, task.num_params())
    rng = random.Random(task.seed + 1)
    step, params = _resume(ckpt_path, algo, task, optimizer, rng)
    metrics = read_json(args.metrics, {})
    if args.log_dir:
        os.makedirs(args.log_dir, exist_ok=True)
        with open(os.path.join(args.log_dir, "resolved_config.yaml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)

    end = min(step + steps_per_run, max_steps)
    if step >= max_steps:
        print(f"[cpu_trainer] already at step {step} >= max_steps {max_steps}: nothing to train", flush=True)
    save_period = as_int(config, "checkpointing.save_period", 0)
    started = time.monotonic()
    while step < end:
        grad, values = task.step(params, rng)
        step += 1
        values["train/grad_norm"] = optimizer.update(params, grad)
        values["train/lr"] = optimizer.lr
        for key, value in values.items():
            metrics.setdefault(key, {})[str(step)] = value
        print(f"step {step}/{max_steps} " + " ".join(f"{k}={fmt(v)}" for k, v in values.items()), flush=True)
        if step == end or (save_period > 0 and step % save_period == 0):
            # metrics first: the checkpoint's step never runs ahead of metrics.json
            write_json_atomic(args.metrics, metrics)
            write_json_atomic(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "algorithm": algo, "step": step, "params": params,
                "optimizer": optimizer.state(), "rng_state": rng_state_to_json(rng.getstate()),
            })
    print(f"[cpu_trainer] trained up to step {step} in {time.monotonic() - started:.3f}s", flush=True)
    if step < max_steps:
        print(f"[cpu_trainer] {max_steps - step} step(s) left; resume with another run", flush=True)
        return EXIT_OK
    return _checks(config, metrics, max_steps)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return train(args)
    except UsageError as exc:
        print(f"[cpu_trainer] error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
