"""The hospital's own ClientApp runtime for Flower deployment runs (the executor role).

Why: a SuperNode started with ``--isolation subprocess`` (Flower's default)
launches ``flwr-clientapp``, which installs the run's app bundle (FAB) - sent
by the data user with ``flwr run`` - and imports the ClientApp it names, with
the bundle first on the import path. Every protection at the site would then
be code the researcher chose. Started with ``--isolation process`` and a
SuperExec secret, a SuperNode launches nothing: an executor authenticated with
that secret acquires each task from the SuperNode's Runtime API. This module
is that executor, run by the site next to its SuperNode. For every task it:

1. pulls the message, context, run and FAB (Flower's Runtime API);
2. checks the FAB (:mod:`federation.app_trust`): readable, names the gateway's
   installed ClientApp, ships no code - else refuses with that reason;
3. runs the gateway's OWN installed ClientApp (:mod:`federation.client_app`),
   telling it the app digest it observed, so the permit guard refuses a run
   whose app the permit does not authorise - before any data is read;
4. pushes the reply (a refusal is an error reply carrying only the site id and
   a reason code) and records the run's app digest in the runs file that the
   gateway's ``/flower/status`` lists.

No code from the FAB is ever imported or installed. Tasks are served one at a
time in this long-lived process, so the heavy imports (flwr, xgboost) and the
site's feature cache stay warm across rounds.

Run it as ``python -m federation.site_executor --runtime-api-address
127.0.0.1:PORT --superexec-auth-secret-file FILE [--root-certificates CA |
--insecure] [--runs-file FILE]``; :mod:`federation.site_runtime` builds the
matching SuperNode and executor command lines.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message
from flwr.common.constant import SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from federation import wire
from federation.app_trust import AppManifest, AppTrustError, check_fab, read_fab
from federation.client_app import make_client_app, reason_of, site_from_node_config
from federation.job import SiteConfig
from federation.ports import AuditSink
from federation.site_runtime import RunRecord, append_run
from federation.timeline import mark, recording
from trust import is_identifier

_log = logging.getLogger("federation.site_executor")
_ACQUIRE = "/flwr.proto.Runtime/AcquireTask"
OPERATIONS = ("train", "evaluate")


@dataclass(frozen=True)
class Answer:
    """The reply to one task and what the runs file records about it."""

    reply: Message
    outcome: str
    app_digest: str | None
    operation: str


def _job_id(msg: Message) -> str | None:
    """The job id from the coordinator's config, if it is a plain identifier."""
    try:
        record = msg.content.config_records.get(wire.JOB)
        value = record.get("job-id") if isinstance(record, ConfigRecord) else None
    except Exception:
        return None
    return value if isinstance(value, str) and is_identifier(value) else None


def _operation(msg: Message) -> str:
    kind = msg.metadata.message_type
    return kind if kind in OPERATIONS else "unknown"


def _outcome(reply: Message) -> str:
    record = reply.content.config_records.get(wire.SITE) if reply.has_content() else None
    error = record.get("error") if record is not None else None
    return error if isinstance(error, str) else "ok"


def _deny(
    msg: Message, site: SiteConfig, reason: str, operation: str, digest: str | None
) -> Answer:
    """Refuse a task: ``access.denied`` in the site's audit log, an error code to the coordinator."""
    subject = {"site": site.site_id}
    job = _job_id(msg)
    if job is not None:
        subject["job"] = job
    details: dict[str, object] = {"reason": reason, "operation": operation}
    if digest is not None:
        details["app_digest"] = digest
    try:  # a refusal stands even if it cannot be written (as in the permit guard)
        audit: AuditSink = site.audit.build()
        try:
            audit.record("access.denied", subject=subject, details=details)
        finally:
            close = getattr(audit, "close", None)
            if callable(close):
                close()
    except Exception as exc:
        _log.warning("site %s: audit sink failed on deny: %s", site.site_id, type(exc).__name__)
    return Answer(
        wire.site_reply(msg, site_id=site.site_id, error=reason), reason, digest, operation
    )


def answer(msg: Message, context: Context, fab_content: bytes) -> Answer:
    """Decide on one task and compute its reply with the gateway's own ClientApp (pure of I/O
    towards Flower: the caller pulls and pushes)."""
    operation = _operation(msg)
    try:
        site = site_from_node_config(context)
    except Exception as exc:  # a misconfigured site: answer with a code, never a path
        reason = reason_of(exc)
        return Answer(
            wire.site_reply(msg, site_id="unknown", error=reason), reason, None, operation
        )
    manifest: AppManifest | None = None
    refusal: AppTrustError | None = None
    try:
        manifest = read_fab(fab_content)
        check_fab(manifest)
        if operation not in OPERATIONS:
            raise AppTrustError("not a train or evaluate task", reason="operation_not_allowed")
    except AppTrustError as exc:
        refusal = exc
    if refusal is not None or manifest is None:
        reason = refusal.reason if refusal is not None else "app_malformed"
        return _deny(msg, site, reason, operation, manifest.digest if manifest else None)
    client_app = make_client_app(site_from_node_config, app=manifest.observation())
    try:
        reply = client_app(message=msg, context=context)
    except Exception as exc:  # the ClientApp answers every request itself; fail closed anyway
        reply = wire.site_reply(msg, site_id=site.site_id, error=reason_of(exc))
    return Answer(reply, _outcome(reply), manifest.digest, operation)


class SiteExecutor:
    """Acquires ClientApp tasks from one SuperNode's Runtime API and serves them."""

    def __init__(
        self,
        runtime_api_address: str,
        *,
        secret: bytes,
        insecure: bool = False,
        root_certificates: str | None = None,
        runs_file: Path | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        if not secret:
            raise ValueError("the SuperExec secret must not be empty")
        self.address = runtime_api_address
        self.insecure = insecure
        self.root_certificates = root_certificates
        self.runs_file = runs_file
        self.poll_interval = poll_interval
        self.control = self._client(
            [
                RuntimeVersionHttpInterceptor(component_name="SuperExec"),
                SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods={_ACQUIRE}),
            ]
        )

    def _client(self, interceptors: list[object]) -> RuntimeHttpClient:
        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=self.insecure,
            root_certificates=None if self.insecure else self.root_certificates,
            interceptors=interceptors,  # type: ignore[arg-type]
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def acquire(self) -> str | None:
        """One ClientApp task's token, or None when nothing is pending."""
        res = self.control.AcquireTask(
            AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
        )
        if res.HasField("task") and res.token:
            return str(res.token)
        return None

    def serve(self, token: str, acquired_at: float | None = None) -> Answer | None:
        """Pull one task, answer it, push the reply and the task's final status."""
        client = self._client(
            [
                RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                RuntimeTokenHttpInterceptor(token),
            ]
        )
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat.start()
        context: Context | None = None
        status = SubStatus.FAILED
        result: Answer | None = None
        run_id = 0
        sent_at = 0.0
        with recording() as marks:
            marks["acquired"] = acquired_at if acquired_at is not None else time.time()
            try:
                msg, context, run, fab = pull_task_input(client)
                mark("task_pull")
                run_id = int(run.run_id)
                sent_at = float(msg.metadata.created_at)
                result = answer(msg, context, fab.content)
                push_message(client, result.reply, context)
                mark("reply_push")
                status = SubStatus.COMPLETED
            except Exception as exc:
                _log.warning("task failed: %s", type(exc).__name__)
            finally:
                push_task_output(client, context, status, "" if result else "task_failed")
                if heartbeat.is_running:
                    heartbeat.stop()
                client.close()
        if result is not None and self.runs_file is not None:
            append_run(
                self.runs_file,
                RunRecord(
                    run_id=run_id,
                    app_digest=result.app_digest,
                    operation=result.operation,
                    outcome=result.outcome,
                    at=int(time.time()),
                    sent_at=sent_at,
                    phases=dict(marks),
                ),
            )
        return result

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                token = self.acquire()
            except Exception as exc:  # the SuperNode restarting: keep polling
                _log.info("runtime API unavailable: %s", type(exc).__name__)
                token = None
            if token is not None:
                self.serve(token, acquired_at=time.time())
                continue
            stop.wait(self.poll_interval)

    def close(self) -> None:
        self.control.close()


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m federation.site_executor",
        description="Serve a SuperNode's ClientApp tasks with the gateway's own ClientApp.",
    )
    parser.add_argument("--runtime-api-address", required=True)
    tls = parser.add_mutually_exclusive_group(required=True)
    tls.add_argument("--root-certificates", help="CA of the SuperNode's Runtime API (TLS)")
    tls.add_argument("--insecure", action="store_true", help="plain HTTP (loopback only)")
    parser.add_argument("--superexec-auth-secret-file", required=True, type=Path)
    parser.add_argument("--runs-file", type=Path, help="JSON lines: app digest per task")
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--poll-interval", type=float, default=0.1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # one line per poll of the Runtime API (every 0.1 s) would flood the site's log
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        secret = args.superexec_auth_secret_file.read_bytes()
    except OSError:
        sys.stderr.write("ehds: error: [FED_ENGINE] cannot read the SuperExec secret file\n")
        return 2
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    executor = SiteExecutor(
        args.runtime_api_address,
        secret=secret,
        insecure=args.insecure,
        root_certificates=args.root_certificates,
        runs_file=args.runs_file,
        poll_interval=args.poll_interval,
    )
    _log.info("serving ClientApp tasks (pid %s)", os.getpid())
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends serving, quietly
            executor.run()
    finally:
        executor.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Answer", "SiteExecutor", "answer", "main"]
