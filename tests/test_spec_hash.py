"""One spec hash: permits, fhir_adapters and federation agree, and it is RFC 8785.

Before the trust layer, ``federation.adapters.spec_digest`` (orjson, sorted keys)
and ``FeatureSpec.canonical_hash`` gave different hashes for ``{"w": 1.0}``,
and orjson writes ``1e16`` as ``1e+16``, which no RFC 8785 implementation does.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import orjson
import pytest

import trust
from federation.adapters import ArraySource
from federation.errors import AccessDeniedError
from fhir_adapters.features import FeatureSpec
from permits.model import DataGrant
from tests.fhir_adapters.helpers import spec_doc
from tests.fhir_adapters.test_features_spec import BMI


def _docs() -> list[dict]:
    float_form = spec_doc([{**BMI, "window": {"from": -1e16, "to": 1.0}}])
    int_form = spec_doc([{**BMI, "window": {"from": -(10**16), "to": 1}}])
    return [float_form, int_form]


def _empty_site(tmp_path: Path) -> str:
    path = tmp_path / "site.npz"
    np.savez(path, X=np.zeros((2, 0), np.float32), y=np.zeros(2), feature_names=np.array([], str))
    return str(path)


def test_permits_features_and_federation_agree(tmp_path: Path) -> None:
    float_form, int_form = _docs()
    pinned = trust.spec_hash(float_form)
    site = ArraySource(_empty_site(tmp_path))
    for doc in (float_form, int_form):  # 1.0 and 1, 1e16 and 10**16: one canonical form
        assert FeatureSpec.from_dict(doc).canonical_hash() == pinned  # fhir_adapters
        assert DataGrant.model_construct(feature_spec_hash=pinned).pins_spec(doc)  # permits
        assert site.load(doc, spec_hash=pinned).patients == 2  # federation re-hash passes
    changed = copy.deepcopy(float_form)
    changed["recipe"]["features"][0]["window"]["to"] = 2.0
    assert FeatureSpec.from_dict(changed).canonical_hash() != pinned
    assert not DataGrant.model_construct(feature_spec_hash=pinned).pins_spec(changed)
    with pytest.raises(AccessDeniedError):
        site.load(changed, spec_hash=pinned)


def test_spec_hash_is_rfc8785_not_orjson() -> None:
    assert trust.spec_hash({"w": 1.0}) == trust.spec_hash({"w": 1})
    assert trust.spec_hash({"w": 1.0}) == "sha256:" + hashlib.sha256(b'{"w":1}').hexdigest()
    assert orjson.dumps({"n": 1e16}) == b'{"n":1e+16}'  # what the old spec_digest hashed
    expected = hashlib.sha256(b'{"n":10000000000000000}').hexdigest()
    assert trust.spec_hash({"n": 1e16}) == "sha256:" + expected
