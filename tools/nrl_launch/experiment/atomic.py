"""Whole-file writes that a reader never sees half done: the one write-then-rename.

The manifest, ``continue.sh`` and the next-run record are each written to a
hidden temporary sibling and renamed over the file with one ``rename(2)``: a
reader (``continue.sh``, ``nrl-launch watch`` in another process) finds the
old file or the new one, never a mix. A failed write leaves the old file as
it was and removes the temporary one.
"""

from __future__ import annotations

import os
from pathlib import Path

from nrl_launch.errors import SnapshotError


def replace_file(path: Path, data: bytes, *, mode: int | None = None, what: str = "") -> os.stat_result:
    """Replace ``path`` with ``data`` atomically (permission bits ``mode`` when given, else as
    the umask makes them). The written file's status, taken before the rename (the same file
    after it). SnapshotError ``cannot write <what> <path>: …`` on failure."""
    hidden = path.name if path.name.startswith(".") else f".{path.name}"
    tmp = path.with_name(f"{hidden}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.flush()
            written = os.fstat(handle.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SnapshotError(f"cannot write {what + ' ' if what else ''}{path}: {e}") from e
    return written
