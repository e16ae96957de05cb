"""Bagging and cyclic XGBoost strategies on Flower's Message API.

Written against ``flwr.serverapp.strategy.Strategy`` (and run by its
``start(...)`` loop) instead of subclassing ``FedXgbBagging``/``FedXgbCyclic``
because those exchange whole XGBoost models - with their per-node statistics -
and their bagging merge counts ``num_parallel_tree`` trees per site, dropping
all but one tree per round of a multiclass model. Here:

* sites send tree packs with the *new* trees only (:mod:`federation.trees`);
* the merge keeps every tree and weights each site's update by its rows;
* the intercept (``base_score``) is fixed by the coordinator in round 1, and
  every reply must carry it, so the result is independent of reply order;
* a site that fails or refuses is recorded (``training.site_failed``) and the
  round completes with the rest while at least ``min_sites`` answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from federation import trees, wire
from federation.errors import FederationError, ModelFormatError, TooFewSitesError
from federation.job import RoundReport, TrainingJob
from federation.ports import AuditSink, RequestSigner
from federation.site import METRIC_NAMES

Progress = Callable[[RoundReport], None]


@dataclass
class RunState:
    """What the coordinator learns during a run: counts, hashes, site ids."""

    global_pack: trees.Pack
    node_site: dict[int, str] = field(default_factory=dict)
    contributors: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rounds: list[RoundReport] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    evaluated_sites: list[str] = field(default_factory=list)
    #: Evaluation rows per site (each at or above the permit's disclosure floor: a
    #: site below it reports no metrics at all).
    evaluated_rows: dict[str, int] = field(default_factory=dict)


def wait_for_nodes(grid: Grid, need: int, timeout: float) -> list[int]:
    """Connected node ids once at least ``need`` are there, else TooFewSitesError."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= need:
            return nodes
        if time.monotonic() >= deadline:
            raise TooFewSitesError(f"only {len(nodes)} of {need} sites connected")
        time.sleep(0.5)


class XgbStrategy(Strategy):
    """Permit-bound federated XGBoost: ``mode`` is ``"bagging"`` or ``"cyclic"``."""

    def __init__(
        self,
        job: TrainingJob,
        *,
        signer: RequestSigner,
        audit: AuditSink,
        permit_jti: str,
        holders: Iterable[str],
        expected_sites: int,
        initial: trees.Pack,
        progress: Progress | None = None,
    ) -> None:
        self.job = job
        self.signer = signer
        self.audit = audit
        self.permit_jti = permit_jti
        self.holders = sorted(holders)
        self.expected_sites = expected_sites
        self.progress = progress
        self.state = RunState(global_pack=initial)
        self._round_started = time.monotonic()
        self._grid: Grid | None = None
        self._excluded: set[int] = set()
        self._addressed: list[int] = []
        self._connected: set[int] = set()
        self._sent: list[Message] = []

    # -- helpers ------------------------------------------------------------------
    def _subject(self, **extra: str) -> dict[str, str]:
        return {"permit": self.permit_jti, "job": self.job.job_id, **extra}

    def _site_of(self, node_id: int) -> str:
        return self.state.node_site.get(node_id, f"node:{node_id}")

    def _requests(self, node_id: int, operation: str) -> dict[str, str]:
        """The signed request for the node's site; for an unknown node, one per holder.

        Requests are bound to one holder (``aud``), so a node whose site id is
        not known yet (round 1) gets one per holder and uses its own; from then
        on each node only receives the one addressed to it.
        """
        site = self.state.node_site.get(node_id)
        holders = [site] if site is not None else self.holders
        params = wire.access_params(
            operation, self.job.params, self.job.spec_hash, self.job.strategy
        )
        return {h: self.signer.sign(holder=h, operation=operation, params=params) for h in holders}

    def _messages(
        self, server_round: int, node_ids: list[int], operation: str, message_type: str
    ) -> list[Message]:
        pack = self.state.global_pack
        global_record = wire.pack_record(trees.encode_pack(pack))
        messages = []
        for node in node_ids:
            content = RecordDict(
                {
                    wire.GLOBAL: global_record,
                    wire.JOB: wire.job_config(
                        job_id=self.job.job_id,
                        round=server_round,
                        operation=operation,
                        permit_token=self.job.permit_token,
                        requests=self._requests(node, operation),
                        spec=self.job.spec,
                        spec_hash=self.job.spec_hash,
                        params=self.job.params,
                        eval_fraction=self.job.eval_fraction,
                        strategy=self.job.strategy,
                        split_key=self.job.split_key,
                    ),
                }
            )
            messages.append(Message(content=content, message_type=message_type, dst_node_id=node))
        return messages

    def _nodes(self, grid: Grid, server_round: int) -> list[int]:
        need = self.expected_sites if server_round == 1 else 1
        nodes = wait_for_nodes(grid, need, self.job.round_timeout)
        self._connected = set(nodes)
        live = [n for n in nodes if n not in self._excluded]
        if self.job.strategy == "bagging":
            return live
        if not live:
            return []
        ordered = sorted(live, key=lambda n: (n not in self.state.node_site, self._site_of(n)))
        return [ordered[(server_round - 1) % len(ordered)]]

    def _fail(self, server_round: int, node_id: int, reason: str) -> None:
        site = self._site_of(node_id)
        self.state.failed[site] = reason
        self._excluded.add(node_id)
        log(WARNING, "round %d: site %s failed (%s)", server_round, site, reason)
        self.audit.record(
            "training.site_failed",
            subject=self._subject(site=site),
            details={"round": server_round, "reason": reason},
        )

    def _origin(self, msg: Message) -> int:
        """The node a reply is about: error replies made by the SuperLink for a lost
        node carry the SuperLink as source, so match them to the request they answer."""
        sent = {m.metadata.message_id: m.metadata.dst_node_id for m in self._sent}
        return sent.get(msg.metadata.reply_to_message_id, msg.metadata.src_node_id)

    def _reply_site(self, msg: Message) -> tuple[str | None, str | None]:
        """(site id, error code) from a reply's site record."""
        record = msg.content.config_records.get(wire.SITE)
        if record is None:
            return None, "reply_malformed"
        site, error = record.get("site-id"), record.get("error")
        site_id = site if isinstance(site, str) else None
        if site_id is not None and site_id not in self.holders:
            return None, "site_not_in_permit"
        return site_id, error if isinstance(error, str) else None

    # -- Strategy API -------------------------------------------------------------
    def summary(self) -> None:
        log(
            INFO,
            "XgbStrategy(%s): %d rounds, >= %d sites, permit-bound",
            self.job.strategy,
            self.job.rounds,
            self.job.min_sites,
        )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._round_started = time.monotonic()
        self._grid = grid
        self._addressed = self._nodes(grid, server_round)
        self._sent = self._messages(server_round, self._addressed, "train", MessageType.TRAIN)
        return self._sent

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        expected = trees.header(self.state.global_pack)
        parts: list[tuple[str, trees.Pack, int, int]] = []
        replies = list(replies)
        answered = {self._origin(msg) for msg in replies}
        for node in self._addressed:
            if node not in answered:
                self._fail(server_round, node, "no_reply")
        for msg in replies:
            node = self._origin(msg)
            if msg.has_error():
                self._fail(server_round, node, "site_unreachable")
                continue
            site, error = self._reply_site(msg)
            if site is not None:
                self.state.node_site[node] = site
            if error is not None or site is None:
                self._fail(server_round, node, error or "reply_malformed")
                continue
            try:
                data = wire.pack_bytes(msg.content, wire.TREES)
                pack = trees.decode_pack(data, expect_header=expected)
                metrics = msg.content.metric_records.get(wire.METRICS)
                count = metrics.get("num-examples") if metrics is not None else None
                rows = int(count) if isinstance(count, int | float) else 0
                if rows <= 0 or not pack["trees"]:
                    raise ModelFormatError("reply without rows or trees")
            except (FederationError, KeyError, TypeError, ValueError) as exc:
                self._fail(server_round, node, getattr(exc, "reason", "reply_malformed"))
                continue
            parts.append((site, pack, rows, len(data)))
        if self.job.strategy == "cyclic" and not parts and self._live_sites() >= 1:
            # the round's one site failed: the model is unchanged, the next site goes on
            return self._finish_round(server_round, [])
        needed = self.job.min_sites if self.job.strategy == "bagging" else 1
        if len(parts) < needed:
            raise TooFewSitesError(
                f"round {server_round}: {len(parts)} site(s) answered, {needed} required"
            )
        return self._finish_round(server_round, parts)

    def _live_sites(self) -> int:
        return len(self._connected - self._excluded)

    def _finish_round(
        self, server_round: int, parts: list[tuple[str, trees.Pack, int, int]]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        parts.sort(key=lambda p: p[0])  # reply order must not matter
        total = sum(p[2] for p in parts)
        weighted = [
            (pack, rows / total if self.job.strategy == "bagging" else 1.0)
            for _, pack, rows, _ in parts
        ]
        merged = trees.append_trees(self.state.global_pack, weighted)
        self.state.global_pack = merged
        for site, *_ in parts:
            if site not in self.state.contributors:
                self.state.contributors.append(site)
        model_hash = trees.pack_hash(merged)
        new_trees = sum(len(p[1]["trees"]) for p in parts)
        report = RoundReport(
            round=server_round,
            model_hash=model_hash,
            sites=[p[0] for p in parts],
            failed={s: r for s, r in self.state.failed.items()},
            rows=total,
            trees=new_trees,
            bytes_sent={p[0]: p[3] for p in parts},
            seconds=time.monotonic() - self._round_started,
            exchanges=list(getattr(self._grid, "exchanges", [])[-1:]),
        )
        self.state.rounds.append(report)
        self.audit.record(
            "training.round",
            subject=self._subject(),
            details={
                "round": server_round,
                "model_hash": model_hash,
                "rows": total,
                "sites": len(parts),
                "bytes_sent": sum(p[3] for p in parts),
                "trees": new_trees,
            },
        )
        if self.progress is not None:
            self.progress(report)
        metrics = MetricRecord({"num-examples": total, "trees": new_trees, "sites": len(parts)})
        return wire.pack_record(trees.encode_pack(merged)), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if server_round != self.job.rounds:
            return []  # evaluate the final model only: every exchange costs a poll cycle
        nodes = [n for n in sorted(grid.get_node_ids()) if n not in self._excluded]
        return self._messages(server_round, nodes, "evaluate", MessageType.EVALUATE)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        for msg in replies:
            if msg.has_error():
                continue
            site, error = self._reply_site(msg)
            record = msg.content.metric_records.get(wire.METRICS)
            if error is not None or site is None or record is None:
                continue
            n = record.get("num-examples")
            if not isinstance(n, int | float) or n <= 0:
                continue
            self.state.evaluated_sites.append(site)
            self.state.evaluated_rows[site] = int(n)
            for name in METRIC_NAMES:
                value = record.get(name)
                if isinstance(value, int | float):
                    sums[name] = sums.get(name, 0.0) + float(value) * float(n)
                    weights[name] = weights.get(name, 0.0) + float(n)
        self.state.metrics = {k: sums[k] / weights[k] for k in sorted(sums)}
        return MetricRecord(dict(self.state.metrics)) if self.state.metrics else None
