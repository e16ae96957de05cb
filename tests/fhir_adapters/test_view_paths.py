"""The release path check: no false alarm on the SQL-on-FHIR suite, real errors on R4-only paths."""

from __future__ import annotations

import json

import pytest

from fhir_adapters.errors import ViewDefinitionError
from fhir_adapters.view_paths import check_view_paths
from tests.conftest import shared_path


@pytest.mark.parametrize("release", ["R4", "R5"])
def test_every_suite_view_passes_the_check(release: str) -> None:
    folder = shared_path("sql-on-fhir-v2", "tests")
    checked = 0
    for path in sorted(folder.glob("*.json")):
        for test in json.loads(path.read_text())["tests"]:
            if "view" in test and "expectError" not in test:
                check_view_paths(test["view"], release)  # raises on a false alarm
                checked += 1
    assert checked >= 123


@pytest.mark.parametrize(
    ("resource", "path", "release"),
    [
        ("Encounter", "class.code", "R5"),
        ("Encounter", "period.start", "R5"),
        ("Encounter", "hospitalization.admitSource", "R5"),
        ("MedicationRequest", "medicationCodeableConcept.coding.code", "R5"),
        ("Encounter", "actualPeriod.start", "R4"),
        ("Patient", "birthDate.value", "R4"),  # a primitive has no children but id/extension
    ],
)
def test_paths_a_release_does_not_have_are_refused(resource: str, path: str, release: str) -> None:
    view = {"resource": resource, "select": [{"column": [{"name": "c", "path": path}]}]}
    with pytest.raises(ViewDefinitionError) as err:
        check_view_paths(view, release)
    assert err.value.code == "VIEW_PATH_NOT_IN_RELEASE"


@pytest.mark.parametrize(
    ("resource", "path", "release"),
    [
        ("Encounter", "class.code", "R4"),
        ("Encounter", "class.coding.code", "R5"),
        ("Observation", "value.ofType(Quantity).value", "R5"),
        (
            "Observation",
            "component.where(code.coding.code = 'x').value.ofType(Quantity).unit",
            "R4",
        ),
        ("Patient", "birthDate.extension('u').value.ofType(Age).value", "R5"),
        ("Patient", "name.where(use = 'official').given.first()", "R4"),
        ("MedicationRequest", "medication.concept.coding.code", "R5"),
    ],
)
def test_paths_a_release_has_pass(resource: str, path: str, release: str) -> None:
    view = {"resource": resource, "select": [{"column": [{"name": "c", "path": path}]}]}
    check_view_paths(view, release)
