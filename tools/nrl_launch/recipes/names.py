"""Parsing recipe script names.

A recipe script's file name encodes what it runs and on which hardware:

    <algo>-<model>-<N>n<G>g-<strategy-and-params>[-modifiers][-long][.vN].sh

``algo`` is everything before the first ``-`` (``sft``, ``vlm_grpo``,
``distillation``…); which algos exist is the repository's business (the
linter's ``[tool.nrl-launch.lint.algos]``), not this module's. Models contain
hyphens and dots (``llama3.1-8b-instruct``), so the parse is anchored on the
first cluster token ``-<N>n<G>g`` (followed by ``-`` or the end of the name):
what precedes it after the algo is the model, what follows it is the strategy
and the modifiers.

Details of the grammar:

* The strategy is the first token after the cluster token. Parallelism
  parameter tokens that directly follow it (``tp4pp2``, ``cp2``…) are part of
  the strategy: ``megatron-tp4pp2`` is one strategy. Short flags glued to the
  end of the strategy (``fsdp2tp8sp``) are split off and become the first
  modifiers (:data:`GLUED_FLAGS`).
* Strategy and modifier tokens are lowercase letters and digits, plus ``_``
  and ``.`` inside a token (``megatron_generation``, ``tq_simple``,
  ``temp0.8``, ``topp0.9``).
* ``-long`` may only be the last token (before the version); it sets ``long``.
* ``.vN`` (N >= 1) ends the name and is the version.
* A context-length token (``8K``, ``16K``, ``32k``) may replace the cluster
  token. ``nodes``/``gpus``/``strategy`` are then ``None``,
  ``context_length`` is the token as written, and the tokens that follow it
  are modifiers. A context-length token among the modifiers of a name that
  does have a cluster token is also recorded in ``context_length``.

Real repositories bend three of these rules on purpose. Such a name still
parses, and :attr:`RecipeName.deviations` says how it bends
(:data:`DEVIATIONS`), so that a linter can warn about it, or not:

* ``cluster``: neither a cluster token nor a context-length token
  (``dapo-qwen2.5-7b.v2``); the whole rest is the model;
* ``version``: the version sits before later tokens (``fsdp2tp1.v3-tq_simple``);
* ``strategy``: nothing follows the cluster token (``grpo-qwen3-32b-4n4g``).

Anything else that does not fit raises :class:`RecipeNameError`, whose
``reason`` says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Flags that real recipes glue to the end of their strategy token, longest
# first so that the split is unambiguous.
GLUED_FLAGS = ("actckpt", "seqpack", "fp8", "sp")

# Ways a name may bend the grammar and still parse (see the module docstring).
CLUSTER_MISSING = "cluster"
VERSION_POSITION = "version"
STRATEGY_MISSING = "strategy"
DEVIATIONS = (CLUSTER_MISSING, VERSION_POSITION, STRATEGY_MISSING)

_CLUSTER_RE = re.compile(r"-(\d+)n(\d+)g(?=-|$)")
_CONTEXT_RE = re.compile(r"-(\d+[kK])(?=-|$)")
_CONTEXT_TOKEN_RE = re.compile(r"\d+[kK]")
_VERSION_RE = re.compile(r"\.v(\d+)(?=-|$)")
_PARAM_TOKEN_RE = re.compile(r"(?:(?:tp|pp|cp|ep|etp|dp|vpp)\d+)+")
_TOKEN_RE = re.compile(r"[a-z0-9](?:[a-z0-9_.]*[a-z0-9])?")


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
class NameDeviation:
    """How a name that parses bends the grammar: ``code`` (one of
    :data:`DEVIATIONS`) and a message saying what was expected and why."""

    code: str
    message: str


@dataclass(frozen=True)
class RecipeName:
    """The fields a recipe file name encodes (see the module docstring)."""

    filename: str
    algo: str
    model: str
    nodes: int | None
    gpus: int | None
    context_length: str | None
    strategy: str | None
    modifiers: tuple[str, ...]
    long: bool
    version: int | None
    deviations: tuple[NameDeviation, ...] = ()

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


def algo_of(filename: str) -> str:
    """The algo token of a script file name: everything before the first ``-``
    (``vlm_grpo`` for ``vlm_grpo-qwen2.5-vl-3b-1n8g-x.sh``), without ``.sh``."""
    return filename.removesuffix(".sh").split("-", 1)[0]


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


def _checked_stem(filename: str) -> str:
    """The name without ``.sh``; RecipeNameError when it is not a plain name."""
    if "/" in filename or "\\" in filename:
        raise RecipeNameError(filename, "expected a file name, not a path")
    if not filename.endswith(".sh"):
        raise RecipeNameError(filename, "must end with .sh")
    stem = filename[: -len(".sh")]
    if not stem:
        raise RecipeNameError(filename, "empty name before .sh")
    if any(ch.isspace() for ch in stem):
        raise RecipeNameError(filename, "name contains whitespace")
    if "--" in stem or stem.endswith("-") or stem.startswith("-"):
        raise RecipeNameError(filename, "empty token (doubled, leading or trailing '-')")
    return stem


def _split_version(filename: str, stem: str) -> tuple[str, int | None, list[NameDeviation]]:
    """The stem without its ``.vN``, N, and a deviation when ``.vN`` is not last."""
    matches = list(_VERSION_RE.finditer(stem))
    if not matches:
        return stem, None, []
    if len(matches) > 1:
        raise RecipeNameError(filename, "more than one .vN version suffix")
    match = matches[0]
    version = int(match.group(1))
    if version < 1:
        raise RecipeNameError(filename, f"version must be >= 1, got .v{match.group(1)}")
    rest = stem[: match.start()] + stem[match.end():]
    deviations = []
    if match.end() != len(stem):
        after = stem[match.end():]
        deviations.append(NameDeviation(
            VERSION_POSITION,
            f"version .v{version} comes before '{after}'; expected it last "
            f"('…{after}.v{version}.sh'): the version belongs to the whole recipe name",
        ))
    return rest, version, deviations


def _tokens_and_long(filename: str, tail: str) -> tuple[list[str], bool]:
    """The '-'-separated tokens after the anchor, without a final ``long``."""
    tokens = tail.split("-") if tail else []
    long = bool(tokens) and tokens[-1] == "long"
    if long:
        tokens = tokens[:-1]
    if "long" in tokens:
        raise RecipeNameError(filename, "-long must be the last token (before .vN)")
    return tokens, long


def _strategy(filename: str, tokens: list[str]) -> tuple[str, list[str]]:
    """Pop the strategy (with its parameter tokens) off non-empty ``tokens``;
    return it and the flags that were glued to it."""
    first = tokens.pop(0)
    if not _TOKEN_RE.fullmatch(first):
        raise RecipeNameError(filename, f"invalid strategy {first!r} (lowercase letters, digits, '_' and '.')")
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
        if _CONTEXT_TOKEN_RE.fullmatch(token):
            context_length = context_length or token
        elif not _TOKEN_RE.fullmatch(token):
            raise RecipeNameError(filename, f"invalid modifier {token!r} (lowercase letters, digits, '_' and '.')")
    return list(tokens), context_length


@dataclass
class _Parts:
    """What the anchor search found in the text after the algo."""

    model: str
    tokens: list[str]
    long: bool
    nodes: int | None = None
    gpus: int | None = None
    context_length: str | None = None


def _anchor(filename: str, rest: str, deviations: list[NameDeviation]) -> _Parts:
    """Split ``-<model>-<anchor>-<tokens>`` on the cluster or context-length token."""
    cluster = _CLUSTER_RE.search(rest)
    if cluster:
        nodes, gpus = int(cluster.group(1)), int(cluster.group(2))
        model = rest[1 : cluster.start()]
        if model and (nodes < 1 or gpus < 1):
            raise RecipeNameError(filename, f"node and GPU counts must be positive in {nodes}n{gpus}g")
        tokens, long = _tokens_and_long(filename, rest[cluster.end() + 1 :])
        return _Parts(model, tokens, long, nodes=nodes, gpus=gpus)
    context = _CONTEXT_RE.search(rest)
    if context:
        tokens, long = _tokens_and_long(filename, rest[context.end() + 1 :])
        return _Parts(rest[1 : context.start()], tokens, long, context_length=context.group(1))
    deviations.append(NameDeviation(
        CLUSTER_MISSING,
        "no <N>n<G>g token (nodes x GPUs per node, e.g. 2n8g) and no context-length token (e.g. 8K) "
        "after the model: the name does not say what hardware the recipe needs",
    ))
    return _Parts(rest[1:], [], False)


def parse_name(filename: str) -> RecipeName:
    """Parse a recipe script's file name (a basename, not a path).

    Raises :class:`RecipeNameError` with a ``reason`` when the name does not
    follow the naming rules; the tolerated bends are in ``deviations``.
    """
    stem = _checked_stem(filename)
    stem, version, deviations = _split_version(filename, stem)
    algo, sep, after = stem.partition("-")
    if not sep or not after:
        raise RecipeNameError(filename, f"missing model after the algo {algo!r}")
    parts = _anchor(filename, "-" + after, deviations)
    anchor = parts.context_length if parts.nodes is None else f"{parts.nodes}n{parts.gpus}g"
    if not parts.model:
        raise RecipeNameError(filename, f"missing model before {anchor}")
    strategy: str | None = None
    glued: list[str] = []
    if parts.nodes is not None:
        if parts.tokens:
            strategy, glued = _strategy(filename, parts.tokens)
        else:
            deviations.append(NameDeviation(
                STRATEGY_MISSING,
                f"nothing after {anchor}; expected the parallelism strategy next (e.g. '-{anchor}-fsdp2tp1'), "
                "which tells recipes on the same hardware apart",
            ))
    modifiers, context_length = _modifiers(filename, parts.tokens, parts.context_length)
    return RecipeName(
        filename=filename, algo=algo, model=parts.model, nodes=parts.nodes, gpus=parts.gpus,
        context_length=context_length, strategy=strategy, modifiers=(*glued, *modifiers),
        long=parts.long, version=version, deviations=tuple(deviations),
    )
