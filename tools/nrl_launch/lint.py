"""The repository checker behind ``nrl-launch lint``.

:func:`run_lint` walks a repository's recipe scripts
(``tests/test_suites/{llm,vlm}/*.sh``, top level only: sub-folders there are
per-experiment output folders), their YAML mirrors
(``examples/configs/recipes/{llm,vlm}/<name>.yaml``) and the suite files
(``tests/test_suites/*.txt``), and returns a :class:`LintReport` whose
``findings`` list every problem. It never raises on a malformed repository:
unreadable, binary or non-UTF-8 files, invalid YAML, odd names, missing
folders, symlink loops and the like all become findings. Each file is read at
most once.

Rule ids (also in :data:`RULES`):

``layout``            the repository lacks ``tests/test_suites`` (then the only finding),
                      or ``examples/configs/recipes`` while scripts exist
``file``              a ``*.sh`` / suite / YAML path that cannot be read as UTF-8 text:
                      a directory, a broken symlink or symlink loop, a binary or
                      non-UTF-8 file, a permission problem
``name``              the script's file name does not parse (:mod:`nrl_launch.names`)
``placement``         a ``vlm_`` script outside ``tests/test_suites/vlm/``, or another
                      script inside it
``yaml-missing``      a script without ``examples/configs/recipes/<llm|vlm>/<name>.yaml``
``yaml-orphan``       a recipe YAML without a script (YAMLs that another recipe YAML
                      names in ``defaults:`` are parents, not orphans)
``yaml-invalid``      a YAML that does not parse, or whose top level is not a mapping
``yaml-defaults``     a ``defaults:`` entry that is not a string, names a missing file
                      or one outside the repository, or closes a cycle
``suite-missing``     a script that no suite lists
``suite-duplicate``   a script listed more than once (in one suite or across suites);
                      reported at each repeated entry, naming the first one
``suite-entry``       a suite entry that is not an existing recipe script
``config``            the CONFIG block does not evaluate (the ConfigError's line)
``cluster-config``    the name's ``<N>n<G>g`` disagrees with CONFIG ``NUM_NODES`` /
                      ``GPUS_PER_NODE`` (default 8)
``cluster-yaml``      the YAML's ``cluster.num_nodes`` / ``cluster.gpus_per_node`` (own
                      or inherited through ``defaults:``) disagree with the name's
                      cluster token — or, for names without one (context-length or
                      unparsable names), with the CONFIG block
``context-hardware``  a context-length name (``…-8K.sh``) whose CONFIG block does not
                      assign both ``NUM_NODES`` and ``GPUS_PER_NODE``
``budget``            a suite's GPU-hours exceed its ``--budget``, or the budget names
                      an unknown suite

CONFIG blocks are evaluated with :func:`nrl_launch.config.parse_recipe` and an
empty environment: the linter checks what the recipe says, not what the
caller's environment would make of it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nrl_launch import config as config_mod
from nrl_launch.errors import ConfigError, UsageProblem
from nrl_launch.names import RecipeName, RecipeNameError, parse_name

RULES: dict[str, str] = {
    "layout": "repository layout: tests/test_suites (or examples/configs/recipes) missing",
    "file": "a file that cannot be read as UTF-8 text (directory, symlink loop, binary…)",
    "name": "script file name does not follow the naming rules",
    "placement": "vlm_ scripts belong in tests/test_suites/vlm/, others in llm/",
    "yaml-missing": "script without its YAML mirror",
    "yaml-orphan": "recipe YAML without its script",
    "yaml-invalid": "YAML that does not parse or is not a mapping",
    "yaml-defaults": "bad defaults: entry (not a string, missing, outside the repo, cycle)",
    "suite-missing": "script listed in no suite",
    "suite-duplicate": "script listed more than once",
    "suite-entry": "suite entry that is not an existing recipe script",
    "config": "CONFIG block does not evaluate",
    "cluster-config": "name's <N>n<G>g disagrees with CONFIG",
    "cluster-yaml": "YAML cluster settings disagree with the name (or CONFIG)",
    "context-hardware": "context-length name without NUM_NODES and GPUS_PER_NODE in CONFIG",
    "budget": "suite over its GPU-hour budget, or budget for an unknown suite",
}

SUITES_DIR = "tests/test_suites"
RECIPES_DIR = "examples/configs/recipes"
KINDS = ("llm", "vlm")
FORMATS = ("text", "json")

_BUDGET_RE = re.compile(r"([A-Za-z0-9_.+-]+)=(\d+)")
_COMMENT_RE = re.compile(r"(?:^|\s)#.*$")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Finding:
    """One problem: repo-relative ``path``, 1-based ``line`` or None, ``rule`` id."""

    path: str
    line: int | None
    rule: str
    message: str

    def sort_key(self) -> tuple:
        """Order of the report: path, then line (findings without a line first)."""
        return (self.path, self.line is not None, self.line or 0, self.rule, self.message)

    def text(self) -> str:
        """``path[:line]: rule: message``."""
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.rule}: {self.message}"

    def as_dict(self) -> dict:
        """The finding as a JSON-ready dict."""
        return {"path": self.path, "line": self.line, "rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class LintReport:
    """The result of :func:`run_lint`: sorted findings plus what was looked at."""

    root: Path
    findings: tuple[Finding, ...]
    scripts: int = 0
    suites: int = 0
    yamls: int = 0

    @property
    def ok(self) -> bool:
        """True when there is nothing to report."""
        return not self.findings


def parse_budget(text: str) -> tuple[str, int]:
    """Parse a ``--budget`` value ``SUITE=HOURS`` into ``(suite, hours)``.

    SUITE is a suite file's stem (``nightly`` for ``tests/test_suites/nightly.txt``),
    HOURS a non-negative integer number of GPU-hours. Raises UsageProblem otherwise.
    """
    match = _BUDGET_RE.fullmatch(text.strip())
    if not match:
        raise UsageProblem(
            f"--budget expects SUITE=HOURS (e.g. nightly=500, HOURS a whole number), got {text!r}"
        )
    return match.group(1), int(match.group(2))


def render(report: LintReport, fmt: str) -> str:
    """Render ``report`` as ``"text"`` or ``"json"``.

    text: one ``path[:line]: rule: message`` line per finding, sorted by path
    then line; the empty string when there are none.
    json: ``{"findings": [{path, line, rule, message}…], "summary": {…}}``.
    """
    if fmt == "text":
        return "\n".join(f.text() for f in report.findings)
    if fmt == "json":
        by_rule: dict[str, int] = {}
        for finding in report.findings:
            by_rule[finding.rule] = by_rule.get(finding.rule, 0) + 1
        payload = {
            "findings": [f.as_dict() for f in report.findings],
            "summary": {
                "findings": len(report.findings),
                "scripts": report.scripts,
                "suites": report.suites,
                "yamls": report.yamls,
                "by_rule": dict(sorted(by_rule.items())),
            },
        }
        return json.dumps(payload, indent=2)
    raise UsageProblem(f"unknown lint format {fmt!r} (choose from {', '.join(FORMATS)})")


def parse_suite(text: str) -> list[tuple[int, str]]:
    """``(line number, entry)`` of a suite file: one script path per line,
    ``#`` comments (whole-line or trailing) and blank lines ignored."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        entry = _COMMENT_RE.sub("", raw).strip()
        if entry:
            entries.append((number, entry))
    return entries


def run_lint(root: Path, budgets: Mapping[str, int]) -> LintReport:
    """Check the repository at ``root``; ``budgets`` maps suite stems to GPU-hours."""
    return _Linter(Path(os.path.abspath(root)), budgets).run()


# --------------------------------------------------------------------------- internals


@dataclass
class _Script:
    rel: str
    folder: str  # "llm" or "vlm": where it lives
    filename: str
    text: str | None = None
    name: RecipeName | None = None
    config: config_mod.RecipeConfig | None = None
    entries: list[tuple[str, int]] = field(default_factory=list)  # (suite rel, line)

    @property
    def stem(self) -> str:
        """The suite's name as ``--budget`` spells it (``nightly``)."""
        return self.filename[: -len(".sh")]


@dataclass
class _Yaml:
    rel: str
    key: str  # normalised absolute path, identity for cycles
    cluster: dict[str, tuple[object, int]] = field(default_factory=dict)
    parents: list[tuple[str, int]] = field(default_factory=list)  # (abs path, line)


@dataclass
class _Suite:
    rel: str
    stem: str
    entries: list[tuple[int, str]] = field(default_factory=list)  # (line, normalised rel path)


class _Linter:
    def __init__(self, root: Path, budgets: Mapping[str, int]) -> None:
        self.root = root
        self.root_str = str(root)
        self.budgets = budgets
        self.findings: set[Finding] = set()
        self.yamls: dict[str, _Yaml | None] = {}  # abs path -> parsed (None: unusable)

    # ---- helpers

    def add(self, path: str, line: int | None, rule: str, message: str) -> None:
        """Record one finding."""
        self.findings.add(Finding(_printable(path), line, rule, _printable(message)))

    def rel(self, abs_path: str) -> str:
        """``abs_path`` relative to the repository root, with '/'."""
        prefix = self.root_str.rstrip(os.sep) + os.sep
        if abs_path.startswith(prefix):
            return abs_path[len(prefix):].replace(os.sep, "/")
        return Path(os.path.relpath(abs_path, self.root_str)).as_posix()

    def read_text(self, abs_path: str, rel: str) -> str | None:
        """Read a file once; a `file` finding and None when it is not UTF-8 text."""
        try:
            with open(abs_path, "rb") as handle:
                data = handle.read()
        except IsADirectoryError:
            self.add(rel, None, "file", "is a directory, not a file")
            return None
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
            self.add(rel, None, "file", f"cannot read: {problem}")
            return None
        if b"\0" in data:
            self.add(rel, None, "file", "binary file (contains NUL bytes)")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            self.add(rel, line, "file", f"not UTF-8 text (byte 0x{data[exc.start]:02x})")
            return None
        return text.removeprefix("\ufeff")

    def check_regular(self, abs_path: str, rel: str) -> bool:
        """True for a (symlink to a) regular file; otherwise a `file` finding."""
        try:
            if os.path.isfile(abs_path):
                return True
            if os.path.isdir(abs_path):
                self.add(rel, None, "file", "is a directory, not a file")
            elif os.path.islink(abs_path):
                self.add(rel, None, "file", "broken symlink or symlink loop")
            else:
                self.add(rel, None, "file", "not a regular file")
        except (OSError, ValueError) as exc:
            self.add(rel, None, "file", f"cannot inspect: {exc}")
        return False

    def listdir(self, abs_dir: str) -> list[str]:
        """Sorted entries of a folder; an unreadable folder is a finding."""
        try:
            return sorted(os.listdir(abs_dir))
        except OSError as exc:
            self.add(self.rel(abs_dir), None, "layout", f"cannot list folder: {exc.strerror or exc}")
            return []

    # ---- main

    def run(self) -> LintReport:
        """Check everything and return the sorted report."""
        counts = {"scripts": 0, "suites": 0, "yamls": 0}
        suites_abs = os.path.join(self.root_str, SUITES_DIR)
        if not os.path.isdir(self.root_str):
            self.add(".", None, "layout", f"{self.root_str} is not a directory")
        elif not os.path.isdir(suites_abs):
            self.add(SUITES_DIR, None, "layout", f"no {SUITES_DIR}/ folder: not a recipe repository?")
        else:
            scripts = self.collect_scripts(suites_abs)
            suites = self.collect_suites(suites_abs)
            self.check_suites(scripts, suites)
            for script in scripts.values():
                self.check_script(script)
            yaml_count = self.check_yamls(scripts)
            self.check_budgets(scripts, suites)
            counts = {"scripts": len(scripts), "suites": len(suites), "yamls": yaml_count}
        findings = tuple(sorted(self.findings, key=Finding.sort_key))
        return LintReport(root=self.root, findings=findings, **counts)

    def collect_scripts(self, suites_abs: str) -> dict[str, _Script]:
        """Every ``*.sh`` under the llm/ and vlm/ suite folders, read once."""
        scripts: dict[str, _Script] = {}
        for folder in KINDS:
            folder_abs = os.path.join(suites_abs, folder)
            if not os.path.isdir(folder_abs):
                if os.path.lexists(folder_abs):
                    self.add(f"{SUITES_DIR}/{folder}", None, "layout", "not a folder")
                continue
            for filename in self.listdir(folder_abs):
                if not filename.endswith(".sh"):
                    continue  # helper files (common.env…)
                rel = f"{SUITES_DIR}/{folder}/{filename}"
                abs_path = os.path.join(folder_abs, filename)
                if not self.check_regular(abs_path, rel):
                    continue
                script = _Script(rel=rel, folder=folder, filename=filename)
                script.text = self.read_text(abs_path, rel)
                scripts[rel] = script
        return scripts

    def collect_suites(self, suites_abs: str) -> list[_Suite]:
        """Every suite file and its entries (bad entries are findings)."""
        suites: list[_Suite] = []
        for filename in self.listdir(suites_abs):
            if not filename.endswith(".txt"):
                continue
            rel = f"{SUITES_DIR}/{filename}"
            abs_path = os.path.join(suites_abs, filename)
            if not self.check_regular(abs_path, rel):
                continue
            suite = _Suite(rel=rel, stem=filename[: -len(".txt")])
            suites.append(suite)
            text = self.read_text(abs_path, rel)
            if text is None:
                continue
            for number, entry in parse_suite(text):
                if os.path.isabs(entry):
                    self.add(rel, number, "suite-entry",
                             f"{entry}: absolute path; entries are relative to the repository root")
                    continue
                normalised = os.path.normpath(entry).replace(os.sep, "/")
                if normalised == ".." or normalised.startswith("../"):
                    self.add(rel, number, "suite-entry", f"{entry}: outside the repository")
                    continue
                suite.entries.append((number, normalised))
        return suites

    def check_suites(self, scripts: dict[str, _Script], suites: list[_Suite]) -> None:
        """Each script in exactly one suite; each entry an existing script."""
        for suite in suites:
            for number, entry in suite.entries:
                script = scripts.get(entry)
                if script is not None:
                    script.entries.append((suite.rel, number))
                    continue
                abs_path = os.path.join(self.root_str, entry)
                if os.path.isfile(abs_path):
                    message = (f"{entry}: not a recipe script "
                               f"(expected {SUITES_DIR}/llm/*.sh or {SUITES_DIR}/vlm/*.sh)")
                elif os.path.lexists(abs_path):
                    message = f"{entry}: not a regular file"
                else:
                    message = f"{entry}: no such file"
                self.add(suite.rel, number, "suite-entry", message)
        for script in scripts.values():
            if not script.entries:
                self.add(script.rel, None, "suite-missing", "not listed in any tests/test_suites/*.txt")
                continue
            first_suite, first_line = script.entries[0]
            for suite_rel, number in script.entries[1:]:
                self.add(suite_rel, number, "suite-duplicate",
                         f"{script.rel} is already listed at {first_suite}:{first_line}")

    def check_script(self, script: _Script) -> None:
        """Name, placement, CONFIG block and the name's hardware against it."""
        vlm_name = script.filename.startswith("vlm_")
        expected = "vlm" if vlm_name else "llm"
        if script.folder != expected:
            what = "vlm_ scripts" if vlm_name else "scripts without the vlm_ prefix"
            self.add(script.rel, None, "placement", f"{what} belong in {SUITES_DIR}/{expected}/")
        try:
            script.name = parse_name(script.filename)
        except RecipeNameError as exc:
            self.add(script.rel, None, "name", exc.reason)
        if script.text is None:
            return
        try:
            script.config = config_mod.parse_recipe(script.text, script.rel, {})
        except ConfigError as exc:
            self.add(script.rel, exc.line, "config", exc.message)
            return
        except Exception as exc:  # an evaluator bug must not abort the whole lint
            self.add(script.rel, None, "config", f"CONFIG evaluation failed: {type(exc).__name__}: {exc}")
            return
        name, cfg = script.name, script.config
        if name is None:
            return
        if name.nodes is not None and name.gpus is not None:
            if cfg.num_nodes != name.nodes:
                self.add(script.rel, self.assignment_line(script, "NUM_NODES"), "cluster-config",
                         f"name says {name.cluster} but CONFIG has NUM_NODES={cfg.num_nodes}")
            if cfg.gpus_per_node != name.gpus:
                self.add(script.rel, self.assignment_line(script, "GPUS_PER_NODE"), "cluster-config",
                         f"name says {name.cluster} but CONFIG has GPUS_PER_NODE={cfg.gpus_per_node}"
                         + ("" if "GPUS_PER_NODE" in cfg.values else " (the default)"))
        elif name.context_length is not None:
            missing = [key for key in ("NUM_NODES", "GPUS_PER_NODE") if key not in cfg.values]
            if missing:
                self.add(script.rel, cfg.config_line, "context-hardware",
                         f"context-length name ({name.context_length}) must state its hardware in "
                         f"CONFIG: assign {' and '.join(missing)}")

    @staticmethod
    def assignment_line(script: _Script, key: str) -> int | None:
        """Line of the last ``KEY=`` assignment in the CONFIG block, else the marker line."""
        cfg = script.config
        if cfg is None:
            return None
        return cfg.assignment_lines.get(key, cfg.config_line)

    # ---- YAML

    def check_yamls(self, scripts: dict[str, _Script]) -> int:
        """YAML mirrors both ways and the YAML's cluster keys; returns the YAML count."""
        recipes_abs = os.path.join(self.root_str, RECIPES_DIR)
        if not os.path.isdir(recipes_abs):
            if scripts:
                self.add(RECIPES_DIR, None, "layout",
                         f"no {RECIPES_DIR}/ folder: YAML mirrors not checked")
            return 0
        recipe_yamls: dict[str, str] = {}  # rel -> abs
        for folder in KINDS:
            folder_abs = os.path.join(recipes_abs, folder)
            if not os.path.isdir(folder_abs):
                continue
            for filename in self.listdir(folder_abs):
                if filename.endswith(".yaml"):
                    recipe_yamls[f"{RECIPES_DIR}/{folder}/{filename}"] = os.path.join(folder_abs, filename)
        for abs_path in recipe_yamls.values():
            self.load_yaml_tree(abs_path)
        self.check_cycles()

        referenced: set[str] = set()
        for doc in self.yamls.values():
            if doc is not None:
                referenced.update(os.path.normpath(parent) for parent, _ in doc.parents)

        script_stems = {(s.folder, s.stem) for s in scripts.values()}
        for rel, abs_path in recipe_yamls.items():
            folder, filename = rel.split("/")[-2:]
            if (folder, filename[: -len(".yaml")]) in script_stems:
                continue
            if os.path.normpath(abs_path) in referenced:
                continue
            self.add(rel, None, "yaml-orphan", f"no script {SUITES_DIR}/{folder}/{filename[:-5]}.sh")

        for script in scripts.values():
            rel = f"{RECIPES_DIR}/{script.folder}/{script.stem}.yaml"
            abs_path = recipe_yamls.get(rel)
            if abs_path is None:
                self.add(script.rel, None, "yaml-missing", f"no YAML mirror {rel}")
                continue
            self.check_cluster_yaml(script, abs_path, rel)
        return len(self.yamls)

    def load_yaml_tree(self, abs_path: str) -> None:
        """Load a YAML and, transitively, its ``defaults:`` parents."""
        pending = [abs_path]
        while pending:
            current = os.path.normpath(pending.pop())
            if current in self.yamls:
                continue
            doc = self.load_yaml(current)
            self.yamls[current] = doc
            if doc is not None:
                pending.extend(parent for parent, _ in doc.parents)

    def load_yaml(self, abs_path: str) -> _Yaml | None:
        """Parse one YAML file once (None, with a finding, when unusable)."""
        rel = self.rel(abs_path)
        if not self.check_regular(abs_path, rel):
            return None
        text = self.read_text(abs_path, rel)
        if text is None:
            return None
        try:
            node = yaml.compose(text, Loader=_YAML_LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or str(exc)
            self.add(rel, line, "yaml-invalid", f"invalid YAML: {problem}")
            return None
        except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:  # e.g. no mark
            self.add(rel, None, "yaml-invalid", f"invalid YAML: {type(exc).__name__}: {exc}")
            return None
        doc = _Yaml(rel=rel, key=abs_path)
        if node is None:
            return doc  # empty document
        if not isinstance(node, yaml.MappingNode):
            self.add(rel, node.start_mark.line + 1, "yaml-invalid", "top level is not a mapping")
            return None
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.value == "defaults":
                doc.parents = self.yaml_parents(abs_path, rel, value_node)
            elif key_node.value == "cluster" and isinstance(value_node, yaml.MappingNode):
                doc.cluster = {}
                for sub_key, sub_value in value_node.value:
                    if isinstance(sub_key, yaml.ScalarNode) and sub_key.value in ("num_nodes", "gpus_per_node"):
                        doc.cluster[sub_key.value] = (_scalar_int(sub_value), sub_key.start_mark.line + 1)
        return doc

    def yaml_parents(self, abs_path: str, rel: str, node: yaml.Node) -> list[tuple[str, int]]:
        """The ``defaults:`` parents of a YAML document, with their lines."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag.endswith(":null"):
                return []
            items = [node]
        elif isinstance(node, yaml.SequenceNode):
            items = node.value
        else:
            self.add(rel, node.start_mark.line + 1, "yaml-defaults",
                     "defaults must be a string or a list of strings")
            return []
        parents: list[tuple[str, int]] = []
        base = os.path.dirname(abs_path)
        for item in items:
            line = item.start_mark.line + 1
            if not isinstance(item, yaml.ScalarNode) or not item.tag.endswith(":str") or not item.value:
                self.add(rel, line, "yaml-defaults", "defaults entries must be non-empty strings")
                continue
            target = os.path.normpath(os.path.join(base, item.value))
            if os.path.commonpath([target, self.root_str]) != self.root_str:
                self.add(rel, line, "yaml-defaults", f"parent {item.value!r} is outside the repository")
                continue
            if not os.path.isfile(target):
                if os.path.isdir(target):
                    problem = "is a directory"
                elif os.path.islink(target):
                    problem = "is a broken symlink or symlink loop"
                elif os.path.lexists(target):
                    problem = "is not a regular file"
                else:
                    problem = "not found"
                self.add(rel, line, "yaml-defaults", f"parent {item.value!r} {problem}")
                continue
            parents.append((target, line))
        return parents

    def check_cycles(self) -> None:
        """A ``defaults:`` chain that comes back to itself is a finding."""
        state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
        for start in list(self.yamls):
            if start in state:
                continue
            state[start] = 1
            stack: list[tuple[str, int]] = [(start, 0)]
            while stack:
                current, index = stack[-1]
                doc = self.yamls.get(current)
                parents = doc.parents if doc is not None else []
                if index >= len(parents):
                    state[current] = 2
                    stack.pop()
                    continue
                stack[-1] = (current, index + 1)
                parent, line = parents[index]
                parent = os.path.normpath(parent)
                if state.get(parent) == 1:
                    chain = [self.rel(p) for p, _ in stack]
                    chain = chain[chain.index(self.rel(parent)):] + [self.rel(parent)]
                    self.add(self.rel(current), line, "yaml-defaults",
                             "defaults cycle: " + " -> ".join(chain))
                elif parent not in state:
                    state[parent] = 1
                    stack.append((parent, 0))

    def lookup_cluster(self, abs_path: str, key: str, seen: frozenset[str]) -> tuple[object, str, int] | None:
        """(value, defining rel path, line) of ``cluster.<key>``, following defaults."""
        doc = self.yamls.get(os.path.normpath(abs_path))
        if doc is None or doc.key in seen:
            return None
        if key in doc.cluster:
            value, line = doc.cluster[key]
            return value, doc.rel, line
        for parent, _ in reversed(doc.parents):  # later parents override earlier ones
            found = self.lookup_cluster(parent, key, seen | {doc.key})
            if found is not None:
                return found
        return None

    def check_cluster_yaml(self, script: _Script, abs_path: str, rel: str) -> None:
        """The YAML's cluster keys (own or inherited) against the script's hardware."""
        name, cfg = script.name, script.config
        if name is not None and name.nodes is not None:
            expected = {"num_nodes": name.nodes, "gpus_per_node": name.gpus}
            source = f"the name says {name.cluster}"
        elif cfg is not None:
            expected = {"num_nodes": cfg.num_nodes, "gpus_per_node": cfg.gpus_per_node}
            source = f"CONFIG has {cfg.num_nodes}n{cfg.gpus_per_node}g"
        else:
            return
        for key, want in expected.items():
            found = self.lookup_cluster(abs_path, key, frozenset())
            if found is None:
                continue
            value, where, line = found
            if not isinstance(value, int) or value == want:
                continue
            if where == rel:
                self.add(rel, line, "cluster-yaml", f"cluster.{key}={value} but {source}")
            else:
                self.add(rel, None, "cluster-yaml",
                         f"cluster.{key}={value} (inherited from {where}:{line}) but {source}")

    # ---- budgets

    def check_budgets(self, scripts: dict[str, _Script], suites: list[_Suite]) -> None:
        """Each ``--budget SUITE=HOURS`` against the suite's GPU-hours."""
        by_stem = {suite.stem: suite for suite in suites}
        for stem, hours in self.budgets.items():
            suite = by_stem.get(stem)
            if suite is None:
                known = ", ".join(sorted(by_stem)) or "none"
                self.add(f"{SUITES_DIR}/{stem}.txt", None, "budget",
                         f"budget for unknown suite {stem!r} (known suites: {known})")
                continue
            total = 0
            uncounted = 0
            for _, entry in suite.entries:
                script = scripts.get(entry)
                if script is not None and script.config is not None:
                    total += script.config.gpu_hours
                else:
                    uncounted += 1
            if total > hours:
                note = f" ({uncounted} entries without a valid CONFIG not counted)" if uncounted else ""
                self.add(suite.rel, None, "budget",
                         f"suite {stem!r} needs {total} GPU-hours, over its budget of {hours}{note}")


def _printable(text: str) -> str:
    """``text`` with undecodable file-name bytes (surrogate escapes) replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _scalar_int(node: yaml.Node) -> object:
    """The integer a YAML scalar denotes (digit strings too), else a non-int marker."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    if node.tag.endswith(":int"):
        try:
            value = yaml.load(node.value, Loader=_YAML_LOADER)
        except yaml.YAMLError:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if node.tag.endswith(":str") and node.value.strip().isdigit():
        return int(node.value.strip())
    return node.value
