"""Recipe file-name parser (nrl_launch.names)."""

from __future__ import annotations

import pytest

from nrl_launch.names import RecipeName, RecipeNameError, parse_name

# filename -> (kind, algo, model, nodes, gpus, context_length, strategy, modifiers, long, version)
VALID = {
    "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.sh": (
        "llm", "sft", "llama3.1-8b-instruct", 1, 8, None, "fsdp2tp1", (), False, None,
    ),
    "grpo-qwen2.5-7b-instruct-4n8g-fsdp2tp4sp.v3.sh": (
        "llm", "grpo", "qwen2.5-7b-instruct", 4, 8, None, "fsdp2tp4", ("sp",), False, 3,
    ),
    "dpo-llama3.1-8b-instruct-4n8g-megatron-tp4pp2-quick.sh": (
        "llm", "dpo", "llama3.1-8b-instruct", 4, 8, None, "megatron-tp4pp2", ("quick",), False, None,
    ),
    "grpo-llama3.1-8b-instruct-1n8g-megatron-fp8.sh": (
        "llm", "grpo", "llama3.1-8b-instruct", 1, 8, None, "megatron", ("fp8",), False, None,
    ),
    "grpo-math-1.5b-2n8g-dtensor2tp1-noncolocated-long.sh": (
        "llm", "grpo", "math-1.5b", 2, 8, None, "dtensor2tp1", ("noncolocated",), True, None,
    ),
    "vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-dtensor2tp1.v1.sh": (
        "vlm", "grpo", "qwen2.5-vl-3b-instruct-clevr", 1, 2, None, "dtensor2tp1", (), False, 1,
    ),
    "grpo-deepscaler-1.5b-8K.sh": (
        "llm", "grpo", "deepscaler-1.5b", None, None, "8K", None, (), False, None,
    ),
    "grpo-deepscaler-1.5b-24K.v2.sh": (
        "llm", "grpo", "deepscaler-1.5b", None, None, "24K", None, (), False, 2,
    ),
    "grpo-math-qwen3-30ba3b-megatron-tp4-32k.sh": (
        "llm", "grpo", "math-qwen3-30ba3b-megatron-tp4", None, None, "32k", None, (), False, None,
    ),
    "sft-llama3.1-8b-instruct-1n8g-fsdp2tp8sp-actckpt.v2.sh": (
        "llm", "sft", "llama3.1-8b-instruct", 1, 8, None, "fsdp2tp8", ("sp", "actckpt"), False, 2,
    ),
    "sft-qwen2.5-32b-4n8g-fsdp2tp8sp-actckpt-long.v3.sh": (
        "llm", "sft", "qwen2.5-32b", 4, 8, None, "fsdp2tp8", ("sp", "actckpt"), True, 3,
    ),
    "grpo-llama3.1-8b-instruct-2n8g-megatron-fp8-e2e.sh": (
        "llm", "grpo", "llama3.1-8b-instruct", 2, 8, None, "megatron", ("fp8", "e2e"), False, None,
    ),
    "dpo-mistral-nemo-instruct-2407-1n8g-fsdp2tp8-actckpt-long.sh": (
        "llm", "dpo", "mistral-nemo-instruct-2407", 1, 8, None, "fsdp2tp8", ("actckpt",), True, None,
    ),
    "distillation-qwen3-32b-to-1.7b-base-1n8g-megatron-tp2pp2cp2-pack.sh": (
        "llm", "distillation", "qwen3-32b-to-1.7b-base", 1, 8, None, "megatron-tp2pp2cp2", ("pack",), False, None,
    ),
    "vlm_grpo-qwen2.5-vl-3b-instruct-clevr-1n2g-megatrontp2.v1.sh": (
        "vlm", "grpo", "qwen2.5-vl-3b-instruct-clevr", 1, 2, None, "megatrontp2", (), False, 1,
    ),
    "rm-llama3.2-1b-1n8g-tp4pp2.sh": (
        "llm", "rm", "llama3.2-1b", 1, 8, None, "tp4pp2", (), False, None,
    ),
    "ppo-qwen3-8B-base-16n8g-fsdp2tp1fp8-quick.sh": (
        "llm", "ppo", "qwen3-8B-base", 16, 8, None, "fsdp2tp1", ("fp8", "quick"), False, None,
    ),
    "grpo-llama3.2-1b-1n8g-fsdp2tp1-16k.sh": (
        "llm", "grpo", "llama3.2-1b", 1, 8, "16k", "fsdp2tp1", ("16k",), False, None,
    ),
    "grpo-qwen3-8b-1n8g-dtensor2tp1seqpack.sh": (
        "llm", "grpo", "qwen3-8b", 1, 8, None, "dtensor2tp1", ("seqpack",), False, None,
    ),
}


@pytest.mark.parametrize("filename", sorted(VALID))
def test_valid_names(filename: str) -> None:
    kind, algo, model, nodes, gpus, context, strategy, modifiers, long, version = VALID[filename]
    assert parse_name(filename) == RecipeName(
        filename=filename,
        kind=kind,
        algo=algo,
        model=model,
        nodes=nodes,
        gpus=gpus,
        context_length=context,
        strategy=strategy,
        modifiers=modifiers,
        long=long,
        version=version,
    )


def test_helpers() -> None:
    name = parse_name("sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2.sh")
    assert name.stem == "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2"
    assert name.cluster == "1n8g"
    assert parse_name("grpo-deepscaler-1.5b-8K.sh").cluster is None


INVALID = {
    "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.bash": "must end with .sh",
    "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1": "must end with .sh",
    ".sh": "empty name",
    "sft-llama3.1-8b-instruct-fsdp2tp1.sh": "no <N>n<G>g cluster token or context-length token",
    "sft-llama3.1-8b-instruct-1n8g.sh": "missing strategy after 1n8g",
    "sft-llama3.1-8b-instruct-1n8g-long.sh": "missing strategy after 1n8g",
    "foo-llama3.1-8b-instruct-1n8g-fsdp2tp1.sh": "unknown algo 'foo'",
    "vlm-grpo-qwen2.5-vl-3b-1n2g-dtensor2tp1.sh": "VLM names start with 'vlm_'",
    "vlm_.sh": "vlm_ prefix needs an algo",
    "vlm_-qwen-1n2g-dtensor2tp1.sh": "vlm_ prefix needs an algo",
    "vlm_foo-qwen-1n2g-dtensor2tp1.sh": "unknown algo 'foo'",
    "llm_grpo-qwen-1n8g-fsdp2tp1.sh": "only 'vlm_' may prefix",
    "sft-1n8g-fsdp2tp1.sh": "missing model before 1n8g",
    "grpo-8K.sh": "missing model before 8K",
    "sft.sh": "missing model after the algo",
    "sft-llama-0n8g-fsdp2tp1.sh": "must be positive",
    "sft-llama-1n8g-fsdp2tp1.v0.sh": "version must be >= 1",
    "sft-llama-1n8g-fsdp2tp1-long-quick.sh": "-long must be the last token",
    "sft-llama--1n8g-fsdp2tp1.sh": "empty token",
    "sft-llama-1n8g-fsdp2tp1-.sh": "empty token",
    "sft-llama-1n8g-FSDP2.sh": "invalid strategy 'FSDP2'",
    "sft-llama-1n8g-fsdp2tp1-Quick.sh": "invalid modifier 'Quick'",
    "sft-llama-1n8g-fsdp2tp1 copy.sh": "whitespace",
    "llm/sft-llama-1n8g-fsdp2tp1.sh": "not a path",
    "SFT-llama-1n8g-fsdp2tp1.sh": "unknown algo 'SFT'",
}


@pytest.mark.parametrize("filename", sorted(INVALID))
def test_invalid_names(filename: str) -> None:
    with pytest.raises(RecipeNameError) as caught:
        parse_name(filename)
    assert INVALID[filename] in caught.value.reason
    assert caught.value.filename == filename
    assert str(caught.value).startswith(f"{filename}: ")


def test_error_is_a_value_error() -> None:
    assert issubclass(RecipeNameError, ValueError)
