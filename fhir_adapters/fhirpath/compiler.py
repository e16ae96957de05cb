"""FHIRPath AST -> nested Python closures that walk parsed JSON directly.

Why closures: an expression in a ViewDefinition runs once per resource (or per
``forEach`` item), hundreds of thousands of times per second. Interpreting the
AST each time (what fhirpathpy does, wrapping every node in objects) costs
~20 µs per evaluation; a closure tree built once costs a few hundred ns per
node because each step is a plain loop over ``dict.get``.

Conventions every compiled function follows:

* signature ``fn(focus: list, ctx: Context) -> list`` — FHIRPath collections are
  Python lists; ``focus`` is ``$this`` of the enclosing expression;
* never mutate the input or a list returned by another compiled function (so
  literals can return one shared list);
* empty propagates: a missing element is an empty list, never an exception.
  Navigation into a value of the wrong JSON type (a string where an object is
  expected) yields empty, like any missing element. Only genuine FHIRPath
  errors (singleton expected, bad operand types) raise ``FhirPathEvaluationError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from fhir_adapters.errors import FhirPathCompileError, FhirPathEvaluationError
from fhir_adapters.fhirpath.ast import (
    Binary,
    Call,
    Const,
    Ident,
    Index,
    Literal,
    Member,
    Node,
    Special,
    TypeOp,
    TypeSpec,
    Unary,
)
from fhir_adapters.fhirpath.model import (
    CHOICE_NAMES,
    COMPLEX_TYPES,
    PRIMITIVE_INTEGER_TYPES,
    PRIMITIVE_STRING_TYPES,
    SYSTEM_TYPES,
)
from fhir_adapters.fhirpath.navigation import Step, make_chain
from fhir_adapters.fhirpath.values import (
    Quantity,
    Temporal,
    as_temporal,
    compare_items,
    item_equal,
    item_equivalent,
    temporal_add,
    to_decimal,
)


class Context:
    """Per-evaluation state: the root resource and the current ``%rowIndex``.

    One instance is reused across rows (the view runner sets the fields before
    evaluating), so evaluation allocates nothing for the environment.
    """

    __slots__ = ("root", "row_index")

    def __init__(self, root: Any = None, row_index: int = 0) -> None:
        self.root = root
        self.row_index = row_index


Fn = Callable[[list[Any], Context], list[Any]]

_EMPTY: list[Any] = []
_TRUE: list[Any] = [True]
_FALSE: list[Any] = [False]


def _identity(focus: list[Any], ctx: Context) -> list[Any]:
    return focus


# --------------------------------------------------------------------------- types


def _strip_namespace(name: str) -> tuple[str | None, str]:
    if "." in name:
        ns, _, base = name.partition(".")
        return ns, base
    return None, name


def type_test(type_name: str) -> Callable[[Any], bool]:
    """Predicate: does a JSON value (or FHIRPath value) have ``type_name``?

    JSON does not record FHIR primitive types, so all string-like primitives
    (code, uri, dateTime, ...) accept any string; ``ofType`` on a choice element
    avoids this ambiguity by reading the typed key (``valueDateTime``).
    """
    ns, name = _strip_namespace(type_name)
    if ns == "System" or (ns is None and name in SYSTEM_TYPES and name not in COMPLEX_TYPES):
        name = SYSTEM_TYPES.get(name, name)
    if name in ("date", "dateTime", "instant", "time"):
        kind = {"date": "Date", "dateTime": "DateTime", "instant": "DateTime", "time": "Time"}[name]
        return lambda v: type(v) is str or (type(v) is Temporal and v.kind == kind)
    if name in PRIMITIVE_STRING_TYPES:
        return lambda v: type(v) is str
    if name == "boolean":
        return lambda v: type(v) is bool
    if name in PRIMITIVE_INTEGER_TYPES:
        return lambda v: type(v) is int
    if name == "decimal":
        return lambda v: type(v) is float or type(v) is int or type(v) is Decimal
    if name in (
        "Quantity",
        "SimpleQuantity",
        "Age",
        "Duration",
        "Distance",
        "Count",
        "MoneyQuantity",
    ):
        return lambda v: type(v) is Quantity or (type(v) is dict and "resourceType" not in v)
    if name in COMPLEX_TYPES:
        return lambda v: type(v) is dict and "resourceType" not in v
    if name in ("Resource", "DomainResource"):
        return lambda v: type(v) is dict and "resourceType" in v
    if name[:1].isupper():
        return lambda v: type(v) is dict and v.get("resourceType") == name
    raise FhirPathCompileError(f"unknown type {type_name!r}")


def json_check(type_name: str) -> str | None:
    """Python source template (``{v}``: the variable) testing the JSON type for a FHIR type."""
    ns, name = _strip_namespace(type_name)
    if ns == "System" or (ns is None and name in SYSTEM_TYPES and name not in COMPLEX_TYPES):
        name = SYSTEM_TYPES.get(name, name)
    if name in PRIMITIVE_STRING_TYPES:
        return "type({v}) is str"
    if name == "boolean":
        return "type({v}) is bool"
    if name in PRIMITIVE_INTEGER_TYPES:
        return "type({v}) is int"
    if name == "decimal":
        return "type({v}) is float or type({v}) is int"
    if name[:1].isupper():
        return "type({v}) is dict"
    return None


def _suffix(type_name: str) -> str:
    _, name = _strip_namespace(type_name)
    name = SYSTEM_TYPES.get(name, name) if name not in COMPLEX_TYPES else name
    return name[:1].upper() + name[1:]


# --------------------------------------------------------------------------- helpers


def _truth(coll: list[Any], what: str) -> bool | None:
    """Singleton evaluation of a collection as Boolean (FHIRPath §4.5)."""
    if not coll:
        return None
    if len(coll) == 1:
        v = coll[0]
        return v if type(v) is bool else True
    raise FhirPathEvaluationError(f"{what}: expected a single boolean, got {len(coll)} items")


def _single(coll: list[Any], what: str) -> Any:
    if not coll:
        return None
    if len(coll) == 1:
        return coll[0]
    raise FhirPathEvaluationError(f"{what}: expected a single item, got {len(coll)} items")


def _num(v: Any) -> bool:
    t = type(v)
    return t is int or t is float or t is Decimal


def _distinct(coll: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in coll:
        if not any(item_equal(v, o) is True for o in out):
            out.append(v)
    return out


def _contains(coll: list[Any], v: Any) -> bool:
    return any(item_equal(v, o) is True for o in coll)


def _to_str(v: Any) -> str | None:
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int or t is Decimal:
        return str(v)
    if t is float:
        d = to_decimal(v)
        return str(d) if d is not None else repr(v)
    if t is Temporal:
        return v.text
    if t is Quantity:
        return f"{v.value} '{v.unit}'"
    return None


# --------------------------------------------------------------------------- operators


def _op_equal(left: list[Any], right: list[Any]) -> list[Any]:
    if not left or not right:
        return _EMPTY
    if len(left) != len(right):
        return _FALSE
    for a, b in zip(left, right, strict=True):
        e = item_equal(a, b)
        if e is None:
            return _EMPTY
        if not e:
            return _FALSE
    return _TRUE


def _op_equiv(left: list[Any], right: list[Any]) -> list[Any]:
    if not left and not right:
        return _TRUE
    if len(left) != len(right):
        return _FALSE
    rest = list(right)
    for a in left:
        for i, b in enumerate(rest):
            if item_equivalent(a, b):
                del rest[i]
                break
        else:
            return _FALSE
    return _TRUE


def _negate(r: list[Any]) -> list[Any]:
    if not r:
        return _EMPTY
    return _FALSE if r[0] else _TRUE


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and type(a) is str and type(b) is str:
        return a + b
    if not (_num(a) and _num(b)) or type(a) is bool or type(b) is bool:
        if type(a) is Quantity and type(b) is Quantity and a.unit == b.unit and op in "+-":
            return Quantity(_arith(op, a.value, b.value), a.unit)
        if type(b) is Quantity and op in "+-" and (type(a) is Temporal or type(a) is str):
            ta = as_temporal(a, "DateTime")
            if ta is not None and type(a) is str and "T" not in a:
                ta = Temporal(ta.kind if len(ta.parts) > 3 else "Date", ta.parts, ta.tz, a)
            moved = None if ta is None else temporal_add(ta, b, 1 if op == "+" else -1)
            if moved is None:
                raise FhirPathEvaluationError(
                    f"operator {op!r}: not a date and a calendar duration"
                )
            return moved
        raise FhirPathEvaluationError(f"operator {op!r}: operands are not numbers")
    if op == "/":
        if b == 0:
            return None
        da, db = to_decimal(a), to_decimal(b)
        assert da is not None and db is not None
        return float(da / db)
    if op == "div":
        if b == 0:
            return None
        q = to_decimal(a) // to_decimal(b)  # type: ignore[operator]
        return int(q)
    if op == "mod":
        if b == 0:
            return None
        if type(a) is int and type(b) is int:
            return int(math.fmod(a, b))
        r = to_decimal(a) % to_decimal(b)  # type: ignore[operator]
        return float(r)
    if type(a) is int and type(b) is int:
        return a + b if op == "+" else a - b if op == "-" else a * b
    da, db = to_decimal(a), to_decimal(b)
    assert da is not None and db is not None
    r2 = da + db if op == "+" else da - db if op == "-" else da * db
    return float(r2)


_COMPARE: dict[str, Callable[[int], bool]] = {
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
    "<=": lambda c: c <= 0,
    ">=": lambda c: c >= 0,
}


# --------------------------------------------------------------------------- compiler


class Compiler:
    """Compiles AST nodes; holds the constants visible to the expression."""

    def __init__(self, constants: Mapping[str, list[Any]] | None = None) -> None:
        self.constants: dict[str, list[Any]] = dict(constants or {})

    # -- entry
    def scalar_of(self, node: Node) -> Callable[[Any], Any] | None:
        """Single-item evaluator of ``node`` (see ``fhirpath.scalar``), or None."""
        from fhir_adapters.fhirpath.scalar import scalar_of

        return scalar_of(self, node)

    def compile(self, node: Node) -> Fn:
        chain = self.chain_of(node)
        if chain is not None:
            target_node, steps = chain
            target = None if target_node is None else self.compile(target_node)
            return make_chain(target, steps)
        if isinstance(node, Literal):
            values = list(node.values)
            return lambda focus, ctx: values
        if isinstance(node, Special):
            return self._special(node.name)
        if isinstance(node, Const):
            return self._const(node.name)
        if isinstance(node, Call):
            return self._call(node)
        if isinstance(node, Index):
            return self._index(node)
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, Unary):
            return self._unary(node)
        if isinstance(node, TypeOp):
            return self._typeop(node)
        if isinstance(node, TypeSpec):
            # a bare identifier that the parser read as a type argument elsewhere
            return make_chain(None, [Step(node.name, head=True)])
        raise FhirPathCompileError(f"unsupported expression node {type(node).__name__}")

    def chain_of(self, node: Node) -> tuple[Node | None, list[Step]] | None:
        """Split a navigation chain into (target, steps); None when ``node`` is not one.

        Steps are member accesses and ``ofType(T)`` applied to a member (read as
        the typed key ``nameT``); the target is whatever precedes the first step
        (None: the focus).
        """
        steps: list[Step] = []
        while True:
            if isinstance(node, Member):
                steps.append(Step(node.name))
                node = node.target
            elif (
                isinstance(node, Call)
                and node.name == "ofType"
                and len(node.args) == 1
                and isinstance(node.args[0], TypeSpec | Ident)
                and isinstance(node.target, Member | Ident)
            ):
                arg = node.args[0]
                tname = arg.name
                inner = node.target
                steps.append(
                    Step(
                        inner.name,
                        key=inner.name + _suffix(tname),
                        test=type_test(tname),
                        check=json_check(tname),
                    )
                )
                node = inner.target if isinstance(inner, Member) else Ident("$focus")
                if isinstance(inner, Ident):
                    steps.reverse()
                    return None, steps
            elif isinstance(node, Ident):
                if node.name == "$focus":
                    steps.reverse()
                    return None, steps
                steps.append(Step(node.name, head=True))
                steps.reverse()
                return None, steps
            else:
                if not steps:
                    return None
                steps.reverse()
                return node, steps

    def _special(self, name: str) -> Fn:
        if name == "this":
            return _identity
        # $index/$total are not tracked by the iterating functions: refuse, never guess
        raise FhirPathCompileError(f"${name} is not supported")

    def _const(self, name: str) -> Fn:
        if name == "rowIndex":
            return lambda focus, ctx: [ctx.row_index]
        if name in self.constants:
            values = self.constants[name]
            return lambda focus, ctx: values
        if name in ("resource", "rootResource", "context"):
            return lambda focus, ctx: [ctx.root] if ctx.root is not None else _EMPTY
        fixed = {
            "ucum": "http://unitsofmeasure.org",
            "sct": "http://snomed.info/sct",
            "loinc": "http://loinc.org",
        }
        if name in fixed:
            lit = [fixed[name]]
            return lambda focus, ctx: lit
        raise FhirPathCompileError(f"undefined constant %{name}")

    def _index(self, node: Index) -> Fn:
        target = self.compile(node.target)
        idx_node = node.index
        if isinstance(idx_node, Literal) and len(idx_node.values) == 1:
            i = idx_node.values[0]
            if type(i) is not int:
                raise FhirPathCompileError("indexer must be an integer")

            def fixed(focus: list[Any], ctx: Context) -> list[Any]:
                coll = target(focus, ctx)
                return [coll[i]] if 0 <= i < len(coll) else _EMPTY

            return fixed
        index = self.compile(idx_node)

        def dynamic(focus: list[Any], ctx: Context) -> list[Any]:
            coll = target(focus, ctx)
            iv = _single(index(focus, ctx), "indexer")
            if iv is None:
                return _EMPTY
            if type(iv) is not int:
                raise FhirPathEvaluationError("indexer must be an integer")
            return [coll[iv]] if 0 <= iv < len(coll) else _EMPTY

        return dynamic

    def _unary(self, node: Unary) -> Fn:
        operand = self.compile(node.operand)

        def neg(focus: list[Any], ctx: Context) -> list[Any]:
            v = _single(operand(focus, ctx), "unary minus")
            if v is None:
                return _EMPTY
            if type(v) is Quantity:
                return [Quantity(-v.value, v.unit)]
            if not _num(v) or type(v) is bool:
                raise FhirPathEvaluationError("unary minus: operand is not a number")
            return [-v]

        return neg

    def _typeop(self, node: TypeOp) -> Fn:
        operand = self.compile(node.operand)
        test = type_test(node.type_name)
        if node.op == "is":

            def is_(focus: list[Any], ctx: Context) -> list[Any]:
                v = _single(operand(focus, ctx), "is")
                if v is None:
                    return _EMPTY
                return _TRUE if test(v) else _FALSE

            return is_

        def as_(focus: list[Any], ctx: Context) -> list[Any]:
            coll = operand(focus, ctx)
            return [v for v in coll if test(v)]

        if isinstance(node.operand, Ident | Member) and node.operand.name in CHOICE_NAMES:
            return self.compile(Call(node.operand, "ofType", (TypeSpec(node.type_name),)))
        return as_

    # -- binary operators
    def _binary(self, node: Binary) -> Fn:
        op = node.op
        left = self.compile(node.left)
        right = self.compile(node.right)
        if op == "=":
            rn = node.right
            if isinstance(rn, Literal) and len(rn.values) == 1 and type(rn.values[0]) is str:
                lit = rn.values[0]
                scalar = self.scalar_of(node.left)

                def eq_str(focus: list[Any], ctx: Context) -> list[Any]:
                    if scalar is not None and len(focus) == 1:
                        sv = scalar(focus[0])
                        if sv is None:
                            return _EMPTY
                        if type(sv) is str:
                            return _TRUE if sv == lit else _FALSE
                    lv = left(focus, ctx)
                    if len(lv) == 1 and type(lv[0]) is str:
                        return _TRUE if lv[0] == lit else _FALSE
                    return _op_equal(lv, [lit])

                return eq_str
            return lambda focus, ctx: _op_equal(left(focus, ctx), right(focus, ctx))
        if op == "!=":
            return lambda focus, ctx: _negate(_op_equal(left(focus, ctx), right(focus, ctx)))
        if op == "~":
            return lambda focus, ctx: _op_equiv(left(focus, ctx), right(focus, ctx))
        if op == "!~":
            return lambda focus, ctx: _negate(_op_equiv(left(focus, ctx), right(focus, ctx)))
        if op in _COMPARE:
            return self._comparison(op, left, right)
        if op in ("and", "or", "xor", "implies"):
            return self._logic(op, left, right)
        if op in ("+", "-", "*", "/", "div", "mod"):

            def arith(focus: list[Any], ctx: Context) -> list[Any]:
                a = _single(left(focus, ctx), op)
                if a is None:
                    return _EMPTY
                b = _single(right(focus, ctx), op)
                if b is None:
                    return _EMPTY
                r = _arith(op, a, b)
                return _EMPTY if r is None else [r]

            return arith
        if op == "&":

            def concat(focus: list[Any], ctx: Context) -> list[Any]:
                a = _single(left(focus, ctx), "&")
                b = _single(right(focus, ctx), "&")
                sa = "" if a is None else _to_str(a)
                sb = "" if b is None else _to_str(b)
                if sa is None or sb is None:
                    raise FhirPathEvaluationError("operator '&': operands are not strings")
                return [sa + sb]

            return concat
        if op == "|":
            return lambda focus, ctx: _distinct(left(focus, ctx) + right(focus, ctx))
        if op in ("in", "contains"):
            elem, coll = (left, right) if op == "in" else (right, left)

            def member_of(focus: list[Any], ctx: Context) -> list[Any]:
                v = _single(elem(focus, ctx), op)
                if v is None:
                    return _EMPTY
                return _TRUE if _contains(coll(focus, ctx), v) else _FALSE

            return member_of
        raise FhirPathCompileError(f"unsupported operator {op!r}")

    def _comparison(self, op: str, left: Fn, right: Fn) -> Fn:
        accept = _COMPARE[op]

        def cmp(focus: list[Any], ctx: Context) -> list[Any]:
            a = _single(left(focus, ctx), op)
            if a is None:
                return _EMPTY
            b = _single(right(focus, ctx), op)
            if b is None:
                return _EMPTY
            ta, tb = type(a), type(b)
            if (ta is tb and (ta is int or ta is float or ta is str)) or (
                (ta is int or ta is float) and (tb is int or tb is float)
            ):
                c = -1 if a < b else (1 if a > b else 0)
            else:
                c2 = compare_items(a, b)
                if c2 is None:
                    if (type(a) is str) != (type(b) is str) and Temporal not in (ta, tb):
                        raise FhirPathEvaluationError(f"operator {op!r}: incomparable operands")
                    return _EMPTY
                c = c2
            return _TRUE if accept(c) else _FALSE

        return cmp

    def _logic(self, op: str, left: Fn, right: Fn) -> Fn:
        if op == "and":

            def and_(focus: list[Any], ctx: Context) -> list[Any]:
                a = _truth(left(focus, ctx), "and")
                if a is False:
                    return _FALSE
                b = _truth(right(focus, ctx), "and")
                if b is False:
                    return _FALSE
                return _TRUE if (a is True and b is True) else _EMPTY

            return and_
        if op == "or":

            def or_(focus: list[Any], ctx: Context) -> list[Any]:
                a = _truth(left(focus, ctx), "or")
                if a is True:
                    return _TRUE
                b = _truth(right(focus, ctx), "or")
                if b is True:
                    return _TRUE
                return _FALSE if (a is False and b is False) else _EMPTY

            return or_
        if op == "xor":

            def xor(focus: list[Any], ctx: Context) -> list[Any]:
                a = _truth(left(focus, ctx), "xor")
                b = _truth(right(focus, ctx), "xor")
                if a is None or b is None:
                    return _EMPTY
                return _TRUE if a != b else _FALSE

            return xor

        def implies(focus: list[Any], ctx: Context) -> list[Any]:
            a = _truth(left(focus, ctx), "implies")
            if a is False:
                return _TRUE
            b = _truth(right(focus, ctx), "implies")
            if a is True:
                return _EMPTY if b is None else (_TRUE if b else _FALSE)
            return _TRUE if b is True else _EMPTY

        return implies

    # -- function calls
    def _call(self, node: Call) -> Fn:
        from fhir_adapters.fhirpath.functions import FUNCTIONS

        spec = FUNCTIONS.get(node.name)
        if spec is None:
            raise FhirPathCompileError(f"unknown function {node.name}()")
        lo, hi, build = spec
        if not lo <= len(node.args) <= hi:
            raise FhirPathCompileError(
                f"{node.name}() takes {lo}..{hi} arguments, got {len(node.args)}"
            )
        return build(self, node)

    def target_of(self, node: Call) -> Fn:
        """Compiled input collection of a function call (the focus when written bare)."""
        return _identity if node.target is None else self.compile(node.target)
