"""Single-item evaluators: the no-list fast path for the common view expressions.

A *scalar* ``s(item)`` computes an expression on the focus ``[item]`` and
returns its value when the result is empty (``None``) or one JSON value, and
``MULTI`` when it cannot decide cheaply (several values, numbers vs dates,
non-boolean operands of ``and``...). Callers then run the compiled collection
function, which is the reference semantics; a scalar never guesses.

Covered: navigation chains (also after ``where``), ``first()``,
``getResourceKey()``, ``getReferenceKey([T])``, ``=``/``!=`` against a string,
integer or boolean literal, ``and``/``or``, ``not()``, ``exists()``,
``empty()``, ``where(criterion)`` and literals. That is what ViewDefinition
columns and ``where`` clauses are made of in practice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_adapters.fhirpath.ast import Binary, Call, Literal, Node
from fhir_adapters.fhirpath.navigation import MULTI, make_scalar

if TYPE_CHECKING:
    from fhir_adapters.fhirpath.compiler import Compiler

Scalar = Callable[[Any], Any]


def resource_key_scalar(item: Any) -> Any:
    """``getResourceKey()`` on one item."""
    if type(item) is dict and "resourceType" in item:
        rid = item.get("id")
        return rid if type(rid) is str else None
    return None


def scalar_of(c: Compiler, node: Node) -> Scalar | None:
    """The single-item evaluator of ``node``, or None when there is none."""
    chain = c.chain_of(node)
    if chain is not None:
        target_node, steps = chain
        walk = make_scalar(steps)
        if target_node is None:
            return walk
        inner = scalar_of(c, target_node)
        return None if inner is None else _then(inner, walk)
    if isinstance(node, Literal):
        if len(node.values) == 1 and type(node.values[0]) in (str, bool, int):
            value = node.values[0]
            return lambda item: value
        return None
    if isinstance(node, Binary):
        return _binary(c, node)
    if isinstance(node, Call):
        return _call(c, node)
    return None


def _then(first: Scalar, second: Scalar) -> Scalar:
    def composed(item: Any) -> Any:
        v = first(item)
        if v is None or v is MULTI:
            return v
        return second(v)

    return composed


def _binary(c: Compiler, node: Binary) -> Scalar | None:
    op = node.op
    if op in ("=", "!="):
        lit = node.right
        if not (isinstance(lit, Literal) and len(lit.values) == 1):
            return None
        want = lit.values[0]
        wtype = type(want)
        if wtype not in (str, bool, int):
            return None
        lhs = scalar_of(c, node.left)
        if lhs is None:
            return None
        negate = op == "!="

        def eq(item: Any) -> Any:
            v = lhs(item)
            if v is None or v is MULTI:
                return v
            if type(v) is not wtype:
                return MULTI  # mixed types (int vs float, string vs date): general path
            return (v != want) if negate else (v == want)

        return eq
    if op in ("and", "or"):
        left = scalar_of(c, node.left)
        right = scalar_of(c, node.right)
        if left is None or right is None:
            return None
        if op == "and":

            def and_(item: Any) -> Any:
                a = left(item)
                if a is False:
                    return False
                if a is not None and a is not True:
                    return MULTI
                b = right(item)
                if b is False:
                    return False
                if b is not None and b is not True:
                    return MULTI
                return True if (a is True and b is True) else None

            return and_

        def or_(item: Any) -> Any:
            a = left(item)
            if a is True:
                return True
            if a is not None and a is not False:
                return MULTI
            b = right(item)
            if b is True:
                return True
            if b is not None and b is not False:
                return MULTI
            return False if (a is False and b is False) else None

        return or_
    return None


def _call(c: Compiler, node: Call) -> Scalar | None:
    name = node.name
    if node.target is None:
        if name == "getResourceKey" and not node.args:
            return resource_key_scalar
        return None
    inner = scalar_of(c, node.target)
    if inner is None:
        return None
    if name == "first" and not node.args:
        return inner
    if name == "getReferenceKey":
        from fhir_adapters.fhirpath.functions import reference_key_scalar

        return reference_key_scalar(inner, node)
    if node.args and name != "where":
        return None
    if name == "exists":

        def exists(item: Any) -> Any:
            v = inner(item)
            return v if v is MULTI else v is not None

        return exists
    if name == "empty":

        def empty(item: Any) -> Any:
            v = inner(item)
            return v if v is MULTI else v is None

        return empty
    if name == "not":

        def not_(item: Any) -> Any:
            v = inner(item)
            if v is None or v is MULTI:
                return v
            return (not v) if type(v) is bool else MULTI

        return not_
    if name == "where":
        pred = scalar_of(c, node.args[0])
        if pred is None:
            return None

        def where(item: Any) -> Any:
            v = inner(item)
            if v is None or v is MULTI:
                return v
            p = pred(v)
            if p is True:
                return v
            if p is False or p is None:
                return None
            return MULTI

        return where
    return None
