"""Parsing recipe script names.

A recipe script's file name encodes what it runs and on which hardware:

* LLM: ``<algo>-<model>-<N>n<G>g-<strategy-and-params>[-modifiers][-long][.vN].sh``
* VLM: ``vlm_<algo>-<model>-<N>n<G>g-<strategy>[-modifiers][-long][.vN].sh``

Models contain hyphens and dots (``llama3.1-8b-instruct``), so the parse is
anchored on the first cluster token ``-<N>n<G>g`` (followed by ``-`` or the
end of the name): what precedes it after the algo is the model, what follows
it is the strategy and the modifiers.

Details of the grammar this module implements:

* ``algo`` is one of :data:`KNOWN_ALGOS`; anything else is a parse failure.
* The strategy is the first token after the cluster token. Parallelism
  parameter tokens that directly follow it (``tp4pp2``, ``cp2``…) are part of
  the strategy: ``megatron-tp4pp2`` is one strategy. Short flags glued to the
  end of the strategy (``fsdp2tp8sp``) are split off and become the first
  modifiers (:data:`GLUED_FLAGS`).
* Modifiers are the remaining lowercase alphanumeric tokens, in order.
* ``-long`` may only be the last token (before the version); it sets ``long``.
* ``.vN`` (N >= 1) at the very end of the stem is the version.
* Known exception: a context-length token (``8K``, ``16K``, ``32k``) in place
  of the cluster token. ``nodes``/``gpus``/``strategy`` are then ``None``,
  ``context_length`` is the token as written, and the tokens that follow it
  are modifiers. The linter then requires the script to state its hardware
  in its CONFIG block. A context-length token among the modifiers of a name
  that does have a cluster token is also recorded in ``context_length``.

:func:`parse_name` returns a :class:`RecipeName` or raises
:class:`RecipeNameError`, whose ``reason`` says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KNOWN_ALGOS = frozenset({"sft", "dpo", "grpo", "rm", "ppo", "distillation"})

# Flags that real recipes glue to the end of their strategy token, longest
# first so that the split is unambiguous.
GLUED_FLAGS = ("actckpt", "seqpack", "fp8", "sp")

VLM_PREFIX = "vlm_"

_CLUSTER_RE = re.compile(r"-(\d+)n(\d+)g(?=-|$)")
_CONTEXT_RE = re.compile(r"-(\d+[kK])(?=-|$)")
_CONTEXT_TOKEN_RE = re.compile(r"\d+[kK]")
_VERSION_RE = re.compile(r"\.v(\d+)$")
_PARAM_TOKEN_RE = re.compile(r"(?:(?:tp|pp|cp|ep|etp|dp|vpp)\d+)+")
_FLAG_TOKEN_RE = re.compile(r"[a-z0-9]+")


class RecipeNameError(ValueError):
    """A recipe file name that does not follow the naming rules.

    ``filename`` is the name that was parsed, ``reason`` a short explanation;
    ``str()`` is ``"<filename>: <reason>"``.
    """

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"{filename}: {reason}")


@dataclass(frozen=True)
class RecipeName:
    """The fields a recipe file name encodes (see the module docstring)."""

    filename: str
    kind: str  # "llm" or "vlm"
    algo: str
    model: str
    nodes: int | None
    gpus: int | None
    context_length: str | None
    strategy: str | None
    modifiers: tuple[str, ...]
    long: bool
    version: int | None

    @property
    def stem(self) -> str:
        """The file name without ``.sh`` (the experiment name)."""
        return self.filename[: -len(".sh")]

    @property
    def cluster(self) -> str | None:
        """The cluster token as written (``"1n8g"``), or None."""
        if self.nodes is None or self.gpus is None:
            return None
        return f"{self.nodes}n{self.gpus}g"


def _split_glued(token: str) -> tuple[str, list[str]]:
    """Split glued flags off the end of a strategy token.

    A flag is split only when what remains is non-empty and ends with a digit
    (``fsdp2tp8sp`` -> ``fsdp2tp8`` + ``sp``), so words that merely end with
    the letters of a flag are left alone.
    """
    flags: list[str] = []
    changed = True
    while changed:
        changed = False
        for flag in GLUED_FLAGS:
            rest = token[: -len(flag)]
            if token.endswith(flag) and rest and rest[-1].isdigit():
                flags.insert(0, flag)
                token = rest
                changed = True
                break
    return token, flags


def _stem_and_version(filename: str) -> tuple[str, int | None]:
    """The name without ``.sh`` and ``.vN``, and N (None without one)."""
    if "/" in filename or "\\" in filename:
        raise RecipeNameError(filename, "expected a file name, not a path")
    if not filename.endswith(".sh"):
        raise RecipeNameError(filename, "must end with .sh")
    stem = filename[: -len(".sh")]
    if not stem:
        raise RecipeNameError(filename, "empty name before .sh")
    if any(ch.isspace() for ch in stem):
        raise RecipeNameError(filename, "name contains whitespace")
    match = _VERSION_RE.search(stem)
    if not match:
        return stem, None
    version = int(match.group(1))
    if version < 1:
        raise RecipeNameError(filename, f"version must be >= 1, got .v{match.group(1)}")
    return stem[: match.start()], version


def _kind_algo_rest(filename: str, stem: str) -> tuple[str, str, str]:
    """(kind, algo, "-<everything after the algo>") of a versionless stem."""
    kind = "llm"
    if stem.startswith(VLM_PREFIX):
        kind = "vlm"
        stem = stem[len(VLM_PREFIX):]
        if not stem or stem.startswith("-"):
            raise RecipeNameError(filename, "vlm_ prefix needs an algo right after it (vlm_<algo>-…)")
    elif "_" in stem.split("-", 1)[0]:
        head = stem.split("-", 1)[0]
        raise RecipeNameError(filename, f"unknown prefix in {head!r} (only 'vlm_' may prefix the algo)")
    if "--" in stem or stem.endswith("-"):
        raise RecipeNameError(filename, "empty token (doubled or trailing '-')")
    algo, sep, rest = stem.partition("-")
    if algo not in KNOWN_ALGOS:
        hint = " (VLM names start with 'vlm_')" if algo == "vlm" else ""
        raise RecipeNameError(filename, f"unknown algo {algo!r}{hint}; known: {', '.join(sorted(KNOWN_ALGOS))}")
    if not sep:
        raise RecipeNameError(filename, "missing model after the algo")
    return kind, algo, "-" + rest  # so that every token, the first included, follows a '-'


def _tokens_and_long(tail: str) -> tuple[list[str], bool]:
    """The '-'-separated tokens after the anchor, without a final ``long``."""
    tokens = tail.split("-") if tail else []
    if tokens and tokens[-1] == "long":
        return tokens[:-1], True
    return tokens, False


def _strategy(filename: str, tokens: list[str], token_text: str) -> tuple[str, list[str]]:
    """Pop the strategy (with its parameter tokens) off ``tokens``; return it
    and the flags that were glued to it."""
    if not tokens:
        raise RecipeNameError(filename, f"missing strategy after {token_text}")
    first = tokens.pop(0)
    if not _FLAG_TOKEN_RE.fullmatch(first):
        raise RecipeNameError(filename, f"invalid strategy {first!r} (lowercase letters and digits)")
    base, glued = _split_glued(first)
    params: list[str] = []
    while tokens and _PARAM_TOKEN_RE.fullmatch(tokens[0]):
        params.append(tokens.pop(0))
    if glued and params:
        # glued flags belong at the end of the whole strategy, not inside it
        raise RecipeNameError(filename, f"flag glued to {first!r} before its parameters")
    return "-".join([base, *params]), glued


def _modifiers(filename: str, tokens: list[str], context_length: str | None) -> tuple[list[str], str | None]:
    """Validate the modifier tokens; a context-length token among them is noted."""
    for token in tokens:
        if token == "long":
            raise RecipeNameError(filename, "-long must be the last token (before .vN)")
        if _CONTEXT_TOKEN_RE.fullmatch(token) and context_length is None:
            context_length = token
        elif not _FLAG_TOKEN_RE.fullmatch(token):
            raise RecipeNameError(filename, f"invalid modifier {token!r} (lowercase letters and digits)")
    return list(tokens), context_length


def parse_name(filename: str) -> RecipeName:
    """Parse a recipe script's file name (a basename, not a path).

    Raises :class:`RecipeNameError` with a ``reason`` when the name does not
    follow the naming rules.
    """
    stem, version = _stem_and_version(filename)
    kind, algo, rest = _kind_algo_rest(filename, stem)
    nodes = gpus = None
    context_length = strategy = None
    glued: list[str] = []
    cluster = _CLUSTER_RE.search(rest)
    if cluster:
        model, anchor = rest[1 : cluster.start()], f"{cluster.group(1)}n{cluster.group(2)}g"
        nodes, gpus = int(cluster.group(1)), int(cluster.group(2))
        if model and (nodes < 1 or gpus < 1):
            raise RecipeNameError(filename, f"node and GPU counts must be positive in {anchor}")
        tokens, long = _tokens_and_long(rest[cluster.end() + 1 :])
        if model:
            strategy, glued = _strategy(filename, tokens, anchor)
    else:
        context = _CONTEXT_RE.search(rest)
        if not context:
            raise RecipeNameError(filename, "no <N>n<G>g cluster token or context-length token (e.g. 8K)")
        model, anchor = rest[1 : context.start()], context.group(1)
        context_length = anchor
        tokens, long = _tokens_and_long(rest[context.end() + 1 :])
    if not model:
        raise RecipeNameError(filename, f"missing model before {anchor}")
    modifiers, context_length = _modifiers(filename, tokens, context_length)
    return RecipeName(
        filename=filename, kind=kind, algo=algo, model=model, nodes=nodes, gpus=gpus,
        context_length=context_length, strategy=strategy, modifiers=(*glued, *modifiers),
        long=long, version=version,
    )
