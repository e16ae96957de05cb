"""The resumable state of one ``$export`` job, kept as JSON next to its files.

Written atomically (temp file + rename) right after kick-off, after the
manifest arrives and after each downloaded file, so a client killed at any
moment resumes from the saved status URL without a second kick-off and
without re-downloading finished files. Holds server URLs, counts and hashes
only; the file is created ``0600`` because a status URL can act as a
capability on some servers.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fhir_adapters.errors import BulkExportError

#: JSON inside, but no ``.json`` suffix: folder readers that pick up FHIR JSON
#: and NDJSON (``ehds features`` on the folder) must not mistake it for data.
STATE_FILE = ".export-state"
STATE_VERSION = 1


@dataclass
class FileRecord:
    kind: str  # output | error | deleted
    type: str
    url: str
    path: str  # relative to the export directory
    resources: int = 0
    bad_lines: int = 0
    bytes: int = 0
    sha256: str = ""
    by_type: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    #: Error files only: OperationOutcomes of error/fatal severity, and the types they name.
    errors: int = 0
    failed_types: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class ExportState:
    base_url: str
    request: dict[str, Any]
    status_url: str | None = None
    kicked_off_at: str | None = None
    manifest: dict[str, Any] | None = None
    files: dict[str, FileRecord] = field(default_factory=dict)
    transaction_time: str | None = None
    completed: bool = False
    job_deleted: bool = False
    polls: int = 0
    fhir_version: str | None = None
    #: Completed, but the server listed failures under ``error[]``: not a base for ``_since``.
    partial: bool = False
    failed_types: list[str] = field(default_factory=list)
    #: Manifest pages followed (``link`` next) before the manifest was complete.
    manifest_pages: int = 0
    cancelled: bool = False
    version: int = STATE_VERSION

    def to_json(self) -> bytes:
        data = asdict(self)
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, raw: bytes) -> ExportState:
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError("unsupported state version")
            files = {
                url: FileRecord.from_dict(rec) for url, rec in (data.get("files") or {}).items()
            }
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "files"}
            return cls(files=files, **fields)
        except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
            raise BulkExportError(
                f"export state file is unreadable ({type(exc).__name__}); "
                "start again with a fresh directory or --restart",
                code="BULK_STATE_INVALID",
            ) from exc


def complete_and_whole(state: ExportState | None) -> bool:
    """True when ``state`` is a finished export with no failures (a safe ``_since`` base)."""
    return bool(state and state.completed and not state.partial and state.transaction_time)


def load_state(directory: Path) -> ExportState | None:
    path = directory / STATE_FILE
    if not path.exists():
        return None
    return ExportState.from_json(path.read_bytes())


def save_state(directory: Path, state: ExportState) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-state-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(state.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, directory / STATE_FILE)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
