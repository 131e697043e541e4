"""Recipe file-name parser (nrl_launch.recipes.names)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nrl_launch.recipes import names
from nrl_launch.recipes.names import RecipeName, RecipeNameError, algo_of, parse_name

# filename -> (algo, model, nodes, gpus, context_length, strategy, modifiers, long, version)
VALID = {
    "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.sh": (
        "sft", "llama3.1-8b-instruct", 1, 8, None, "fsdp2tp1", (), False, None,
    ),
    "grpo-qwen2.5-7b-instruct-4n8g-fsdp2tp4sp.v3.sh": (
        "grpo", "qwen2.5-7b-instruct", 4, 8, None, "fsdp2tp4", ("sp",), False, 3,
    ),
    "dpo-llama3.1-8b-instruct-4n8g-megatron-tp4pp2-quick.sh": (
        "dpo", "llama3.1-8b-instruct", 4, 8, None, "megatron-tp4pp2", ("quick",), False, None,
    ),
    "grpo-llama3.1-8b-instruct-1n8g-megatron-fp8.sh": (
        "grpo", "llama3.1-8b-instruct", 1, 8, None, "megatron", ("fp8",), False, None,
    ),
    "grpo-math-1.5b-2n8g-dtensor2tp1-noncolocated-long.sh": (
        "grpo", "math-1.5b", 2, 8, None, "dtensor2tp1", ("noncolocated",), True, None,
    ),
    "vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-dtensor2tp1.v1.sh": (
        "vlm_grpo", "qwen2.5-vl-3b-instruct-clevr", 1, 2, None, "dtensor2tp1", (), False, 1,
    ),
    "grpo-deepscaler-1.5b-8K.sh": (
        "grpo", "deepscaler-1.5b", None, None, "8K", None, (), False, None,
    ),
    "grpo-deepscaler-1.5b-24K.v2.sh": (
        "grpo", "deepscaler-1.5b", None, None, "24K", None, (), False, 2,
    ),
    "grpo-math-qwen3-30ba3b-megatron-tp4-32k.sh": (
        "grpo", "math-qwen3-30ba3b-megatron-tp4", None, None, "32k", None, (), False, None,
    ),
    "sft-llama3.1-8b-instruct-1n8g-fsdp2tp8sp-actckpt.v2.sh": (
        "sft", "llama3.1-8b-instruct", 1, 8, None, "fsdp2tp8", ("sp", "actckpt"), False, 2,
    ),
    "sft-qwen2.5-32b-4n8g-fsdp2tp8sp-actckpt-long.v3.sh": (
        "sft", "qwen2.5-32b", 4, 8, None, "fsdp2tp8", ("sp", "actckpt"), True, 3,
    ),
    "dpo-mistral-nemo-instruct-2407-1n8g-fsdp2tp8-actckpt-long.sh": (
        "dpo", "mistral-nemo-instruct-2407", 1, 8, None, "fsdp2tp8", ("actckpt",), True, None,
    ),
    "distillation-qwen3-32b-to-1.7b-base-1n8g-megatron-tp2pp2cp2-pack.sh": (
        "distillation", "qwen3-32b-to-1.7b-base", 1, 8, None, "megatron-tp2pp2cp2", ("pack",), False, None,
    ),
    "rm-llama3.2-1b-1n8g-tp4pp2.sh": (
        "rm", "llama3.2-1b", 1, 8, None, "tp4pp2", (), False, None,
    ),
    "ppo-qwen3-8B-base-16n8g-fsdp2tp1fp8-quick.sh": (
        "ppo", "qwen3-8B-base", 16, 8, None, "fsdp2tp1", ("fp8", "quick"), False, None,
    ),
    "grpo-llama3.2-1b-1n8g-fsdp2tp1-16k.sh": (
        "grpo", "llama3.2-1b", 1, 8, "16k", "fsdp2tp1", ("16k",), False, None,
    ),
    "grpo-qwen3-8b-1n8g-dtensor2tp1seqpack.sh": (
        "grpo", "qwen3-8b", 1, 8, None, "dtensor2tp1", ("seqpack",), False, None,
    ),
    # real-world shapes: algos beyond sft/dpo/grpo, '_' and '.' inside tokens
    "grpo-llama3.1-8b-instruct-1n8g-megatron_generation.sh": (
        "grpo", "llama3.1-8b-instruct", 1, 8, None, "megatron_generation", (), False, None,
    ),
    "grpo-qwen2.5-7b-instruct-1n8g-fsdp2tp1-temp0.8-topp0.9-topk50.sh": (
        "grpo", "qwen2.5-7b-instruct", 1, 8, None, "fsdp2tp1", ("temp0.8", "topp0.9", "topk50"), False, None,
    ),
    "grpo-llama3.2-1b-instruct-1n8g-megatron-rollouts.v3.sh": (
        "grpo", "llama3.2-1b-instruct", 1, 8, None, "megatron", ("rollouts",), False, 3,
    ),
    "dapo-qwen2.5-7b-instruct-4n8g-fsdp2tp1-tq_simple.sh": (
        "dapo", "qwen2.5-7b-instruct", 4, 8, None, "fsdp2tp1", ("tq_simple",), False, None,
    ),
    "mopd-qwen3-8b-2n8g-megatron.sh": ("mopd", "qwen3-8b", 2, 8, None, "megatron", (), False, None),
    "prorlv2-qwen3-1.7b-1n8g-fsdp2tp1.sh": ("prorlv2", "qwen3-1.7b", 1, 8, None, "fsdp2tp1", (), False, None),
    "vlm_sft-qwen2.5-vl-3b-instruct-1n8g-dtensor2tp1.sh": (
        "vlm_sft", "qwen2.5-vl-3b-instruct", 1, 8, None, "dtensor2tp1", (), False, None,
    ),
    "grpo-llama3.1-8b-instruct-4n4g-fsdp2tp1.sh": (
        "grpo", "llama3.1-8b-instruct", 4, 4, None, "fsdp2tp1", (), False, None,
    ),
}


@pytest.mark.parametrize("filename", sorted(VALID))
def test_valid_names(filename: str) -> None:
    algo, model, nodes, gpus, context, strategy, modifiers, long, version = VALID[filename]
    assert parse_name(filename) == RecipeName(
        filename=filename, algo=algo, model=model, nodes=nodes, gpus=gpus, context_length=context,
        strategy=strategy, modifiers=modifiers, long=long, version=version, deviations=(),
    )


def test_helpers() -> None:
    name = parse_name("sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2.sh")
    assert name.stem == "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2"
    assert name.cluster == "1n8g"
    assert parse_name("grpo-deepscaler-1.5b-8K.sh").cluster is None


@pytest.mark.parametrize(("filename", "algo"), [
    ("vlm_grpo-qwen2.5-vl-3b-1n8g-x.sh", "vlm_grpo"), ("dapo-qwen2.5-7b.v2.sh", "dapo"), ("sft.sh", "sft"),
    ("Weird Name.sh", "Weird Name"),
])
def test_algo_of_is_the_first_token_even_for_names_that_do_not_parse(filename: str, algo: str) -> None:
    assert algo_of(filename) == algo


# filename -> (deviation codes, what the parse still found: (model, nodes, strategy, modifiers, version))
BENT = {
    "dapo-qwen2.5-7b.v2.sh": ((names.CLUSTER_MISSING,), ("qwen2.5-7b", None, None, (), 2)),
    "grpo-qwen3-8b-1n8g-fsdp2tp1.v3-tq_simple.sh": (
        (names.VERSION_POSITION,), ("qwen3-8b", 1, "fsdp2tp1", ("tq_simple",), 3)),
    "grpo-qwen3-32b-4n4g.sh": ((names.STRATEGY_MISSING,), ("qwen3-32b", 4, None, (), None)),
    "grpo-qwen3-32b-4n4g-long.sh": ((names.STRATEGY_MISSING,), ("qwen3-32b", 4, None, (), None)),
    "dapo-qwen2.5-7b.v2-quick.sh": (
        (names.VERSION_POSITION, names.CLUSTER_MISSING), ("qwen2.5-7b-quick", None, None, (), 2)),
}


@pytest.mark.parametrize("filename", sorted(BENT))
def test_tolerated_bends_parse_with_deviations(filename: str) -> None:
    codes, (model, nodes, strategy, modifiers, version) = BENT[filename]
    name = parse_name(filename)
    assert tuple(d.code for d in name.deviations) == codes
    assert (name.model, name.nodes, name.strategy, name.modifiers, name.version) == (
        model, nodes, strategy, modifiers, version)


def test_deviation_messages_say_what_was_expected() -> None:
    version, = parse_name("grpo-qwen3-8b-1n8g-fsdp2tp1.v3-tq_simple.sh").deviations
    assert version.message == ("version .v3 comes before '-tq_simple'; expected it last ('…-tq_simple.v3.sh'): "
                               "the version belongs to the whole recipe name")
    strategy, = parse_name("grpo-qwen3-32b-4n4g.sh").deviations
    assert "expected the parallelism strategy next (e.g. '-4n4g-fsdp2tp1')" in strategy.message


INVALID = {
    "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.bash": "must end with .sh",
    "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1": "must end with .sh",
    ".sh": "empty name",
    "sft-1n8g-fsdp2tp1.sh": "missing model before 1n8g",
    "grpo-8K.sh": "missing model before 8K",
    "sft.sh": "missing model after the algo 'sft'",
    "sft-.sh": "empty token",
    "sft-llama-0n8g-fsdp2tp1.sh": "must be positive",
    "sft-llama-1n8g-fsdp2tp1.v0.sh": "version must be >= 1",
    "sft-llama-1n8g-fsdp2tp1.v2-x.v3.sh": "more than one .vN",
    "sft-llama-1n8g-fsdp2tp1-long-quick.sh": "-long must be the last token",
    "sft-llama--1n8g-fsdp2tp1.sh": "empty token",
    "sft-llama-1n8g-fsdp2tp1-.sh": "empty token",
    "-sft-llama-1n8g-fsdp2tp1.sh": "empty token",
    "sft-llama-1n8g-FSDP2.sh": "invalid strategy 'FSDP2'",
    "sft-llama-1n8g-fsdp2tp1-Quick.sh": "invalid modifier 'Quick'",
    "sft-llama-1n8g-fsdp2tp1-tq_.sh": "invalid modifier 'tq_'",
    "sft-llama-1n8g-fsdp2tp8sp-tp2.sh": "flag glued to 'fsdp2tp8sp' before its parameters",
    "sft-llama-1n8g-fsdp2tp1 copy.sh": "whitespace",
    "llm/sft-llama-1n8g-fsdp2tp1.sh": "not a path",
}


@pytest.mark.parametrize("filename", sorted(INVALID))
def test_invalid_names(filename: str) -> None:
    with pytest.raises(RecipeNameError) as caught:
        parse_name(filename)
    assert INVALID[filename] in caught.value.reason
    assert caught.value.filename == filename
    assert str(caught.value) == f"{filename}: {caught.value.reason}"


# ---------------------------------------------------------------- round trip

# Fields the grammar keeps apart: a strategy with no digit before a glued flag
# (digits only at its end), modifiers that are no parallelism parameters
# (tp4… joins the strategy), model tokens ending with a letter (no 2n8g, no 8K).
_strategy = st.from_regex(r"[a-z]{2,6}[0-9]?", fullmatch=True).filter(lambda w: w != "long")
_model = st.lists(st.from_regex(r"[a-z][a-z0-9.]{0,6}[a-z]", fullmatch=True), min_size=1, max_size=3)
_modifier = st.from_regex(r"[a-z][a-z_]{0,4}[0-9]?(\.[0-9])?", fullmatch=True).filter(
    lambda m: m != "long" and not m.endswith("_") and "_." not in m
    and not re.fullmatch(r"(tp|pp|cp|ep|etp|dp|vpp)[0-9]", m))


@settings(database=None, deadline=None)  # no example files in the worktree; no timing in tests
@given(algo=st.sampled_from(["sft", "grpo", "vlm_grpo", "distillation", "mopd"]), model=_model,
       nodes=st.integers(1, 64), gpus=st.sampled_from([1, 2, 4, 8]), strategy=_strategy,
       modifiers=st.lists(_modifier, max_size=3), long=st.booleans(),
       version=st.none() | st.integers(1, 9))
def test_composed_names_parse_back(algo: str, model: list[str], nodes: int, gpus: int, strategy: str,
                                   modifiers: list[str], long: bool, version: int | None) -> None:
    """A name built from its fields by the grammar parses back to those fields."""
    parts = [algo, *model, f"{nodes}n{gpus}g", strategy, *modifiers] + (["long"] if long else [])
    filename = "-".join(parts) + (f".v{version}" if version else "") + ".sh"
    name = parse_name(filename)
    assert (name.algo, name.model, name.nodes, name.gpus) == (algo, "-".join(model), nodes, gpus)
    assert (name.strategy, name.modifiers, name.long, name.version, name.deviations) == (
        strategy, tuple(modifiers), long, version, ())
