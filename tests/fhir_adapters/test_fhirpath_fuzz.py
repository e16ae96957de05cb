"""Property tests: the compiler fails only with its own errors, on any input.

Real FHIR data is messy (a string where an object belongs, nulls in arrays,
numbers as strings), and ViewDefinitions come from outside. Whatever the
expression or the JSON, compiling and evaluating either succeed or raise a
``FhirAdapterError`` subclass the caller can count — never a bare TypeError.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fhir_adapters.errors import (
    FhirAdapterError,
    FhirPathCompileError,
    FhirPathSyntaxError,
    ViewEvaluationError,
)
from fhir_adapters.fhirpath import Compiler, Context, compile_expression, parse
from fhir_adapters.fhirpath.navigation import MULTI
from fhir_adapters.views import compile_view

NAMES = ["name", "given", "family", "value", "code", "coding", "system", "id", "use", "extension",
         "url", "item", "answer", "valueQuantity", "valueString", "reference", "subject"]  # fmt: skip

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "a", "official", "Patient/1", "2020-01-02", "http://loinc.org"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(NAMES), children, max_size=4),
    ),
    max_leaves=20,
)
resources = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=6).map(
    lambda d: {"resourceType": "Patient", **d}
)

atoms = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(["'official'", "1", "2.5", "true", "{}", "%rowIndex", "$this", "@2020-01"]),
)
functions = st.sampled_from(
    ["first()", "last()", "count()", "exists()", "empty()", "not()", "distinct()", "join(',')",
     "getResourceKey()", "getReferenceKey()", "getReferenceKey(Patient)", "ofType(string)",
     "ofType(Quantity)", "extension('a')", "where(use = 'official')", "lowBoundary()",
     "toString()", "toInteger()", "upper()", "length()", "single()", "tail()", "[0]", "[1]"]
)  # fmt: skip
operators = st.sampled_from(
    ["=", "!=", "~", "<", ">=", "+", "-", "*", "/", "div", "mod", "&", "|", "and", "or", "xor",
     "implies", "in", "contains"]
)  # fmt: skip


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    base = draw(atoms)
    for _ in range(draw(st.integers(0, 3))):
        step = draw(st.one_of(st.sampled_from(NAMES), functions))
        base = f"{base}{step}" if step.startswith("[") else f"{base}.{step}"
    if depth < 2 and draw(st.booleans()):
        other = draw(expressions(depth + 1))
        base = f"({base}) {draw(operators)} ({other})"
    return base


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_compiles_or_fails_cleanly(src: str) -> None:
    with contextlib.suppress(FhirPathSyntaxError, FhirPathCompileError):
        compile_expression(src)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), resources)
def test_any_expression_on_any_json_fails_only_cleanly(expr: str, resource: dict[str, Any]) -> None:
    try:
        compiled = compile_expression(expr)
    except (FhirPathSyntaxError, FhirPathCompileError):
        return
    try:
        out = compiled.evaluate(resource)
    except FhirAdapterError:
        return
    assert isinstance(out, list)
    # a single-item evaluator, when it decides, must agree with the collection semantics
    scalar = Compiler().scalar_of(parse(expr))
    if scalar is not None:
        try:
            s = scalar(resource)
        except FhirAdapterError:
            s = MULTI
        if s is None:
            assert out == []
        elif s is not MULTI:
            assert out == [s], f"{expr}: scalar {s!r} vs {out!r}"
    # the general (several items) walk must agree with the single-item fast paths
    try:
        double = compiled.fn([resource, resource], Context(resource))
    except FhirAdapterError:
        return
    if not all(part in NAMES for part in expr.split(".")):
        return  # only pure navigation chains have the doubling property
    assert double == out + out


_FUZZ_VIEW = compile_view(
    {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "family", "path": "name.family"},
                    {"name": "codes", "path": "code.coding.code", "collection": True},
                ]
            },
            {"forEachOrNull": "item", "column": [{"name": "link", "path": "subject.reference"}]},
        ],
        "where": [{"path": "value.exists() or true"}],
    }
)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(resources, json_values), max_size=5))
def test_views_report_bad_resources_and_keep_going(stream: list[Any]) -> None:
    view = _FUZZ_VIEW
    errors: list[ViewEvaluationError] = []
    rows = list(view.rows(stream, on_error=errors.append))
    patients = sum(1 for r in stream if isinstance(r, dict) and r.get("resourceType") == "Patient")
    failed_patients = {e.index for e in errors if e.resource_type == "Patient"}
    assert len(failed_patients) <= patients
    for row in rows:
        assert list(row) == ["id", "family", "codes", "link"]
        assert isinstance(row["codes"], list)
    for e in errors:
        assert e.code.startswith(("VIEW_", "FHIRPATH_"))


# --------------------------------------------------------------------------- generated runner vs plan

_TREE_RESOURCES: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "a",
        "name": [
            {"family": "F1", "given": ["g1", "g2"], "use": "official"},
            {"family": "F2", "given": []},
        ],
        "contact": [{"name": {"family": "C1"}, "telecom": [{"value": "t1"}, {"value": "t2"}]}],
        "item": [{"linkId": "1", "item": [{"linkId": "1.1"}]}, {"linkId": "2"}],
    },
    {"resourceType": "Patient", "id": "b", "name": [{"family": "F3"}], "contact": []},
    {"resourceType": "Patient", "id": "c"},
]
_ITER_PATHS = ["name", "contact", "contact.telecom", "name.given", "identifier", "item", "telecom"]
_COL_PATHS = ["id", "family", "given", "value", "linkId", "%rowIndex", "'lit'", "name.family.first()",
              "getResourceKey()", "use = 'official'", "given.exists()", "$this"]  # fmt: skip


@st.composite
def _select_nodes(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    node: dict[str, Any] = {}
    mode = draw(st.sampled_from([None, "forEach", "forEachOrNull", "repeat"]))
    if mode == "repeat":
        node["repeat"] = ["item"]
    elif mode is not None:
        node[mode] = draw(st.sampled_from(_ITER_PATHS))
    n_cols = draw(st.integers(0, 2))
    if n_cols:
        node["column"] = [
            {"name": "x", "path": draw(st.sampled_from(_COL_PATHS)), "collection": True}
            for _ in range(n_cols)
        ]
    if depth < 2:
        subs = draw(st.lists(_select_nodes(depth + 1), max_size=2))
        if subs:
            node["select"] = subs
        if draw(st.booleans()):
            branch = draw(_select_nodes(depth + 1))
            node["unionAll"] = [branch, branch]
    if not any(k in node for k in ("column", "select", "unionAll")):
        node["column"] = [{"name": "x", "path": "id"}]
    return node


def _name_columns(node: dict[str, Any], counter: list[int]) -> None:
    for col in node.get("column", []):
        col["name"] = f"c{counter[0]}"
        counter[0] += 1
    for sub in node.get("select", []):
        _name_columns(sub, counter)
    branches = node.get("unionAll", [])
    if branches:
        start = counter[0]
        _name_columns(branches[0], counter)
        end = counter[0]
        for br in branches[1:]:
            counter[0] = start
            _name_columns(br, counter)
            counter[0] = end


@pytest.mark.slow
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(st.lists(_select_nodes(), min_size=1, max_size=2))
def test_generated_runner_matches_the_interpretive_plan(selects: list[dict[str, Any]]) -> None:
    import copy

    import fhir_adapters.views as views

    view = {"resource": "Patient", "select": copy.deepcopy(selects)}
    _name_columns({"select": view["select"]}, [0])
    compiled = compile_view(view)
    assume(compiled._runner is not None)  # very large trees keep the interpretive plan
    generated = [compiled.evaluate_tuples(r) for r in _TREE_RESOURCES]
    original = views.generate_runner
    views.generate_runner = lambda *args: None  # type: ignore[assignment]
    try:
        plain = compile_view(view)
    finally:
        views.generate_runner = original
    assert plain._runner is None
    interpreted = [plain.evaluate_tuples(r) for r in _TREE_RESOURCES]
    assert generated == interpreted
