"""Reading ``[tool.nrl-launch.lint]`` from a repository's pyproject.toml.

:func:`load_config` turns the section into a :class:`LintConfig`; every key
is documented in docs/lint.md. A wrong configuration is reported whole: the
parser goes on after a bad key and raises one :class:`LintConfigError`
naming the line of every problem. :func:`read_section` is what
:func:`nrl_launch.lint.root.lint_root` asks of each pyproject.toml it passes.
"""

from __future__ import annotations

import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import NoReturn, TypeVar

from nrl_launch.lint.options import (
    BASE_CHECKS,
    CLUSTER_GPUS,
    CLUSTER_NODES,
    INHERITS,
    MERGES,
    KeyPath,
    LintConfig,
    LintConfigError,
    Problem,
    SuiteConfig,
    default_algos,
    hint,
)
from nrl_launch.lint.rules import RULES, SEVERITIES
from nrl_launch.recipes.layout import DEFAULT_LAYOUT, Layout, inside

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 backport has the same API
    # tomli is installed only on 3.10, so mypy may not find it (and on 3.11+ the ignore is unused).
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

PYPROJECT = "pyproject.toml"
SECTION = "tool.nrl-launch.lint"

_TOP_KEYS = ("suite-dir", "recipe-roots", "yaml-root", "yaml-requires-script", "extra-node-keys", "algos",
             "base-check", "base-extra-keys", "suites", "severity", "per-file-ignores")
_SUITE_KEYS = ("budget", "gpus-per-node", "disabled", "subset-of")
_SUITE_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+")  # what --budget SUITE=HOURS accepts
_ALGO_RE = re.compile(r"[A-Za-z0-9_.]+")  # a name's first token: no '-'

T = TypeVar("T")


def read_section(path: Path, shown: str = PYPROJECT) -> tuple[str, object] | None:
    """(the file's text, its ``[tool.nrl-launch.lint]`` value) of the
    pyproject.toml at ``path``; None when the file or the section is absent.
    LintConfigError (naming the file as ``shown``) when it cannot be read as TOML."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise LintConfigError(shown, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise LintConfigError(shown, None, f"not UTF-8 text ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LintConfigError(shown, None, f"invalid TOML: {exc}") from exc
    section: object = data
    for key in ("tool", "nrl-launch", "lint"):
        if not isinstance(section, dict) or key not in section:
            return None
        section = section[key]
    return text, section


def load_config(root: Path) -> LintConfig:
    """The configuration of the repository at ``root`` (defaults without one)."""
    found = read_section(root / PYPROJECT)
    if found is None:
        return LintConfig()
    text, section = found
    return _Parser(text, root).config(section)


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


class _Invalid(Exception):
    """A value that was reported as a problem: the parser goes on with the next one."""


@dataclass
class _Parser:
    """Turns the parsed ``[tool.nrl-launch.lint]`` table into a LintConfig."""

    text: str
    root: Path
    problems: list[Problem] = field(default_factory=list)

    # ---- reporting

    def fail(self, table: str, key: str | None, message: str) -> NoReturn:
        """Record a problem naming pyproject.toml, the line and the table; abandon this value."""
        self.problems.append((PYPROJECT, _locate(self.text, table, key), f"[{table}] {message}"))
        raise _Invalid

    def attempt(self, parse: Callable[[], T], fallback: T) -> T:
        """``parse()``, or ``fallback`` when it reported a problem."""
        try:
            return parse()
        except _Invalid:
            return fallback

    # ---- the section

    def config(self, section: object) -> LintConfig:
        """The whole section; LintConfigError listing every problem."""
        try:
            data = self.table(section, SECTION)
        except _Invalid:
            raise LintConfigError.of(self.problems) from None
        self.known_keys(data, SECTION, _TOP_KEYS)
        suite_dir = self.attempt(lambda: self.path(data.get("suite-dir", DEFAULT_LAYOUT.suite_dir), SECTION,
                                                   "suite-dir"), DEFAULT_LAYOUT.suite_dir)
        roots = self.roots(data, suite_dir)
        yaml_root = self.attempt(lambda: self.path(data.get("yaml-root", DEFAULT_LAYOUT.yaml_root), SECTION,
                                                   "yaml-root"), DEFAULT_LAYOUT.yaml_root)
        algos = self.attempt(lambda: self.algos(data["algos"]), default_algos()) if "algos" in data else default_algos()
        base_check = self.attempt(lambda: self.choice(data, "base-check", BASE_CHECKS), INHERITS)
        config = LintConfig(
            roots_configured="recipe-roots" in data,
            algos=algos,
            base_check=base_check,
            base_extra_keys=self.attempt(lambda: self.base_extra_keys(data, base_check), ()),
            suites=self.attempt(lambda: self.suites(data["suites"]), None) if "suites" in data else None,
            yaml_requires_script=self.attempt(lambda: self.boolean(data, SECTION, "yaml-requires-script"), False),
            extra_node_keys=self.attempt(lambda: self.node_keys(data.get("extra-node-keys", [])), ()),
            severities=self.attempt(lambda: self.severities(data.get("severity", {})), {}),
            per_file_ignores=self.attempt(lambda: self.ignores(data.get("per-file-ignores", {})), ()),
            source=PYPROJECT,
        )
        if self.problems:
            raise LintConfigError.of(self.problems)
        return replace(config, layout=Layout(suite_dir=suite_dir, recipe_roots=roots, yaml_root=yaml_root))

    # ---- value kinds

    def table(self, value: object, table: str, key: str | None = None) -> dict[str, object]:
        """``value`` as a TOML table, or fail."""
        if not isinstance(value, dict):
            self.fail(table, key, f"{key or 'the section'} must be a table, got {type(value).__name__}")
        return value

    def known_keys(self, data: Mapping[str, object], table: str, known: Iterable[str]) -> None:
        """Report every key that is not in ``known``."""
        allowed = tuple(known)
        for key in data:
            if key not in allowed:
                message = f"unknown key {key!r}{hint(key, allowed)}; known: {', '.join(allowed)}"
                self.attempt(partial(self.fail, table, key, message), None)

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

    def boolean(self, data: Mapping[str, object], table: str, key: str) -> bool:
        """An optional true/false (default false)."""
        value = data.get(key, False)
        if not isinstance(value, bool):
            self.fail(table, key, f"{key} must be true or false")
        return value

    def choice(self, data: Mapping[str, object], key: str, choices: tuple[str, ...]) -> str:
        """One of ``choices`` (default: the first)."""
        value = data.get(key, choices[0])
        if value not in choices:
            self.fail(SECTION, key, f"{key} = {value!r}: must be one of {', '.join(map(repr, choices))}")
        return str(value)

    def integer(self, data: Mapping[str, object], table: str, key: str, minimum: int) -> int | None:
        """An optional whole number >= ``minimum``."""
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(table, key, f"{key} must be a whole number >= {minimum}, got {value!r}")
        return value

    def dotted_keys(self, value: object, key: str) -> tuple[KeyPath, ...]:
        """Dotted YAML key patterns (``*`` matches one key), split on '.'."""
        if value == []:
            return ()
        patterns = []
        for item in self.strings(value, SECTION, key):
            parts = tuple(item.split("."))
            if not all(parts):
                self.fail(SECTION, key, f"{item!r} is not a dotted key (e.g. 'env.*.num_gpu_nodes')")
            patterns.append(parts)
        return tuple(patterns)

    # ---- the keys

    def roots(self, data: Mapping[str, object], suite_dir: str) -> tuple[str, ...]:
        """The recipe roots: inside the suite folder, none inside another."""
        default = tuple(f"{suite_dir}/{kind}" for kind in DEFAULT_LAYOUT.kinds)
        if "recipe-roots" not in data:
            return default
        none: list[str] = []
        items = self.attempt(lambda: self.strings(data["recipe-roots"], SECTION, "recipe-roots"), none)
        roots: list[str] = []
        for item in items:
            root = self.attempt(partial(self.recipe_root, item, suite_dir, roots), None)
            if root is not None:
                roots.append(root)
        return tuple(roots) if len(roots) == len(items) and roots else default

    def recipe_root(self, item: str, suite_dir: str, earlier: list[str]) -> str:
        """One recipe root, checked against the suite folder and the roots before it."""
        root = self.path(item, SECTION, "recipe-roots")
        if not inside(root, suite_dir) or root == suite_dir:
            self.fail(SECTION, "recipe-roots", f"recipe root {root!r} must be a folder inside suite-dir "
                                               f"{suite_dir!r} (the YAML mirror is relative to it)")
        for other in earlier:
            if inside(root, other) or inside(other, root):
                self.fail(SECTION, "recipe-roots", f"recipe roots {other!r} and {root!r} overlap")
        return root

    def node_keys(self, value: object) -> tuple[KeyPath, ...]:
        """extra-node-keys: key patterns counted as nodes on top of cluster.num_nodes."""
        patterns = self.dotted_keys(value, "extra-node-keys")
        for parts in patterns:
            for key in (CLUSTER_NODES, CLUSTER_GPUS):
                if len(parts) == len(key) and all(map(fnmatchcase, key, parts)):
                    self.fail(SECTION, "extra-node-keys", f"{'.'.join(parts)!r} matches {'.'.join(key)}, which is "
                                                          "not an extra node count")
        return patterns

    def base_extra_keys(self, data: Mapping[str, object], base_check: str) -> tuple[KeyPath, ...]:
        """base-extra-keys: keys a recipe may set although its base YAML lacks them."""
        if "base-extra-keys" not in data:
            return ()
        if base_check != MERGES:
            self.fail(SECTION, "base-extra-keys", f"base-extra-keys only applies with base-check = {MERGES!r}")
        return self.dotted_keys(data["base-extra-keys"], "base-extra-keys")

    def algos(self, value: object) -> dict[str, tuple[str, ...]]:
        """algo -> base YAML(s) of its recipes (``[]``: no base check)."""
        data = self.table(value, SECTION, "algos")
        if not data:
            self.fail(SECTION, "algos", "algos names no algo")
        algos: dict[str, tuple[str, ...]] = {}
        no_base: tuple[str, ...] = ()
        for algo, bases in data.items():
            algos[algo] = self.attempt(partial(self.algo, algo, bases), no_base)
        return algos

    def algo(self, algo: str, bases: object) -> tuple[str, ...]:
        """One algo's base YAMLs, each an existing file."""
        table = f"{SECTION}.algos"
        if not _ALGO_RE.fullmatch(algo):
            self.fail(table, algo, f"algo {algo!r} must be a name's first token (letters, digits, '_', '.')")
        listed = [bases] if isinstance(bases, str) else bases
        if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
            self.fail(table, algo, f"{algo} must be a base YAML path or a list of them")
        return tuple(self.existing_file(item, table, algo) for item in listed)

    def existing_file(self, value: str, table: str, key: str) -> str:
        """A path that must name an existing file."""
        rel = self.path(value, table, key)
        if not (self.root / rel).is_file():
            self.fail(table, key, f"{key} = {value!r}: no such file in the repository")
        return rel

    def suites(self, value: object) -> tuple[SuiteConfig, ...]:
        """The configured suites, in file order; subset suites checked against the others."""
        data = self.table(value, SECTION, "suites")
        if not data:
            self.fail(SECTION, "suites", "suites names no suite")
        parsed = [self.attempt(partial(self.suite, name, settings), None) for name, settings in data.items()]
        suites = tuple(suite for suite in parsed if suite is not None)
        for suite in suites:
            self.attempt(partial(self.subset_targets, suite, suites), None)
        return suites

    def suite(self, name: str, value: object) -> SuiteConfig:
        """One ``[tool.nrl-launch.lint.suites.<name>]`` table."""
        table = f"{SECTION}.suites.{name}"
        if not _SUITE_NAME_RE.fullmatch(name):
            self.fail(f"{SECTION}.suites", name, f"suite name {name!r} may only use letters, digits and _.+-")
        data = self.table(value, f"{SECTION}.suites", name)
        self.known_keys(data, table, _SUITE_KEYS)
        budget = self.attempt(lambda: self.integer(data, table, "budget", minimum=0), None)
        gpus = self.attempt(lambda: self.integer(data, table, "gpus-per-node", minimum=1), None)
        disabled = self.attempt(lambda: self.boolean(data, table, "disabled"), False)
        no_suites: tuple[str, ...] = ()
        subset_of = self.attempt(lambda: self.subset_of(data, table), no_suites)
        if disabled and budget is not None:
            self.fail(table, "budget", "a disabled suite is never launched: a budget means nothing there")
        if disabled and subset_of:
            self.fail(table, "subset-of", "a disabled suite is never launched: it cannot be a subset of another")
        return SuiteConfig(name=name, budget=budget, gpus_per_node=gpus, disabled=disabled, subset_of=subset_of)

    def subset_of(self, data: Mapping[str, object], table: str) -> tuple[str, ...]:
        """subset-of: a suite name or a list of them."""
        value = data.get("subset-of", [])
        listed = [value] if isinstance(value, str) else value
        if not isinstance(listed, list) or not all(isinstance(item, str) and item for item in listed):
            self.fail(table, "subset-of", "subset-of must be a suite name or a list of them")
        return tuple(listed)

    def subset_targets(self, suite: SuiteConfig, suites: tuple[SuiteConfig, ...]) -> None:
        """A subset suite names configured suites that list recipes themselves."""
        table = f"{SECTION}.suites.{suite.name}"
        by_name = {other.name: other for other in suites}
        for name in suite.subset_of:
            target = by_name.get(name)
            if name == suite.name:
                self.fail(table, "subset-of", f"suite {name!r} cannot be a subset of itself")
            if target is None:
                self.fail(table, "subset-of", f"subset-of names {name!r}, which is not a configured suite"
                                              f"{hint(name, by_name)}")
            if target.subset_of or target.disabled:
                what = "a subset suite itself" if target.subset_of else "disabled (never launched)"
                self.fail(table, "subset-of", f"subset-of names {name!r}, which is {what}: name the suite "
                                              "whose recipes this one runs again")

    def rule_ids(self, values: Iterable[str], table: str, key: str) -> frozenset[str]:
        """Declared rule ids, or fail on an unknown one."""
        for rule_id in values:
            if rule_id not in RULES:
                self.fail(table, key, f"unknown rule {rule_id!r}{hint(rule_id, RULES)}")
        return frozenset(values)

    def severities(self, value: object) -> dict[str, str]:
        """rule id -> error | warning | off."""
        table = f"{SECTION}.severity"
        data = self.table(value, SECTION, "severity")
        severities = {}
        for rule_id, severity in data.items():
            if self.attempt(partial(self.severity, table, rule_id, severity), False):
                severities[rule_id] = str(severity)
        return severities

    def severity(self, table: str, rule_id: str, severity: object) -> bool:
        """True for a declared rule and a known severity."""
        self.rule_ids([rule_id], table, rule_id)
        if severity not in SEVERITIES:
            self.fail(table, rule_id, f"{rule_id} = {severity!r}: severity must be one of {', '.join(SEVERITIES)}")
        return True

    def ignores(self, value: object) -> tuple[tuple[str, frozenset[str]], ...]:
        """glob -> rule ids that do not apply to the files it matches."""
        table = f"{SECTION}.per-file-ignores"
        data = self.table(value, SECTION, "per-file-ignores")
        ignores = []
        for glob, ids in data.items():
            rules = self.attempt(partial(self.ignore, table, glob, ids), None)
            if rules is not None:
                ignores.append((glob, rules))
        return tuple(ignores)

    def ignore(self, table: str, glob: str, ids: object) -> frozenset[str]:
        """The rule ids of one per-file-ignores glob."""
        if not glob.strip():
            self.fail(table, None, "an empty glob matches no file")
        return self.rule_ids(self.strings(ids, table, glob), table, glob)
