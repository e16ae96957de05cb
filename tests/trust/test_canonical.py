"""trust.canonical and trust.identifiers: RFC 8785 bytes, strict parsing, one spec hash."""

from __future__ import annotations

import hashlib

import pytest

from trust import (
    MalformedError,
    NotCanonicalError,
    canonical_json,
    is_code,
    is_hash,
    is_identifier,
    parse_canonical,
    spec_hash,
    strict_json,
)


def test_rfc8785_numbers_and_order() -> None:
    assert canonical_json({"w": 1.0}) == b'{"w":1}'
    assert canonical_json(1e16) == b"10000000000000000"  # orjson writes 1e+16
    assert canonical_json(1e21) == b"1e+21"
    assert canonical_json(0.1) == b"0.1"
    assert canonical_json({"b": 1, "a": "é", "A": None}) == '{"A":null,"a":"é","b":1}'.encode()
    # RFC 8785 §3.2.3: members sorted by UTF-16 code units, not by code points
    assert canonical_json({"\U0001f600": 1, "\ufb01": 2}) == '{"\U0001f600":1,"\ufb01":2}'.encode()


def test_values_without_a_canonical_form_are_refused() -> None:
    # numbers are IEEE-754 doubles (RFC 8785 §3.2.2.3): big ints read as the nearest double
    assert canonical_json(2**53) == b"9007199254740992"
    assert canonical_json(64295636169631630) == canonical_json(6.429563616963163e16)
    for bad in (float("nan"), float("inf"), 10**400):
        with pytest.raises(NotCanonicalError):
            canonical_json({"x": bad})
    with pytest.raises(MalformedError):
        canonical_json({"x": object()})


def test_spec_hash_is_sha256_of_rfc8785() -> None:
    doc = {"w": 1.0, "n": 1e16, "name": "x"}
    expected = hashlib.sha256(b'{"n":10000000000000000,"name":"x","w":1}').hexdigest()
    assert spec_hash(doc) == "sha256:" + expected
    assert spec_hash({"name": "x", "w": 1, "n": 1e16}) == spec_hash(doc)


def test_strict_json_refuses_duplicates_and_constants() -> None:
    assert strict_json(b'{"a":1}') == {"a": 1}
    for bad in (b'{"a":1,"a":2}', b'{"a":NaN}', b"\xff", b"{"):
        with pytest.raises(MalformedError):
            strict_json(bad)
    with pytest.raises(ValueError):  # still a ValueError for older callers
        strict_json(b'{"a":1,"a":2}')


def test_parse_canonical_refuses_other_forms() -> None:
    assert parse_canonical(b'{"a":1,"b":2}') == {"a": 1, "b": 2}
    for bad in (b'{"b":2,"a":1}', b'{"a": 1}', b'{"a":1.0}'):
        with pytest.raises(NotCanonicalError):
            parse_canonical(bad)


def test_identifier_grammar() -> None:
    assert is_identifier("hospital-a:log@2026.1")
    assert not is_identifier("") and not is_identifier("a" * 129) and not is_identifier("a b")
    assert not is_identifier("Jane Doe") and not is_identifier(5)
    assert is_code("spec_hash_mismatch") and not is_code("Upper")
    assert is_hash("sha256:" + "0" * 64) and not is_hash("sha256:" + "0" * 63)
