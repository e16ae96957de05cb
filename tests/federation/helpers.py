"""Factories used by the federation tests through ``FactoryRef`` (importable by path)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from federation.adapters import ArraySource, PermitGuardAuthorizer, permit_guard
from federation.ports import AccessTerms, AuditSink, SiteDataset


class RecordingSource(ArraySource):
    """An ArraySource that leaves a marker file whenever data is read."""

    def __init__(self, path: str, read_marker: str, dataset: str | None = None) -> None:
        super().__init__(path, dataset)
        self.read_marker = read_marker

    def load(
        self,
        spec: Mapping[str, Any],
        *,
        spec_hash: str,
        time_range: tuple[str, str] | None = None,
    ) -> SiteDataset:
        Path(self.read_marker).write_text("read")
        return super().load(spec, spec_hash=spec_hash, time_range=time_range)


def recording_source(path: str, read_marker: str, dataset: str | None = None) -> RecordingSource:
    return RecordingSource(path, read_marker, dataset)


class DyingAuthorizer:
    """Delegates to the real guard until ``kill_marker`` exists, then the process dies."""

    def __init__(self, inner: PermitGuardAuthorizer, kill_marker: str) -> None:
        self.inner = inner
        self.kill_marker = kill_marker

    def authorize(
        self,
        permit_token: str,
        request_token: str,
        *,
        operation: str,
        params: Mapping[str, Any],
        app: Mapping[str, str] | None = None,
    ) -> AccessTerms:
        if Path(self.kill_marker).exists():
            if os.environ.get("EHDS_TEST_INPROCESS"):
                raise ConnectionError("site went away")
            os._exit(17)  # the site's ClientApp process is killed mid-run
        return self.inner.authorize(
            permit_token, request_token, operation=operation, params=params, app=app
        )


def dying_guard(kill_marker: str, audit: AuditSink, **kwargs: Any) -> DyingAuthorizer:
    return DyingAuthorizer(permit_guard(audit=audit, **kwargs), kill_marker)


def broken_sink() -> AuditSink:
    """An audit log that cannot be opened (disk gone, database down)."""
    raise OSError("audit store unavailable")
