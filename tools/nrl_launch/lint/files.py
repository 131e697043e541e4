"""Reading the repository's files, each at most once, never raising.

A path that is not a readable UTF-8 text file (a directory, a broken symlink
or symlink loop, a FIFO, a binary or non-UTF-8 file, a permission problem)
becomes a ``file`` finding instead. Every text read is scanned for
``# nrl-lint: disable=…`` comments; a malformed one is a configuration
problem, raised with all the others when the run ends.
"""

from __future__ import annotations

import os

from nrl_launch.lint.options import LintConfigError, inline_disables
from nrl_launch.lint.report import Collector

# Folders a recursive scan never enters besides output folders.
_SKIPPED_DIRS = frozenset({"__pycache__"})


class FileReader:
    """File access below one repository root, reporting problems to a Collector."""

    def __init__(self, root: str, collector: Collector) -> None:
        self.root = root.rstrip(os.sep) or os.sep
        self.collector = collector
        self._prefix = self.root.rstrip(os.sep) + os.sep

    def abs(self, rel: str) -> str:
        """The absolute path of a repo-relative POSIX path."""
        return os.path.join(self.root, *rel.split("/"))

    def rel(self, abs_path: str) -> str:
        """``abs_path`` relative to the repository root, with '/'."""
        if abs_path.startswith(self._prefix):
            return abs_path[len(self._prefix):].replace(os.sep, "/")
        return os.path.relpath(abs_path, self.root).replace(os.sep, "/")

    def is_regular(self, abs_path: str, rel: str) -> bool:
        """True for a (symlink to a) regular file; otherwise a ``file`` finding."""
        try:
            if os.path.isfile(abs_path):
                return True
            if os.path.isdir(abs_path):
                problem = "is a directory, not a file"
            elif os.path.islink(abs_path):
                problem = "broken symlink or symlink loop"
            else:
                problem = "not a regular file"
        except (OSError, ValueError) as exc:
            problem = f"cannot inspect: {exc}"
        self.collector.add(rel, None, "file", problem)
        return False

    def read(self, abs_path: str, rel: str) -> str | None:
        """The file's text (BOM removed), or None with a ``file`` finding."""
        try:
            with open(abs_path, "rb") as handle:
                data = handle.read()
        except IsADirectoryError:
            self.collector.add(rel, None, "file", "is a directory, not a file")
            return None
        except OSError as exc:
            self.collector.add(rel, None, "file", f"cannot read: {exc.strerror or type(exc).__name__}")
            return None
        self.collector.files_read.add(rel)
        if b"\0" in data:
            self.collector.add(rel, None, "file", "binary file (contains NUL bytes)")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            self.collector.add(rel, line, "file", f"not UTF-8 text (byte 0x{data[exc.start]:02x})")
            return None
        text = text.removeprefix("\ufeff")
        try:
            self.collector.disable(rel, inline_disables(text, rel))
        except LintConfigError as exc:  # reported with every other one when the run ends
            self.collector.config_problems.extend(exc.problems)
        return text

    def entries(self, rel_dir: str) -> list[tuple[str, bool]]:
        """Sorted ``(name, is a real folder)`` of a folder; a ``layout`` finding if unreadable."""
        try:
            with os.scandir(self.abs(rel_dir)) as scan:
                found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
        except OSError as exc:
            self.collector.add(rel_dir, None, "layout", f"cannot list folder: {exc.strerror or exc}")
            return []
        return sorted(found)

    def find(self, top: str, suffix: str, skip_outputs: bool) -> list[str]:
        """Repo-relative paths ending with ``suffix`` under the folder ``top``,
        recursively, sorted.

        Not entered: hidden folders, caches, symlinked folders (no loops), and
        with ``skip_outputs`` output folders: a folder ``<stem>/`` next to a
        recipe ``<stem>.sh`` is where that recipe writes its logs and
        checkpoints (:meth:`nrl_launch.recipes.layout.Layout.output_dir`), not a folder
        of recipes.
        """
        found: list[str] = []
        pending = [top]
        while pending:
            folder = pending.pop()
            listing = self.entries(folder)
            stems = {name[: -len(suffix)] for name, _ in listing if skip_outputs and name.endswith(suffix)}
            for name, is_dir in listing:
                rel = f"{folder}/{name}"
                if name.endswith(suffix):
                    found.append(rel)
                elif is_dir and not name.startswith(".") and name not in _SKIPPED_DIRS and name not in stems:
                    pending.append(rel)
        return sorted(found)
