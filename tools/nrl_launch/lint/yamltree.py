"""The YAML ``defaults:`` tree: recipe YAMLs, the parents they name, and
inherited values.

A YAML's ``defaults:`` (a string or a list of strings, paths relative to the
file) names parent configs merged before it, in order: a later parent
overrides an earlier one, the file itself overrides them all, mappings merge
key by key and anything else replaces what it overrides. Each file is parsed
once (``yaml.compose``: nodes keep their line numbers) and only the keys that
match a *watched* pattern (``cluster.num_nodes``, ``env.*.num_gpu_nodes``…,
``*`` matching one key) are kept, so inheritance is cheap to follow. With
``full`` every key is kept as well (a :class:`KeyNode` tree), for the
question whether a recipe merges into its base YAML (:func:`unknown_keys`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import yaml

from nrl_launch.lint.files import FileReader
from nrl_launch.lint.options import KeyPath
from nrl_launch.lint.report import Collector

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Leaf:
    """A watched key's value: the integer it denotes (None if it is not one),
    how it is written, and where."""

    value: int | None
    text: str
    rel: str
    line: int

    def where(self) -> str:
        """``rel:line``."""
        return f"{self.rel}:{self.line}"


# A watched key's entry: its Leaf, or None when a non-mapping value at a
# prefix of it (``env: null``) hides whatever a parent set below.
Entry = Leaf | None


@dataclass(frozen=True)
class KeyNode:
    """A key of a YAML mapping: where it is set and, when its value is a
    mapping, the keys below it (None for any other value)."""

    rel: str
    line: int
    children: Mapping[str, KeyNode] | None


@dataclass
class _Doc:
    rel: str
    parents: list[tuple[str, int]] = field(default_factory=list)  # (normalised abs path, line)
    defaults_line: int | None = None
    own: dict[KeyPath, Entry] = field(default_factory=dict)
    keys: Mapping[str, KeyNode] = field(default_factory=dict)  # with ``full``: every key but defaults


class YamlTree:
    """The YAMLs loaded so far and their inherited watched keys."""

    def __init__(self, reader: FileReader, collector: Collector, watched: tuple[KeyPath, ...],
                 full: bool = False) -> None:
        self.reader = reader
        self.collector = collector
        self.watched = watched
        self.full = full  # keep every key, not only the watched ones
        self.docs: dict[str, _Doc | None] = {}  # normalised abs path -> parsed (None: unusable)
        self._views: dict[str, dict[KeyPath, Entry]] = {}
        self._ancestors: dict[str, frozenset[str]] = {}
        self._resolved: dict[str, Mapping[str, KeyNode]] = {}

    # ---- loading

    def load(self, abs_path: str) -> None:
        """Load a YAML and, transitively, its ``defaults:`` parents (each once)."""
        pending = [os.path.normpath(abs_path)]
        while pending:
            current = pending.pop()
            if current in self.docs:
                continue
            doc = self._parse(current)
            self.docs[current] = doc
            if doc is not None:
                pending.extend(parent for parent, _ in doc.parents)

    def _parse(self, abs_path: str) -> _Doc | None:
        rel = self.reader.rel(abs_path)
        if not self.reader.is_regular(abs_path, rel):
            return None
        text = self.reader.read(abs_path, rel)
        if text is None:
            return None
        try:
            node = yaml.compose(text, Loader=_LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.collector.add(rel, None if mark is None else mark.line + 1, "yaml-invalid",
                               f"invalid YAML: {exc.problem or exc}")
            return None
        except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:  # errors without a mark
            self.collector.add(rel, None, "yaml-invalid", f"invalid YAML: {type(exc).__name__}: {exc}")
            return None
        doc = _Doc(rel=rel)
        if node is None:
            return doc  # an empty document
        if not isinstance(node, yaml.MappingNode):
            self.collector.add(rel, node.start_mark.line + 1, "yaml-invalid", "top level is not a mapping")
            return None
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "defaults":
                doc.defaults_line = key_node.start_mark.line + 1
                doc.parents = self._parents(abs_path, rel, value_node)
        self._collect(node, (), doc)
        if self.full:
            doc.keys = {key: child for key, child in _key_nodes(node, rel).items() if key != "defaults"}
        return doc

    def _parents(self, abs_path: str, rel: str, node: yaml.Node) -> list[tuple[str, int]]:
        """The ``defaults:`` parents of a document, with their lines."""
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return []
        if not isinstance(node, (yaml.ScalarNode, yaml.SequenceNode)):
            self.collector.add(rel, node.start_mark.line + 1, "yaml-defaults",
                               "defaults must be a string or a list of strings")
            return []
        items = [node] if isinstance(node, yaml.ScalarNode) else node.value
        parents = []
        for item in items:
            line = item.start_mark.line + 1
            if not isinstance(item, yaml.ScalarNode) or not item.tag.endswith(":str") or not item.value:
                self.collector.add(rel, line, "yaml-defaults", "defaults entries must be non-empty strings")
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(abs_path), item.value))
            problem = self._parent_problem(target)
            if problem:
                self.collector.add(rel, line, "yaml-defaults", f"parent {item.value!r} {problem}")
            else:
                parents.append((target, line))
        return parents

    def _parent_problem(self, target: str) -> str | None:
        """Why ``target`` cannot be a parent, or None."""
        if os.path.commonpath([target, self.reader.root]) != self.reader.root:
            return "is outside the repository"
        if os.path.isfile(target):
            return None
        if os.path.isdir(target):
            return "is a directory"
        if os.path.islink(target):
            return "is a broken symlink or symlink loop"
        return "is not a regular file" if os.path.lexists(target) else "not found"

    def _collect(self, mapping: yaml.MappingNode, path: KeyPath, doc: _Doc) -> None:
        """Record the watched keys below ``mapping`` (found at ``path``) in ``doc.own``."""
        for key_node, value_node in mapping.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            sub = (*path, key_node.value)
            full, prefix = self._match(sub)
            if full:
                doc.own[sub] = _leaf(value_node, doc.rel, key_node.start_mark.line + 1)
            if prefix and isinstance(value_node, yaml.MappingNode):
                self._collect(value_node, sub, doc)
            elif prefix and not full:
                doc.own[sub] = None  # replaces the whole mapping a parent had here

    def _match(self, path: KeyPath) -> tuple[bool, bool]:
        """(a watched pattern matches ``path``, ``path`` is a proper prefix of a pattern's match)."""
        full = prefix = False
        for pattern in self.watched:
            if len(pattern) >= len(path) and all(map(fnmatchcase, path, pattern)):
                full = full or len(pattern) == len(path)
                prefix = prefix or len(pattern) > len(path)
        return full, prefix

    # ---- queries

    def check_cycles(self) -> None:
        """A ``defaults:`` chain that comes back to itself is a ``yaml-defaults`` finding."""
        state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
        for start in list(self.docs):
            if start in state:
                continue
            state[start] = 1
            stack: list[tuple[str, int]] = [(start, 0)]
            while stack:
                current, index = stack[-1]
                doc = self.docs.get(current)
                parents = doc.parents if doc is not None else []
                if index >= len(parents):
                    state[current] = 2
                    stack.pop()
                    continue
                stack[-1] = (current, index + 1)
                parent, line = parents[index]
                if state.get(parent) == 1:
                    chain = [self.reader.rel(p) for p, _ in stack]
                    chain = chain[chain.index(self.reader.rel(parent)):] + [self.reader.rel(parent)]
                    self.collector.add(self.reader.rel(current), line, "yaml-defaults",
                                       "defaults cycle: " + " -> ".join(chain))
                elif parent not in state:
                    state[parent] = 1
                    stack.append((parent, 0))

    def referenced(self) -> set[str]:
        """Every file some loaded YAML names as a parent."""
        return {parent for doc in self.docs.values() if doc is not None for parent, _ in doc.parents}

    def view(self, abs_path: str) -> dict[KeyPath, Leaf]:
        """The watched keys of a YAML after inheritance: key path -> Leaf."""
        merged = self._merged(os.path.normpath(abs_path), frozenset())
        return {path: entry for path, entry in merged.items() if entry is not None}

    def _merged(self, key: str, stack: frozenset[str]) -> Mapping[KeyPath, Entry]:
        if key in self._views:
            return self._views[key]
        doc = self.docs.get(key)
        if doc is None or key in stack:  # unusable, or a cycle (reported by check_cycles)
            return {}
        merged: dict[KeyPath, Entry] = {}
        for parent, _ in doc.parents:
            _overlay(merged, self._merged(parent, stack | {key}))
        _overlay(merged, doc.own)
        self._views[key] = merged
        return merged

    def ancestors(self, abs_path: str) -> frozenset[str]:
        """Every file a YAML inherits from, directly or through its parents."""
        return self._ancestors_of(os.path.normpath(abs_path), frozenset())

    def _ancestors_of(self, key: str, stack: frozenset[str]) -> frozenset[str]:
        if key in self._ancestors:
            return self._ancestors[key]
        doc = self.docs.get(key)
        if doc is None or key in stack:
            return frozenset()
        found: set[str] = set()
        for parent, _ in doc.parents:
            found.add(parent)
            found |= self._ancestors_of(parent, stack | {key})
        self._ancestors[key] = frozenset(found)
        return self._ancestors[key]

    def resolved(self, abs_path: str) -> Mapping[str, KeyNode]:
        """Every key of a YAML (``full`` trees) after its ``defaults:`` are merged
        in, as the program reading it sees them: later parents override
        earlier ones, the file overrides them all, mappings merge key by key."""
        return self._resolve(os.path.normpath(abs_path), frozenset())

    def _resolve(self, key: str, stack: frozenset[str]) -> Mapping[str, KeyNode]:
        if key in self._resolved:
            return self._resolved[key]
        doc = self.docs.get(key)
        if doc is None or key in stack:  # unusable, or a cycle (reported by check_cycles)
            return {}
        merged: Mapping[str, KeyNode] = {}
        for parent, _ in doc.parents:
            merged = _merge_keys(merged, self._resolve(parent, stack | {key}))
        merged = _merge_keys(merged, doc.keys)
        self._resolved[key] = merged
        return merged

    def defaults_line(self, abs_path: str) -> int | None:
        """The line of the YAML's ``defaults:`` key, if it has one."""
        doc = self.docs.get(os.path.normpath(abs_path))
        return None if doc is None else doc.defaults_line


def _overlay(base: dict[KeyPath, Entry], top: Mapping[KeyPath, Entry]) -> None:
    """Merge ``top`` over ``base``: an entry replaces what ``base`` has at its
    path, below it (a non-mapping replaces a whole mapping) and above it (a
    parent's non-mapping replaced by a mapping)."""
    for path, entry in top.items():
        size = len(path)
        for old in [p for p in base if p[:size] == path or path[: len(p)] == p]:
            del base[old]
        base[path] = entry


def _leaf(node: yaml.Node, rel: str, line: int) -> Leaf:
    """A watched key's value: YAML integers and digit strings are integers;
    interpolations, other text, null (text ``"null"``) and collections are not."""
    if not isinstance(node, yaml.ScalarNode):
        return Leaf(None, "<a list>" if isinstance(node, yaml.SequenceNode) else "<a mapping>", rel, line)
    if node.tag.endswith(":null"):
        return Leaf(None, "null", rel, line)
    text = node.value
    value = None
    if node.tag.endswith(":int"):
        try:
            loaded = yaml.load(text, Loader=_LOADER)
        except yaml.YAMLError:
            loaded = None
        value = loaded if isinstance(loaded, int) and not isinstance(loaded, bool) else None
    elif node.tag.endswith(":str") and text.strip().isdigit():
        value = int(text.strip())
    return Leaf(value, text, rel, line)


def _key_nodes(mapping: yaml.MappingNode, rel: str) -> dict[str, KeyNode]:
    """The keys of a mapping node, recursively (merge keys ``<<`` are left out)."""
    keys = {}
    for key_node, value_node in mapping.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        children = _key_nodes(value_node, rel) if isinstance(value_node, yaml.MappingNode) else None
        keys[key_node.value] = KeyNode(rel, key_node.start_mark.line + 1, children)
    return keys


def _merge_keys(base: Mapping[str, KeyNode], top: Mapping[str, KeyNode]) -> Mapping[str, KeyNode]:
    """``top`` merged over ``base``: a mapping over a mapping merges, anything else replaces."""
    if not base:
        return top
    merged = dict(base)
    for key, node in top.items():
        below = base.get(key)
        if below is not None and below.children is not None and node.children is not None:
            node = KeyNode(node.rel, node.line, _merge_keys(below.children, node.children))
        merged[key] = node
    return merged


def unknown_keys(keys: Mapping[str, KeyNode], base: Mapping[str, KeyNode], allowed: tuple[KeyPath, ...] = (),
                 prefix: KeyPath = ()) -> list[tuple[KeyPath, KeyNode]]:
    """The keys of ``keys`` that ``base`` lacks, as an OmegaConf merge into
    ``base`` in struct mode finds them: below a key whose value is a mapping
    on both sides, key by key; where either value is no mapping, the value
    replaces the base's. A key matching an ``allowed`` pattern (``*``: any
    one key) may be added, with everything below it; so may the keys on the
    way to it."""
    found = []
    for key, node in keys.items():
        path = (*prefix, key)
        below = base.get(key)
        if below is None:
            if any(_matches(path, pattern) for pattern in allowed):
                continue
            if node.children is not None and any(_matches(path, pattern[:len(path)]) for pattern in allowed
                                                 if len(pattern) > len(path)):
                found += unknown_keys(node.children, {}, allowed, path)
                continue
            found.append((path, node))
        elif below.children is not None and node.children is not None:
            found += unknown_keys(node.children, below.children, allowed, path)
    return found


def _matches(path: KeyPath, pattern: KeyPath) -> bool:
    return len(path) == len(pattern) and all(map(fnmatchcase, path, pattern))
