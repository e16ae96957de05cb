"""Signed events: v1 schema refusals, JWK/kid rules, pinned algorithms, jwcrypto interop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk, jws

from audit_chain import EventSigner, TrustStore, schema
from audit_chain.errors import (
    AuditActorError,
    AuditAlgorithmError,
    AuditKeyError,
    AuditSchemaError,
    AuditSignatureError,
)
from audit_chain.events import (
    EVENT_TYP,
    Event,
    build_event,
    parse_event,
    sign_event,
    verify_event,
)
from tests.audit_chain.conftest import HASH
from trust import b64url_encode, thumbprint


def _build(type: str = "data.extracted", subject: Any = None, details: Any = None) -> Event:
    return build_event(
        type,
        org="hospital-a",
        kid="A" * 43,
        subject={"permit": "p-1"} if subject is None else subject,
        details={"rows": 3} if details is None else details,
    )


def test_schema_table_is_exactly_the_documented_one() -> None:
    assert set(schema.EVENT_SCHEMAS) == {
        "permit.applied", "permit.approved", "permit.refused", "permit.issued", "permit.amended",
        "permit.revoked", "statuslist.published", "access.allowed", "access.denied",
        "data.extracted", "optout.applied", "training.started", "training.round",
        "training.site_failed", "model.released", "witness.refused",
    }  # fmt: skip
    assert schema.EVENT_SCHEMAS["data.extracted"] == {
        "spec_hash", "patients", "rows", "features", "excluded_opt_out", "quarantined"
    }  # fmt: skip
    assert schema.EVENT_SCHEMAS["model.released"] == {
        "model_hash", "rounds", "sites", "checkpoint_size", "checkpoint_root"
    }  # fmt: skip
    every_key = set().union(*schema.EVENT_SCHEMAS.values())
    assert every_key == set(schema.DETAIL_KINDS)


@pytest.mark.parametrize(
    ("type", "subject", "details"),
    [
        ("patient.viewed", None, None),  # unknown type
        ("data.extracted", {"patient": "123"}, None),  # unknown subject key
        ("data.extracted", {"permit": "Jan Jansen"}, None),  # a name is not an identifier
        ("data.extracted", {"permit": 7}, None),
        ("data.extracted", None, {"name": "Jan"}),  # unknown detail key
        ("data.extracted", None, {"rows": "3"}),  # string where a count belongs
        ("data.extracted", None, {"rows": True}),  # bool is not a count
        ("data.extracted", None, {"rows": -1}),
        ("data.extracted", None, {"rows": 2.5}),
        ("data.extracted", None, {"rows": 2**60}),
        ("data.extracted", None, {"spec_hash": "md5:abc"}),
        ("data.extracted", None, {"spec_hash": "sha256:" + "A" * 64}),
        ("access.denied", None, {"reason": "Patient Jan opted out"}),  # free text
        ("access.denied", None, {"reason": ["a"]}),
        ("access.denied", None, {"reason": None}),
        ("training.round", None, {"rows": float("nan")}),
        ("permit.issued", None, {"permit_hash": HASH, "comment": "x"}),
    ],
)
def test_schema_refuses_anything_outside_v1(type: str, subject: Any, details: Any) -> None:
    with pytest.raises(AuditSchemaError) as err:
        _build(type, subject, details)
    assert err.value.code == "AUDIT_SCHEMA"
    assert "Jan" not in str(err.value)  # no personal data echoed in errors


def test_valid_payloads_pass() -> None:
    issued = _build(
        "permit.issued",
        {"permit": "urn:uuid:1-2"},
        {"permit_hash": HASH, "version": 2, "signatures": 2, "supersedes": "P-0"},
    )
    assert issued.type == "permit.issued"
    assert dict(issued.subject) == {"permit": "urn:uuid:1-2"}
    assert dict(issued.details) == {
        "permit_hash": HASH,
        "version": 2,
        "signatures": 2,
        "supersedes": "P-0",
    }
    rnd = _build(
        "training.round",
        {"job": "job-1", "site": "site.a"},
        {"round": 1, "model_hash": HASH, "bytes_sent": 10},
    )
    assert dict(rnd.details) == {"round": 1, "model_hash": HASH, "bytes_sent": 10}
    listed = _build("statuslist.published", {}, {"status_list_version": 3, "revoked_count": 0})
    assert listed.details["status_list_version"] == 3


def test_payload_top_level_is_exact() -> None:
    good = build_event("access.allowed", org="o", kid="A" * 43, subject={}, details={}).to_payload()
    for bad in (
        {**good, "note": "x"},
        {k: v for k, v in good.items() if k != "time"},
        {**good, "v": 1},  # v1 events named no log position
        {**good, "log": {"origin": "o"}},
        {**good, "log": {"origin": "o", "index": -1}},
        {**good, "log": {"origin": "o", "index": True}},
        {**good, "log": {"origin": "a b", "index": 0}},
        {**good, "v": True},
        {**good, "time": "2025-01-01T00:00:00+01:00"},
        {**good, "time": "2025-13-01T00:00:00Z"},
        {**good, "actor": {"org": "o", "kid": "short"}},
        {**good, "actor": {"org": "o", "kid": "A" * 43, "name": "x"}},
    ):
        with pytest.raises(AuditSchemaError):
            schema.check_payload(bad)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_sign_verify_and_jwcrypto_interop(alg: str) -> None:
    signer = EventSigner.generate("hdab-nl", alg=alg)
    trust = TrustStore([signer.trusted_key()])
    token = sign_event(
        signer,
        "permit.revoked",
        subject={"permit": "p-1"},
        details={"reason": "fraud"},
        origin="hospital-a",
        index=0,
    )
    verified = verify_event(token, trust)
    assert verified.event.org == "hdab-nl" and verified.key.alg == alg
    # jwcrypto accepts our token...
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(jwk.JWK(**signer.public_jwk()), alg=alg)
    assert json.loads(obj.payload)["type"] == "permit.revoked"
    # ...and we accept a token jwcrypto made with the same key and header
    private = jwk.JWK(**signer.to_json()["jwk"])
    made = jws.JWS(parse_event(token).payload_bytes())
    made.add_signature(private, None, json.dumps({"alg": alg, "kid": signer.kid, "typ": EVENT_TYP}))
    assert verify_event(made.serialize(compact=True), trust).event.type == "permit.revoked"


def test_kid_is_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.3: the Ed25519 example key and its RFC 7638 thumbprint
    key = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk.JWK(**key)) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    store = TrustStore()
    assert store.add("x", key).kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    with pytest.raises(AuditKeyError):
        store.add("x", {**key, "kid": "something-else"})
    with pytest.raises(AuditAlgorithmError):
        TrustStore().add("x", key, alg="ES256")


def _forge_header(token: str, **header: str) -> str:
    head = b64url_encode(json.dumps(header).encode())
    _, payload, sig = token.split(".")
    return f"{head}.{payload}.{sig}"


def test_verification_refusals(
    actor: EventSigner, actor_es256: EventSigner, trust: TrustStore
) -> None:
    token = sign_event(
        actor,
        "access.denied",
        subject={"job": "j"},
        details={"reason": "expired"},
        origin="hospital-a",
        index=0,
    )
    # algorithm pinned per key: claiming another alg for the same kid is refused
    with pytest.raises(AuditAlgorithmError):
        verify_event(_forge_header(token, alg="ES256", kid=actor.kid, typ=EVENT_TYP), trust)
    # an embedded key or extra header members are refused
    with pytest.raises(AuditSignatureError):
        verify_event(
            _forge_header(token, alg="EdDSA", kid=actor.kid, typ=EVENT_TYP, jwk="{}"), trust
        )
    # unknown key
    stranger = EventSigner.generate("hdab-nl")
    with pytest.raises(AuditKeyError):
        verify_event(
            sign_event(
                stranger, "access.denied", subject={}, details={}, origin="hospital-a", index=0
            ),
            trust,
        )
    # payload names another org than the key's owner
    impostor = EventSigner(actor_es256.org, actor_es256.to_json()["jwk"])
    fake = impostor.sign(
        build_event(
            "access.allowed", org="hdab-nl", kid=impostor.kid, subject={}, details={}
        ).payload_bytes(),
        EVENT_TYP,
    )
    with pytest.raises(AuditActorError):
        verify_event(fake, trust)
    # flipped signature byte, non-canonical base64, garbage
    head, payload, sig = token.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(sig) % 4 == 2  # 64 bytes: the last character carries 4 unused bits
    same_bytes = sig[:-1] + alphabet[alphabet.index(sig[-1]) | 1]  # decodes to the same bytes
    for bad in (
        f"{head}.{payload}.{flipped}",
        f"{head}.{payload}.{sig}=",
        f"{head}.{payload}.{same_bytes}",  # malleated encoding would be a second leaf
        "a.b",
        "x" * 20000,
    ):
        with pytest.raises(AuditSignatureError):
            verify_event(bad, trust)


def test_trust_store_and_signer_files(
    tmp_path: Path, actor_es256: EventSigner, trust: TrustStore
) -> None:
    trust.save(tmp_path / "trust.json")
    loaded = TrustStore.load(tmp_path / "trust.json")
    assert {k.kid for k in loaded} == {k.kid for k in trust}
    assert all("d" not in k.jwk for k in loaded)  # never a private member in a trust store
    (tmp_path / "key.json").write_text(json.dumps(actor_es256.to_json()))
    again = EventSigner.load(tmp_path / "key.json")
    assert again.kid == actor_es256.kid and again.alg == "ES256"
    with pytest.raises(AuditKeyError):
        EventSigner("x", actor_es256.public_jwk())  # a public key cannot sign


def test_non_canonical_payload_refused(actor: EventSigner, trust: TrustStore) -> None:
    event = build_event(
        "access.allowed", org=actor.org, kid=actor.kid, subject={"job": "j"}, details={}
    )
    canonical = event.payload_bytes()
    for variant in (
        canonical.replace(b",", b", "),  # whitespace
        json.dumps(event.to_payload()).encode(),  # unsorted keys with spaces
        canonical[:-1] + b',"v":1}',  # duplicate key
    ):
        with pytest.raises(AuditSchemaError):
            verify_event(actor.sign(variant, EVENT_TYP), trust)
    assert verify_event(actor.sign(canonical, EVENT_TYP), trust).event == event


def test_key_declared_for_another_use_is_refused(actor: EventSigner) -> None:
    """A witness key (or any non-audit key) cannot sign an audit event, even if trusted."""
    from audit_chain.errors import AuditKeyUseError

    token = sign_event(
        actor, "access.allowed", subject={"permit": "p-1"}, details={}, origin="o", index=0
    )
    witness_only = TrustStore()
    witness_only.add(actor.org, actor.public_jwk(), uses=["witness"])
    with pytest.raises(AuditKeyUseError) as err:
        verify_event(token, witness_only)
    assert err.value.code == "AUDIT_KEY_USE"
    audit = TrustStore()
    audit.add(actor.org, actor.public_jwk())  # entries without uses are audit keys
    assert verify_event(token, audit).event.type == "access.allowed"
    # a trust store file keeps the declared use
    again = TrustStore.from_json(witness_only.to_json())
    assert next(iter(again)).uses == {"witness"}
