"""A repository's lint configuration: ``[tool.nrl-launch.lint]`` in its
pyproject.toml, and ``# nrl-lint: disable=<rule>[,<rule>]`` comments in its files.

Every key is documented in docs/lint.md. Without the section the defaults
describe this project's own layout: recipes under ``tests/test_suites/{llm,vlm}``,
YAML mirrors under ``examples/configs/recipes``, every ``tests/test_suites/*.txt``
a suite, and the algos ``sft dpo grpo rm ppo distillation`` (each also with a
``vlm_`` prefix) without a base YAML. A configuration that is itself wrong
(unknown key, bad value, unknown rule id) raises :class:`LintConfigError`
naming the file and, where it can be found, the line.
"""

from __future__ import annotations

import difflib
import posixpath
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NoReturn

from nrl_launch.errors import UsageProblem
from nrl_launch.lint.rules import RULES, SEVERITIES, rule
from nrl_launch.recipes.layout import DEFAULT_LAYOUT, Layout, inside

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 backport has the same API
    # tomli is installed only on 3.10, so mypy may not find it (and on 3.11+ the ignore is unused).
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

PYPROJECT = "pyproject.toml"
SECTION = "tool.nrl-launch.lint"
DEFAULT_ALGOS = ("sft", "dpo", "grpo", "rm", "ppo", "distillation")
CLUSTER_NODES = ("cluster", "num_nodes")  # the YAML keys a recipe's hardware is stated in
CLUSTER_GPUS = ("cluster", "gpus_per_node")

_TOP_KEYS = ("suite-dir", "recipe-roots", "yaml-root", "extra-node-keys", "algos", "suites", "severity",
             "per-file-ignores")
_SUITE_KEYS = ("budget", "gpus-per-node", "disabled")
_SUITE_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+")  # what --budget SUITE=HOURS accepts
_ALGO_RE = re.compile(r"[A-Za-z0-9_.]+")  # a name's first token: no '-'
_DIRECTIVE_RE = re.compile(r"#\s*nrl-lint:(.*)$")
# disable=<id>[,<id>…]; text after a blank is a free-form reason
_DISABLE_RE = re.compile(r"\s*disable=\s*([A-Za-z0-9_-]+(?:\s*,\s*[A-Za-z0-9_-]+)*)(?:\s.*)?")


class LintConfigError(UsageProblem):
    """The lint configuration (pyproject.toml or an inline comment) is wrong.

    ``path`` and ``line`` (None when unknown) locate it; ``str()`` starts with them.
    """

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class SuiteConfig:
    """One configured suite: ``<suite folder>/<name>.txt``."""

    name: str
    budget: int | None = None  # GPU-hours
    gpus_per_node: int | None = None
    disabled: bool = False  # accounted for, never launched


def default_algos() -> dict[str, tuple[str, ...]]:
    """The algo map without configuration: known algos, no base YAMLs."""
    return {prefix + algo: () for prefix in ("", "vlm_") for algo in DEFAULT_ALGOS}


@dataclass(frozen=True)
class LintConfig:
    """Everything ``[tool.nrl-launch.lint]`` can say, with the defaults."""

    layout: Layout = DEFAULT_LAYOUT
    roots_configured: bool = False  # recipe-roots given: a missing root is then an error
    algos: Mapping[str, tuple[str, ...]] = field(default_factory=default_algos)  # algo -> base YAMLs
    suites: tuple[SuiteConfig, ...] | None = None  # None: every *.txt in the suite folder
    extra_node_keys: tuple[tuple[str, ...], ...] = ()  # key patterns, split on '.'
    severities: Mapping[str, str] = field(default_factory=dict)  # overrides only
    per_file_ignores: tuple[tuple[str, frozenset[str]], ...] = ()  # (glob, rule ids)
    source: str | None = None  # PYPROJECT when read from there

    def severity(self, rule_id: str) -> str:
        """The severity of ``rule_id`` here (UnknownRuleError for an undeclared id)."""
        return self.severities.get(rule_id) or rule(rule_id).severity

    def ignored(self, path: str, rule_id: str) -> bool:
        """True when a per-file-ignores glob matching ``path`` lists ``rule_id``."""
        return any(rule_id in rules and fnmatchcase(path, glob) for glob, rules in self.per_file_ignores)


def load_config(root: Path) -> LintConfig:
    """The configuration of the repository at ``root`` (defaults without one)."""
    try:
        raw = (root / PYPROJECT).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return LintConfig()
    except OSError as exc:
        raise LintConfigError(PYPROJECT, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise LintConfigError(PYPROJECT, None, f"not UTF-8 text ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LintConfigError(PYPROJECT, None, f"invalid TOML: {exc}") from exc
    section: object = data
    for key in ("tool", "nrl-launch", "lint"):
        if not isinstance(section, dict) or key not in section:
            return LintConfig()
        section = section[key]
    return _Parser(text, root).config(section)


def inline_disables(text: str, rel: str) -> frozenset[str]:
    """The rule ids that ``# nrl-lint: disable=…`` comments in ``text`` turn off
    for the whole file ``rel``; LintConfigError for a malformed comment."""
    if "nrl-lint:" not in text:
        return frozenset()
    disabled: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        match = _DIRECTIVE_RE.search(line)
        if match is None:
            continue
        body = _DISABLE_RE.fullmatch(match.group(1))
        if body is None:
            raise LintConfigError(rel, number, "expected '# nrl-lint: disable=<rule>[,<rule>] [reason]'")
        for rule_id in (part.strip() for part in body.group(1).split(",")):
            if rule_id not in RULES:
                hint = _hint(rule_id, RULES)
                raise LintConfigError(rel, number, f"unknown rule {rule_id!r} in nrl-lint comment{hint}")
            disabled.add(rule_id)
    return frozenset(disabled)


def _hint(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    candidates = list(choices)
    kebab = word.replace("_", "-")
    close = [kebab] if kebab != word and kebab in candidates else difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _locate(text: str, table: str, key: str | None) -> int | None:
    """Best-effort line of ``key`` in ``[table]`` (or of the table header), for
    messages; a table written inline or with dotted keys is found through its parent."""
    lines = text.splitlines()
    header = None
    for number, line in enumerate(lines, start=1):
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("["):
            name = re.sub(r"[\s\"'\[\]]", "", stripped)
            if header is not None:
                break
            if name == table:
                header = number
            continue
        if header is not None and key is not None and re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*[=.]", line):
            return number
    if header is not None or "." not in table:
        return header
    parent, _, last = table.rpartition(".")
    return _locate(text, parent, last)


@dataclass
class _Parser:
    """Turns the parsed ``[tool.nrl-launch.lint]`` table into a LintConfig."""

    text: str
    root: Path

    def fail(self, table: str, key: str | None, message: str) -> NoReturn:
        """Raise LintConfigError naming pyproject.toml, the line and the table."""
        raise LintConfigError(PYPROJECT, _locate(self.text, table, key), f"[{table}] {message}")

    def table(self, value: object, table: str, key: str | None = None) -> dict[str, object]:
        """``value`` as a TOML table, or fail."""
        if not isinstance(value, dict):
            self.fail(table, key, f"{key or 'the section'} must be a table, got {type(value).__name__}")
        return value

    def known_keys(self, data: Mapping[str, object], table: str, known: Iterable[str]) -> None:
        """Fail on the first key that is not in ``known``."""
        allowed = tuple(known)
        for key in data:
            if key not in allowed:
                self.fail(table, key, f"unknown key {key!r}{_hint(key, allowed)}; known: {', '.join(allowed)}")

    def config(self, section: object) -> LintConfig:
        """The whole section."""
        data = self.table(section, SECTION)
        self.known_keys(data, SECTION, _TOP_KEYS)
        suite_dir = self.path(data.get("suite-dir", DEFAULT_LAYOUT.suite_dir), SECTION, "suite-dir")
        roots = self.roots(data, suite_dir)
        yaml_root = self.path(data.get("yaml-root", DEFAULT_LAYOUT.yaml_root), SECTION, "yaml-root")
        return LintConfig(
            layout=Layout(suite_dir=suite_dir, recipe_roots=roots, yaml_root=yaml_root),
            roots_configured="recipe-roots" in data,
            algos=self.algos(data["algos"]) if "algos" in data else default_algos(),
            suites=self.suites(data["suites"]) if "suites" in data else None,
            extra_node_keys=self.node_keys(data.get("extra-node-keys", [])),
            severities=self.severities(data.get("severity", {})),
            per_file_ignores=self.ignores(data.get("per-file-ignores", {})),
            source=PYPROJECT,
        )

    def path(self, value: object, table: str, key: str) -> str:
        """A normalised POSIX path inside the repository."""
        if not isinstance(value, str) or not value.strip():
            self.fail(table, key, f"{key} must be a non-empty string (a path relative to the repository root)")
        normal = posixpath.normpath(value.strip())
        if "\\" in value or posixpath.isabs(normal) or normal == "." or normal == ".." or normal.startswith("../"):
            self.fail(table, key, f"{key} = {value!r} must be a relative path inside the repository")
        return normal

    def strings(self, value: object, table: str, key: str) -> list[str]:
        """A non-empty list of strings."""
        if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
            self.fail(table, key, f"{key} must be a non-empty list of strings")
        return value

    def roots(self, data: Mapping[str, object], suite_dir: str) -> tuple[str, ...]:
        """The recipe roots: inside the suite folder, none inside another."""
        if "recipe-roots" not in data:
            return tuple(f"{suite_dir}/{kind}" for kind in DEFAULT_LAYOUT.kinds)
        roots = [self.path(item, SECTION, "recipe-roots") for item in self.strings(data["recipe-roots"], SECTION,
                                                                                   "recipe-roots")]
        for index, root in enumerate(roots):
            if not inside(root, suite_dir) or root == suite_dir:
                self.fail(SECTION, "recipe-roots", f"recipe root {root!r} must be a folder inside suite-dir "
                                                   f"{suite_dir!r} (the YAML mirror is relative to it)")
            for other in roots[:index]:
                if inside(root, other) or inside(other, root):
                    self.fail(SECTION, "recipe-roots", f"recipe roots {other!r} and {root!r} overlap")
        return tuple(roots)

    def node_keys(self, value: object) -> tuple[tuple[str, ...], ...]:
        """Dotted YAML key patterns (``*`` matches one key) counted as extra nodes."""
        if value == []:
            return ()
        patterns = []
        for item in self.strings(value, SECTION, "extra-node-keys"):
            parts = tuple(item.split("."))
            if not all(parts):
                self.fail(SECTION, "extra-node-keys", f"{item!r} is not a dotted key (e.g. 'env.*.num_gpu_nodes')")
            for key in (CLUSTER_NODES, CLUSTER_GPUS):
                if len(parts) == len(key) and all(map(fnmatchcase, key, parts)):
                    self.fail(SECTION, "extra-node-keys", f"{item!r} matches {'.'.join(key)}, which is not an extra "
                                                          "node count")
            patterns.append(parts)
        return tuple(patterns)

    def algos(self, value: object) -> dict[str, tuple[str, ...]]:
        """algo -> base YAML(s) its recipes derive from (``[]``: no base check)."""
        table = f"{SECTION}.algos"
        data = self.table(value, SECTION, "algos")
        if not data:
            self.fail(SECTION, "algos", "algos names no algo")
        algos: dict[str, tuple[str, ...]] = {}
        for algo, bases in data.items():
            if not _ALGO_RE.fullmatch(algo):
                self.fail(table, algo, f"algo {algo!r} must be a name's first token (letters, digits, '_', '.')")
            listed = [bases] if isinstance(bases, str) else bases
            if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
                self.fail(table, algo, f"{algo} must be a base YAML path or a list of them")
            algos[algo] = tuple(self.existing_file(item, table, algo) for item in listed)
        return algos

    def existing_file(self, value: str, table: str, key: str) -> str:
        """A path that must name an existing file."""
        rel = self.path(value, table, key)
        if not (self.root / rel).is_file():
            self.fail(table, key, f"{key} = {value!r}: no such file in the repository")
        return rel

    def suites(self, value: object) -> tuple[SuiteConfig, ...]:
        """The configured suites, in file order."""
        data = self.table(value, SECTION, "suites")
        if not data:
            self.fail(SECTION, "suites", "suites names no suite")
        return tuple(self.suite(name, settings) for name, settings in data.items())

    def suite(self, name: str, value: object) -> SuiteConfig:
        """One ``[tool.nrl-launch.lint.suites.<name>]`` table."""
        table = f"{SECTION}.suites.{name}"
        if not _SUITE_NAME_RE.fullmatch(name):
            self.fail(f"{SECTION}.suites", name, f"suite name {name!r} may only use letters, digits and _.+-")
        data = self.table(value, f"{SECTION}.suites", name)
        self.known_keys(data, table, _SUITE_KEYS)
        budget = self.integer(data, table, "budget", minimum=0)
        gpus = self.integer(data, table, "gpus-per-node", minimum=1)
        disabled = data.get("disabled", False)
        if not isinstance(disabled, bool):
            self.fail(table, "disabled", "disabled must be true or false")
        if disabled and budget is not None:
            self.fail(table, "budget", "a disabled suite is never launched: a budget means nothing there")
        return SuiteConfig(name=name, budget=budget, gpus_per_node=gpus, disabled=disabled)

    def integer(self, data: Mapping[str, object], table: str, key: str, minimum: int) -> int | None:
        """An optional whole number >= ``minimum``."""
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(table, key, f"{key} must be a whole number >= {minimum}, got {value!r}")
        return value

    def rule_ids(self, values: Iterable[str], table: str, key: str) -> frozenset[str]:
        """Declared rule ids, or fail on the first unknown one."""
        for rule_id in values:
            if rule_id not in RULES:
                self.fail(table, key, f"unknown rule {rule_id!r}{_hint(rule_id, RULES)}")
        return frozenset(values)

    def severities(self, value: object) -> dict[str, str]:
        """rule id -> error | warning | off."""
        table = f"{SECTION}.severity"
        data = self.table(value, SECTION, "severity")
        for rule_id, severity in data.items():
            self.rule_ids([rule_id], table, rule_id)
            if severity not in SEVERITIES:
                self.fail(table, rule_id, f"{rule_id} = {severity!r}: severity must be one of {', '.join(SEVERITIES)}")
        return {rule_id: str(severity) for rule_id, severity in data.items()}

    def ignores(self, value: object) -> tuple[tuple[str, frozenset[str]], ...]:
        """glob -> rule ids that do not apply to the files it matches."""
        table = f"{SECTION}.per-file-ignores"
        data = self.table(value, SECTION, "per-file-ignores")
        ignores = []
        for glob, ids in data.items():
            if not glob.strip():
                self.fail(table, None, "an empty glob matches no file")
            ignores.append((glob, self.rule_ids(self.strings(ids, table, glob), table, glob)))
        return tuple(ignores)
