"""Real processes: SIGKILL in the middle of appends, and concurrent appenders.

A killed appender must leave a log that verifies, with no partial entry: every
append (entries + nodes + head + checkpoint) is one transaction. Concurrent
appenders in separate processes must produce one gap-free sequence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit_chain import EventSigner, TrustStore
from audit_chain.log import AuditLog
from audit_chain.verify import verify_log
from tests.conftest import ROOT

LOG_ID = "proc-log"


def _keys(tmp_path: Path, log_key: EventSigner, actor: EventSigner) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"log": log_key.to_json(), "actor": actor.to_json()}))
    return path


def _spawn(url: str, keys: Path, count: int, batch: int, worker: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.audit_chain.appender",
            url,
            LOG_ID,
            str(keys),
            str(count),
            str(batch),
            str(worker),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )


def _wait_for_size(
    log: AuditLog, at_least: int, proc: subprocess.Popen[bytes], timeout: float = 60
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"appender exited early: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
            )
        size = log.size()
        if size >= at_least:
            return size
        time.sleep(0.02)
    raise AssertionError("appender made no progress")


def _assert_whole(log: AuditLog, trust: TrustStore) -> None:
    report = verify_log(log, trust)
    assert report.ok, report
    size = log.size()
    assert log.store.entry_count(LOG_ID) == size  # no partial entry, no orphan
    assert report.checkpoint_size == size  # every committed batch has its checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 25])
def test_sigkill_mid_stream_leaves_a_verifiable_log(
    db_url: str,
    tmp_path: Path,
    log_key: EventSigner,
    actor: EventSigner,
    trust: TrustStore,
    batch: int,
) -> None:
    keys = _keys(tmp_path, log_key, actor)
    with AuditLog.open(db_url, log_id=LOG_ID, signer=log_key) as log:
        for round_ in range(2):
            proc = _spawn(db_url, keys, 0, batch, round_)
            try:
                before = log.size()
                _wait_for_size(log, before + 3 * batch + 5, proc)
                time.sleep(0.01 * (round_ + 1))  # land somewhere inside a later transaction
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            assert proc.returncode == -signal.SIGKILL
            _assert_whole(log, trust)
        # the log keeps growing correctly after the crashes
        log.append_many([])
        assert verify_log(log, trust).ok


@pytest.mark.slow
def test_concurrent_appenders_sqlite(
    tmp_path: Path, log_key: EventSigner, actor: EventSigner, trust: TrustStore
) -> None:
    url = str(tmp_path / "audit.db")
    keys = _keys(tmp_path, log_key, actor)
    AuditLog.open(url, log_id=LOG_ID).close()
    procs = [_spawn(url, keys, 60, 1 + w, w) for w in range(3)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()[-2000:] if p.stderr else ""
    with AuditLog.open(url, log_id=LOG_ID) as log:
        assert log.size() == 180
        assert [e.index for e in log.entries()] == list(range(180))
        _assert_whole(log, trust)


@pytest.mark.postgres
@pytest.mark.slow
def test_four_processes_500_appends_each_postgres(
    pg_schema_url: str, tmp_path: Path, log_key: EventSigner, actor: EventSigner, trust: TrustStore
) -> None:
    keys = _keys(tmp_path, log_key, actor)
    procs = [_spawn(pg_schema_url, keys, 500, 1, w) for w in range(4)]  # one transaction per event
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:] if p.stderr else ""
    with AuditLog.open(pg_schema_url, log_id=LOG_ID) as log:
        assert log.size() == 2000
        entries = list(log.entries())
        assert [e.index for e in entries] == list(range(2000))
        per_worker: dict[str, int] = {}
        for e in entries:
            job = json.loads(_payload(e.token))["subject"]["job"]
            per_worker[job] = per_worker.get(job, 0) + 1
        assert per_worker == {f"job-{w}": 500 for w in range(4)}
        _assert_whole(log, trust)
        assert len(log.checkpoints()) == 2000


def _payload(token: str) -> bytes:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
