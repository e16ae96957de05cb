"""Canonical JSON (RFC 8785, JCS), strict JSON parsing, and the one spec hash.

Why RFC 8785 and not "sorted keys, compact": a hash pinned by a permit is
recomputed by other organisations in other languages. orjson with sorted keys
writes ``1.0`` as ``1.0`` and ``1e16`` as ``1e+16``; JCS writes ``1`` and
``10000000000000000``. Only a published canonical form lets a third party
recompute the same hash. Numbers outside IEEE-754 double precision (ints
beyond 2**53, NaN, infinities) have no canonical form and are refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import rfc8785

from trust.errors import MalformedError, NotCanonicalError, TrustError


def _as_doubles(value: Any) -> Any:
    """Ints beyond +-(2**53-1) as the nearest double, as every RFC 8785 implementation reads them.

    RFC 8785 numbers are IEEE-754 doubles (the I-JSON model): a parser in any
    language reads ``64295636169631630`` as the double 6.429563616963163e16 and
    writes it back the same way, while Python reads it as an int the library
    refuses. Converting keeps hashes equal across implementations; values that
    must stay exact beyond 2**53 belong in strings (audit counts are capped).
    """
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        if abs(value) <= 2**53 - 1:
            return value
        try:
            return float(value)
        except OverflowError:
            raise NotCanonicalError("integer beyond the range of an RFC 8785 number") from None
    if isinstance(value, Mapping):
        return {k: _as_doubles(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_doubles(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (dicts, lists, str, int, float, bool, None)."""
    try:
        try:
            return rfc8785.dumps(value)
        except rfc8785.IntegerDomainError:
            return rfc8785.dumps(_as_doubles(value))
    except TrustError:
        raise
    except rfc8785.CanonicalizationError as exc:
        raise NotCanonicalError(f"value has no RFC 8785 form: {type(exc).__name__}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise MalformedError(f"not a JSON value: {type(exc).__name__}") from None


def sha256_tag(data: bytes) -> str:
    """``sha256:<64 lowercase hex>``, the hash notation used everywhere."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_hash(value: Any) -> str:
    """``sha256:<hex>`` of :func:`canonical_json`."""
    return sha256_tag(canonical_json(value))


def spec_hash(document: Mapping[str, Any]) -> str:
    """The hash a permit pins for a feature specification document.

    One function for permits, ``fhir_adapters`` (``FeatureSpec.canonical_hash``)
    and ``federation`` (the site re-hashing the coordinator's spec), so the three
    cannot disagree.
    """
    if not isinstance(document, Mapping):
        raise MalformedError("a feature specification is a JSON object")
    return canonical_hash(dict(document))


def _no_duplicates(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedError("duplicate JSON member")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise MalformedError(f"non-standard JSON constant {name}")


def strict_json(data: bytes | str) -> Any:
    """Parse JSON refusing duplicate members, NaN/Infinity and invalid UTF-8.

    Duplicate members are the classic way to make two parsers see two different
    documents; a signed object must mean one thing only.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fast = orjson.loads(raw)  # refuses NaN/Infinity and invalid UTF-8
    except orjson.JSONDecodeError:
        raise MalformedError("invalid JSON") from None
    # Fast path: most signed objects are sorted and compact; if re-serializing gives
    # the same bytes, no member can have been dropped, so there was no duplicate.
    try:
        if orjson.dumps(fast, option=orjson.OPT_SORT_KEYS) == raw:
            return fast
    except TypeError:  # orjson's serializer stops at 254 levels
        raise MalformedError("JSON nested too deeply") from None
    try:
        return json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except RecursionError:
        raise MalformedError("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedError("invalid JSON") from None


def parse_canonical(data: bytes) -> Any:
    """Parse bytes that must already be canonical JSON (signed payloads, leaves)."""
    value = strict_json(data)
    if canonical_json(value) != data:
        raise NotCanonicalError("JSON is not in RFC 8785 canonical form")
    return value


__all__ = [
    "canonical_hash",
    "canonical_json",
    "parse_canonical",
    "sha256_tag",
    "spec_hash",
    "strict_json",
]
