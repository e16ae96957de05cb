"""Names and shapes of the records exchanged between coordinator and sites.

Coordinator -> site: ``ArrayRecord "global"`` with one ``uint8`` array ``pack``
(the encoded global tree pack) and ``ConfigRecord "job"`` (permit, signed
request, feature spec, parameters). Site -> coordinator: ``ArrayRecord
"trees"`` (encoded pack of the *new* trees only), ``MetricRecord "metrics"``
(``num-examples`` and permitted metrics) and ``ConfigRecord "site"`` (the site
id, or an error code). Nothing else travels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import orjson
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from federation.errors import ModelFormatError
from federation.job import BoosterParams

GLOBAL = "global"
TREES = "trees"
PACK = "pack"
JOB = "job"
METRICS = "metrics"
SITE = "site"
MAX_PACK_BYTES = 256 * 1024 * 1024


def pack_record(encoded: bytes) -> ArrayRecord:
    return ArrayRecord({PACK: Array(np.frombuffer(encoded, dtype=np.uint8))})


def pack_bytes(content: RecordDict, key: str) -> bytes:
    """The encoded pack inside a message, or ModelFormatError."""
    record = content.array_records.get(key)
    if record is None or list(record.keys()) != [PACK]:
        raise ModelFormatError("message does not carry exactly one tree pack")
    array = record[PACK]
    if array.dtype != "uint8" or len(array.shape) != 1:
        raise ModelFormatError("tree pack must be a 1-d uint8 array")
    data = array.numpy().tobytes()
    if len(data) > MAX_PACK_BYTES:
        raise ModelFormatError("tree pack too large")
    return data


def job_config(
    *,
    job_id: str,
    round: int,
    operation: str,
    permit_token: str,
    requests: Mapping[str, str],
    spec: Mapping[str, Any],
    spec_hash: str,
    params: BoosterParams,
    eval_fraction: float,
    strategy: str,
    split_key: str = "",
) -> ConfigRecord:
    return ConfigRecord(
        {
            "job-id": job_id,
            "round": round,
            "operation": operation,
            "permit": permit_token,
            "requests": orjson.dumps(dict(requests)).decode(),
            "spec": orjson.dumps(dict(spec)).decode(),
            "spec-hash": spec_hash,
            "params": orjson.dumps(asdict(params)).decode(),
            "eval-fraction": eval_fraction,
            "split-key": split_key or job_id,
            "strategy": strategy,
        }
    )


def site_reply(
    msg: Message,
    *,
    site_id: str,
    encoded: bytes | None = None,
    metrics: Mapping[str, float] | None = None,
    error: str | None = None,
) -> Message:
    content = RecordDict()
    info: dict[
        str,
        int
        | float
        | str
        | bytes
        | bool
        | list[int]
        | list[float]
        | list[str]
        | list[bytes]
        | list[bool],
    ] = {"site-id": site_id}
    if error is not None:
        info["error"] = error
    content[SITE] = ConfigRecord(info)
    if encoded is not None:
        content[TREES] = pack_record(encoded)
    if metrics is not None:
        values: dict[str, int | float | list[int] | list[float]] = dict(metrics)
        content[METRICS] = MetricRecord(values)
    return Message(content=content, reply_to=msg)


def access_params(
    operation: str, params: BoosterParams, spec_hash: str, strategy: str
) -> dict[str, Any]:
    """The parameters a request is signed over and a site checks: identical on both sides."""
    if operation != "train":
        return {"spec_hash": spec_hash}
    return {
        "spec_hash": spec_hash,
        "rounds": params.local_rounds,
        "max_depth": params.max_depth,
        "min_child_weight": params.min_child_weight,
        "strategy": strategy,
    }
