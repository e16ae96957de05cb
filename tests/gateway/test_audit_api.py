"""Shared audit endpoints: checkpoints verify, proofs verify with audit_chain's verifiers."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_chain import merkle
from audit_chain.checkpoint import parse_checkpoint
from tests.gateway.conftest import Api, Keys, application_body
from tests.gateway.test_hdab_api import problem


async def fill(api: Api, keys: Keys, n: int) -> int:
    for _ in range(n):
        resp = await api.call(
            "POST", "/applications", key=keys.user, json=application_body(keys.user, keys.person)
        )
        assert resp.status == 201
    return int((await (await api.call("GET", "/audit/checkpoint")).json())["size"])


async def test_every_inclusion_proof_verifies(hdab: Api, keys: Keys) -> None:
    size = await fill(hdab, keys, 6)
    cp = parse_checkpoint((await (await hdab.call("GET", "/audit/checkpoint")).json())["note"])
    assert cp.size == size
    page = await (await hdab.call("GET", f"/audit/entries?limit={size}")).json()
    assert [e["index"] for e in page["entries"]] == list(range(size))
    for entry in page["entries"]:
        proof = await (
            await hdab.call(
                "GET", f"/audit/proof/inclusion?index={entry['index']}&tree_size={size}"
            )
        ).json()
        assert (
            proof["leaf_hash"]
            == entry["leaf_hash"]
            == merkle.leaf_hash(entry["event"].encode()).hex()
        )
        merkle.verify_inclusion(
            bytes.fromhex(proof["leaf_hash"]),
            entry["index"],
            size,
            [bytes.fromhex(h) for h in proof["audit_path"]],
            cp.root,
        )


async def test_consistency_between_checkpoints(hdab: Api, keys: Keys) -> None:
    first = await fill(hdab, keys, 2)
    old = parse_checkpoint((await (await hdab.call("GET", "/audit/checkpoint")).json())["note"])
    second = await fill(hdab, keys, 3)
    new = parse_checkpoint((await (await hdab.call("GET", "/audit/checkpoint")).json())["note"])
    assert (old.size, new.size) == (first, second)
    body = await (
        await hdab.call("GET", f"/audit/proof/consistency?first={first}&second={second}")
    ).json()
    merkle.verify_consistency(
        first, second, [bytes.fromhex(h) for h in body["consistency_path"]], old.root, new.root
    )
    same = await (await hdab.call("GET", f"/audit/proof/consistency?first={second}")).json()
    assert same == {"first": second, "second": second, "consistency_path": []}


async def test_entry_paging_and_single_entry(hdab: Api, keys: Keys) -> None:
    size = await fill(hdab, keys, 3)
    page = await (await hdab.call("GET", "/audit/entries?start=0&limit=2")).json()
    assert len(page["entries"]) == 2 and page["next"] == "/audit/entries?start=2&limit=2"
    one = await (await hdab.call("GET", "/audit/entries/1")).json()
    assert one == page["entries"][1]
    assert one["payload"]["actor"]["org"] == "hdab-test"
    tail = await (await hdab.call("GET", f"/audit/entries?start={size + 10}")).json()
    assert tail["entries"] == [] and "next" not in tail


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/audit/entries/999", 404, "AUDIT_OUT_OF_RANGE"),
        ("/audit/proof/inclusion?index=999", 404, "AUDIT_OUT_OF_RANGE"),
        ("/audit/proof/inclusion?index=0&tree_size=999", 404, "AUDIT_OUT_OF_RANGE"),
        ("/audit/proof/inclusion", 400, "PARAMETER_MISSING"),
        ("/audit/proof/inclusion?index=-1", 400, "PARAMETER_INVALID"),
        ("/audit/proof/inclusion?index=0&tree_size=0", 400, "PARAMETER_OUT_OF_RANGE"),
        ("/audit/proof/consistency?first=0", 400, "PARAMETER_OUT_OF_RANGE"),
        ("/audit/proof/consistency?first=3&second=2", 404, "AUDIT_OUT_OF_RANGE"),
        ("/audit/proof/consistency?first=1&second=999", 404, "AUDIT_OUT_OF_RANGE"),
        ("/audit/entries?limit=100000", 400, "PARAMETER_OUT_OF_RANGE"),
        ("/audit/entries?start=1e3", 400, "PARAMETER_INVALID"),
        ("/audit/entries/abc", 404, "NOT_FOUND"),
    ],
)
async def test_bad_audit_parameters(
    hdab: Api, keys: Keys, path: str, status: int, code: str
) -> None:
    await fill(hdab, keys, 3)
    await problem(await hdab.call("GET", path), status, code)


async def test_cached_view_agrees_with_the_log_under_concurrency(tmp_path: Path) -> None:
    """Coalesced, cached proofs are exactly the log's own proofs, cold and warm."""
    import asyncio

    from gateway.audit_backend import signer_for
    from gateway.audit_store import open_stored_audit
    from tests.gateway.conftest import make_config

    config = make_config(tmp_path, "hdab", EHDS_AUDIT_DATABASE=str(tmp_path / "a.sqlite"))
    components = open_stored_audit(config, signer_for(config))
    try:
        for i in range(77):
            components.sink.record(
                "permit.applied", subject={"application": f"app-{i}"}, details={"purpose": "e.ii"}
            )
        log = components.view.backend.log  # type: ignore[attr-defined]
        size = log.size()
        view = components.view
        results = await asyncio.gather(*(view.inclusion_with_leaf(i, size) for i in range(size)))
        for i, (leaf, path) in enumerate(results):
            assert path == log.inclusion_proof(i, size)
            assert leaf == log.entry(i).leaf_hash
        assert await view.warm() > 0
        cons = await asyncio.gather(*(view.consistency(m, size) for m in range(1, size + 1)))
        assert cons == [log.consistency_proof(m, size) for m in range(1, size + 1)]
    finally:
        components.close()
