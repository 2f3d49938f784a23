"""Durable file writes: what makes a rename or a new file survive a crash. No other I/O."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in the folder `path` durable (POSIX only: Windows cannot
    open folders, and its renames are durable through the file system's journal)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
