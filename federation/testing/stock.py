"""Flower's stock XGBoost bagging recipe, kept only as the benchmark's baseline.

This is the ``flwr.serverapp.strategy.FedXgbBagging`` + quickstart-ClientApp
pattern of Flower 1.42 as documented: sites send whole XGBoost JSON models
(per-node statistics included), ``base_score`` is estimated per site, and the
bagging merge counts ``num_parallel_tree`` trees per site. Never used for
permit-bound training; :mod:`federation.strategy` is the fixed version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xgboost as xgb
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedXgbBagging


class MeasuredFedXgbBagging(FedXgbBagging):
    """FedXgbBagging that also records the bytes each site sent per round."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bytes_per_round: list[list[int]] = []

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self.bytes_per_round.append(
            [
                int(r.content.array_records["arrays"]["0"].numpy().nbytes)
                for r in replies
                if not r.has_error()
            ]
        )
        return super().aggregate_train(server_round, replies)


def make_stock_apps(
    site_paths: Sequence[str],
    params: Mapping[str, Any],
    rounds: int,
    local_rounds: int,
    out: dict[str, Any],
) -> tuple[ServerApp, ClientApp]:
    """ServerApp/ClientApp pair following Flower's XGBoost quickstart."""
    server = ServerApp()
    client = ClientApp()
    paths = list(site_paths)
    train_params = dict(params)

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        strategy = MeasuredFedXgbBagging(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=len(paths),
            min_available_nodes=len(paths),
        )
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord([np.frombuffer(b"", dtype=np.uint8)]),
            num_rounds=rounds,
        )
        out["model"] = bytearray(result.arrays["0"].numpy().tobytes())
        out["bytes_per_round"] = strategy.bytes_per_round

    @client.train()
    def _train(msg: Message, context: Context) -> Message:
        index = int(context.node_config["partition-id"])
        with np.load(paths[index], allow_pickle=False) as data:
            dtrain = xgb.DMatrix(data["X"], label=data["y"], nthread=1)
        server_round = msg.content.config_records["config"]["server-round"]
        if server_round == 1:
            bst = xgb.train(train_params, dtrain, num_boost_round=local_rounds)
        else:
            bst = xgb.Booster(params=train_params)
            bst.load_model(bytearray(msg.content.array_records["arrays"]["0"].numpy().tobytes()))
            for _ in range(local_rounds):
                bst.update(dtrain, bst.num_boosted_rounds())
            n = bst.num_boosted_rounds()
            bst = bst[n - local_rounds : n]
        model = np.frombuffer(bytes(bst.save_raw("json")), dtype=np.uint8)
        content = RecordDict(
            {
                "arrays": ArrayRecord([model]),
                "metrics": MetricRecord({"num-examples": int(dtrain.num_row())}),
            }
        )
        return Message(content=content, reply_to=msg)

    return server, client
