"""A reader of the YAML the launcher and ``continue.sh`` write into a manifest, without PyYAML's
object building: block mappings and sequences, one scalar a line in one of the simplest forms,
printable ASCII, whose meaning PyYAML's own resolver decides. :func:`parse` gives exactly what
``yaml.load`` gives for such a text, and None for any other (PyYAML then reads it); property tests
check both against PyYAML (tests/unit/test_manifest.py).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import yaml

# What the launcher's own writers (PyYAML's dump of the manifest and of an entry, continue.sh's
# printf lines) put in a manifest, read without PyYAML: block mappings and sequences, one scalar a
# line in one of the simplest forms, printable ASCII only. PyYAML builds every value in Python even
# with libyaml's parser (about 1 ms for a manifest of a few runs: most of ``nrl-launch status`` over
# a thousand experiments); anything else, anywhere in the file, and the whole file is PyYAML's.
_KEY = re.compile(r"('(?:[^']|'')*'|\"[^\"\\]*\"|[A-Za-z0-9_][A-Za-z0-9_./+-]*):(?: (.+))?\Z")
_SINGLE_QUOTED = re.compile(r"'((?:[^']|'')*)'\Z")
_DOUBLE_QUOTED = re.compile(r'"([^"\\]*)"\Z')  # without escapes
# plain: no quote, '#', indicator first, ": " or colon last; spaces only between words
_PLAIN = re.compile(r"(?!.*: )[A-Za-z0-9_~./](?:[A-Za-z0-9_./+ @:-]*[A-Za-z0-9_./+@-])?\Z")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_RESOLVER = yaml.resolver.Resolver()
_TAGS = "tag:yaml.org,2002:"
_EMPTY: dict[str, Any] = {"{}": {}, "[]": []}


class _Unread(Exception):
    """A line the fast reader leaves to PyYAML (and with it, the whole file)."""


def parse(text: str) -> Any:
    """The file's data exactly as ``yaml.load`` gives it, for a file written as the launcher and
    continue.sh write manifests; None for any other file (then PyYAML reads it).

    The ``runs:`` entries, most of a manifest that has runs, are read a whole line at a time
    (:func:`_entries_fast`); anything else there, and the whole file is read line by line."""
    head, mark, runs = text.partition("\nruns:\n")
    if mark and runs:
        entries = _entries_fast(runs)
        if entries is not None:
            data = _parse_lines(head + mark)
            if data is not None and "runs" in data and data["runs"] is None:
                data["runs"] = entries
                return data
    return _parse_lines(text)


# One field of a ``runs:`` entry, as the launcher and continue.sh append them: ``- key: value`` (an
# entry's first) or ``  key: value``, a plain key and a one-line value; a value single-quoted without
# a quote inside (what the launcher writes) is taken from the match. _ENTRY_FIELDS: lines of them.
_ENTRY_FIELD = re.compile(r"(- |  )([A-Za-z_][A-Za-z0-9_]*): (?:'([^'\n]*)'(?=\n)|([^\n]+))\n")
_ENTRY_FIELDS = re.compile(r"(?:(?:- |  )[A-Za-z_][A-Za-z0-9_]*: [^\n]+\n)+")


def _entries_fast(text: str) -> list[dict[Any, Any]] | None:
    """The entries of the text after ``runs:`` when every line of it is an entry's field
    (:data:`_ENTRY_FIELD`) with a scalar :func:`_scalar` reads; None otherwise. (The lines are
    checked and split by the regex engine: a thousand manifests of many runs are read by status.)"""
    if not (text.startswith("- ") and text.isascii() and text.replace("\n", "").isprintable()
            and _ENTRY_FIELDS.fullmatch(text)):
        return None
    items: list[dict[Any, Any]] = []
    item: dict[Any, Any] = {}
    try:
        for lead, word, quoted, raw in _ENTRY_FIELD.findall(text):
            if lead == "- ":
                item = {}
                items.append(item)
            key = _plain(word)
            if key is _Unread or key in item:
                return None  # (PyYAML keeps the last of a duplicate key: left to it)
            item[key] = _scalar(raw) if raw else quoted
    except _Unread:
        return None
    return items


def _parse_lines(text: str) -> Any:
    """:func:`parse` line by line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final line break
    parsed = []
    for line in lines:
        content = line.lstrip(" ")
        if not content or not (content.isascii() and content.isprintable()):  # printable ASCII: 0x20-0x7e
            return None
        parsed.append((len(line) - len(content), content))
    try:
        data, end = _mapping(parsed, 0, 0)
    except _Unread:
        return None
    return data if end == len(parsed) and data else None


def _mapping(lines: list[tuple[int, str]], at: int, indent: int) -> tuple[dict[Any, Any], int]:
    """The block mapping whose keys are the lines from ``at`` indented by ``indent``; with the index
    of the first line after it."""
    data: dict[Any, Any] = {}
    while at < len(lines) and lines[at][0] == indent and not lines[at][1].startswith("- "):
        match = _KEY.match(lines[at][1])
        if match is None:
            raise _Unread
        key = _scalar(match.group(1))
        if key in data or isinstance(key, (dict, list)):
            raise _Unread  # (PyYAML keeps the last of a duplicate key: left to it)
        at += 1
        if match.group(2) is not None:
            data[key] = _scalar(match.group(2))
        elif at < len(lines) and lines[at][0] == indent + 2:
            nested = _sequence if lines[at][1].startswith("- ") else _mapping
            data[key], at = nested(lines, at, indent + 2)
        elif at < len(lines) and lines[at][0] == indent and lines[at][1].startswith("- "):
            data[key], at = _sequence(lines, at, indent)  # PyYAML writes sequences unindented
        else:
            data[key] = None
    return data, at


def _sequence(lines: list[tuple[int, str]], at: int, indent: int) -> tuple[list[Any], int]:
    """The block sequence of the ``- `` lines from ``at`` indented by ``indent``; an item ``- key: …``
    is a mapping whose other keys are indented by two more."""
    items: list[Any] = []
    while at < len(lines) and lines[at][0] == indent and lines[at][1].startswith("- "):
        rest = lines[at][1][2:]
        if _KEY.match(rest) is not None and not rest.startswith(("'", '"')):
            lines[at] = (indent + 2, rest)  # the item's first key, where its other keys are
            item, at = _mapping(lines, at, indent + 2)
            items.append(item)
        else:
            items.append(_scalar(rest))
            at += 1
    return items, at


def _scalar(raw: str) -> Any:
    """The value of a scalar written in one of the simplest forms, as PyYAML reads it: quoted
    without escapes, ``{}`` or ``[]``, or plain when PyYAML's resolver takes it for text, a decimal
    number, null or a boolean; _Unread otherwise."""
    if not raw:
        raise _Unread
    if raw[0] == "'":
        single = _SINGLE_QUOTED.match(raw)
        if single is None:
            raise _Unread
        return single.group(1).replace("''", "'")
    if raw[0] == '"':
        double = _DOUBLE_QUOTED.match(raw)
        if double is None:
            raise _Unread
        return double.group(1)
    if raw in _EMPTY:
        return type(_EMPTY[raw])()
    value = _plain(raw)
    if value is _Unread:
        raise _Unread
    return value


@lru_cache(maxsize=4096)
def _plain(raw: str) -> Any:
    """A plain scalar as PyYAML reads it when that is text, a decimal number, null or a boolean;
    _Unread otherwise, or when it is not plain (cached: the same keys and words fill every manifest)."""
    if _PLAIN.match(raw) is None:
        return _Unread
    tag = _RESOLVER.resolve(yaml.ScalarNode, raw, (True, False))  # type: ignore[no-untyped-call]
    if tag == _TAGS + "str":
        return raw
    if tag == _TAGS + "int" and _DECIMAL.match(raw):
        return int(raw)
    if tag == _TAGS + "null":
        return None
    if tag == _TAGS + "bool":
        return yaml.constructor.SafeConstructor.bool_values[raw.lower()]
    return _Unread


def reads_as_itself(raw: str) -> bool:
    """True when ``raw``, written plain, is read back (by this reader and PyYAML) as the text ``raw``."""
    value: object = _plain(raw)
    return value == raw
