"""ConceptMaps: local codes count as standard codes only through safe relationships."""

from __future__ import annotations

import pytest

from fhir_adapters.conceptmap import ConceptMapIndex
from fhir_adapters.errors import ConceptMapError

LOCAL = "http://lab.example.org/codes"
LOINC = "http://loinc.org"


def _map(targets: list[dict]) -> dict:
    return {
        "resourceType": "ConceptMap",
        "url": "https://example.org/ConceptMap/lab",
        "group": [
            {"source": LOCAL, "target": LOINC, "element": [{"code": "A1C", "target": targets}]}
        ],
    }


@pytest.mark.parametrize(
    ("target", "mapped"),
    [
        ({"code": "4548-4", "equivalence": "equivalent"}, True),
        ({"code": "4548-4", "equivalence": "wider"}, True),
        ({"code": "4548-4", "equivalence": "narrower"}, False),
        ({"code": "4548-4", "equivalence": "disjoint"}, False),
        ({"code": "4548-4", "relationship": "equivalent"}, True),  # R5
        ({"code": "4548-4", "relationship": "source-is-narrower-than-target"}, True),
        ({"code": "4548-4", "relationship": "source-is-broader-than-target"}, False),
        ({"code": "4548-4"}, False),
    ],
)
def test_only_safe_relationships_map(target: dict, mapped: bool) -> None:
    index = ConceptMapIndex.from_resources([_map([target])])
    assert ((LOCAL, "A1C") in index.expand({(LOINC, "4548-4")})) is mapped


def test_malformed_map() -> None:
    with pytest.raises(ConceptMapError):
        ConceptMapIndex.from_resources([{"resourceType": "ConceptMap", "group": [{"element": []}]}])
    with pytest.raises(ConceptMapError):
        ConceptMapIndex.from_resources([{"resourceType": "ValueSet"}])
