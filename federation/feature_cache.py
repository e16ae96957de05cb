"""A site's computed features, cached on disk per (spec hash, data snapshot, opt-out version).

Why: computing features from FHIR is the most expensive step of a site's first
round, and the same permit's spec is trained on again and again (one job per
round count, evaluation, a retrained model). But a cached matrix must never
outlive what it was computed from: a new FHIR snapshot or a patient opting out
changes the rows. The key therefore hashes all three parts, and a change of
any part is a miss (the stale entry is simply never read again and is evicted
by age). Entries hold only what the site already holds (its own rows); the
directory is the site's, created 0700.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from federation.ports import SiteDataset

#: Entries kept per cache directory (oldest evicted first).
MAX_ENTRIES = 8
_COUNTS = ("patients", "excluded_opt_out", "quarantined", "excluded_time_range")
#: Counts kept in ``SiteDataset.extra`` (an entry written without one reads as 0).
_EXTRA = ("feature_warnings",)


def snapshot_version(path: str | Path) -> str:
    """A digest of a data snapshot's files (relative name, size, modification time).

    Content hashing a multi-gigabyte export every round would cost what the cache
    saves; a FHIR snapshot is replaced by writing files, which changes size or mtime.
    """
    root = Path(path)
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        st = file.stat()
        name = file.name if file == root else str(file.relative_to(root))
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "sha256:" + digest.hexdigest()


def registry_version(path: str | Path | None) -> str:
    """The opt-out registry's version: a digest of its content ("none" without one)."""
    if path is None:
        return "none"
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cache_key(
    spec_hash: str, snapshot: str, opt_out: str, time_range: tuple[str, str] | None = None
) -> str:
    """One key for the parts that decide a site's feature rows.

    The permit's ``time_range`` is one of them: records outside it are never read,
    so an amendment that changes the range must not be served the old rows.
    """
    window = "/".join(time_range) if time_range is not None else "none"
    text = f"spec={spec_hash}\nsnapshot={snapshot}\nopt_out={opt_out}\ntime_range={window}\n"
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """``.npz`` entries named by :func:`cache_key` under one directory of the site."""

    def __init__(self, directory: str | Path, max_entries: int = MAX_ENTRIES) -> None:
        self.directory = Path(directory)
        self.max_entries = max_entries

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def get(self, key: str) -> SiteDataset | None:
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                counts = {name: int(data[name]) if name in data.files else 0 for name in _COUNTS}
                extra = {name: int(data[name]) for name in _EXTRA if name in data.files}
                dataset = SiteDataset(
                    X=np.asarray(data["X"], dtype=np.float32),
                    y=np.asarray(data["y"], dtype=np.float32),
                    feature_names=tuple(str(n) for n in data["feature_names"]),
                    patient_keys=tuple(str(k) for k in data["patient_keys"]),
                    patients=counts["patients"],
                    excluded_opt_out=counts["excluded_opt_out"],
                    quarantined=counts["quarantined"],
                    excluded_time_range=counts["excluded_time_range"],
                    extra=extra,
                )
        except (OSError, KeyError, ValueError):
            return None  # absent or cut short: recompute
        os.utime(path)  # most recently used
        return dataset

    def put(self, key: str, data: SiteDataset) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                arrays: dict[str, Any] = {
                    "X": data.X,
                    "y": data.y,
                    "feature_names": np.array(data.feature_names, dtype=str),
                    "patient_keys": np.array(data.patient_keys, dtype=str),
                    "patients": data.patients,
                    "excluded_opt_out": data.excluded_opt_out,
                    "quarantined": data.quarantined,
                    "excluded_time_range": data.excluded_time_range,
                }
                arrays.update({name: int(data.extra.get(name, 0)) for name in _EXTRA})
                np.savez(fh, **arrays)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._evict()

    def _evict(self) -> None:
        entries = sorted(self.directory.glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[: max(0, len(entries) - self.max_entries)]:
            old.unlink(missing_ok=True)


__all__ = ["FeatureCache", "cache_key", "registry_version", "snapshot_version"]
