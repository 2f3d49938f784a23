"""Proofs that a view's source has no ties (two rows with the same join keys and event time).

With such a proof the point-in-time join is one ASOF join: no created-time tie-break is needed
(docs/retrieval.md). A proof is made at `apply` and names exactly the files it read (path, size,
times, inode); a file added, removed or rewritten since makes it not apply, and retrieval
takes the exact two-pass join again until the next apply proves the new set. Proofs are small
files under the repo's `.parity/untied/`. No duckdb import here: the engine runs the query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from parity.definitions import FeatureView

log = logging.getLogger(__name__)

PROOF_DIRECTORY = Path(".parity") / "untied"
_VERSION = 1  # bump when the meaning of a proof changes


def fingerprint(view: FeatureView, files: Sequence[str]) -> str | None:
    """What a proof covers: the view's key and time columns and each file's identity; None when
    a file cannot be read (then nothing is proven)."""
    source = view.batch_source
    try:
        stats = [(f, os.stat(f)) for f in sorted(files)]
    except OSError:
        return None
    # A rewrite changes the size or a time; one in place to the same size within the file
    # system's time granularity would not be seen (Delta and Parity's writers never do that).
    identities = [
        (f, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino) for f, stat in stats
    ]
    covered = {
        "version": _VERSION,
        "keys": [source.column_for(k) for k in view.join_keys],
        "time": source.timestamp_field,
        "files": identities,
    }
    return hashlib.sha256(json.dumps(covered).encode()).hexdigest()


def is_proven(repo_root: Path, view: FeatureView, files: Sequence[str]) -> bool:
    """Whether a proof of no ties covers exactly these files as they are now."""
    key = fingerprint(view, files)
    return key is not None and (repo_root / PROOF_DIRECTORY / key).is_file()


def record(repo_root: Path, key: str) -> None:
    """Keep the proof `key` (a fingerprint); a repo that cannot be written just keeps none."""
    folder = repo_root / PROOF_DIRECTORY
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text("no two rows share their join keys and event time\n")
    except OSError as error:
        log.warning("could not keep the no-ties proof under %s: %s", folder, error)


def no_ties_sql(source_sql: str, keys: Sequence[str]) -> str:
    """True when no two rows of `source_sql` (columns: keys, __ts) share keys and __ts."""
    group = ", ".join([*keys, "__ts"])
    return f"SELECT NOT EXISTS (SELECT 1 FROM ({source_sql}) GROUP BY {group} HAVING count(*) > 1)"
