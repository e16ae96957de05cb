"""FHIRPath functions, each a builder ``(compiler, call) -> compiled closure``.

Builders run once at compile time: they compile the arguments, check literal
arguments (type specifiers, URLs, separators) and return a closure that only
loops. Arguments that are expressions over each input item (``where``,
``select``, ``exists``, ``all``, ``repeat``) are evaluated with that item as
``$this``; other arguments are evaluated against the enclosing focus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fhir_adapters.errors import FhirPathCompileError, FhirPathEvaluationError
from fhir_adapters.fhirpath.ast import Call, Ident, Literal, Member, TypeSpec
from fhir_adapters.fhirpath.boundaries import (
    decimal_boundary,
    period_boundary,
    quantity_boundary,
    temporal_boundary,
)
from fhir_adapters.fhirpath.compiler import (
    _EMPTY,
    _FALSE,
    _TRUE,
    Compiler,
    Context,
    Fn,
    _contains,
    _distinct,
    _single,
    _to_str,
    _truth,
    type_test,
)
from fhir_adapters.fhirpath.quantity import quantity_unit
from fhir_adapters.fhirpath.values import Quantity, Temporal, to_decimal

Builder = Callable[[Compiler, Call], Fn]
FUNCTIONS: dict[str, tuple[int, int, Builder]] = {}


def _register(name: str, lo: int = 0, hi: int = 0) -> Callable[[Builder], Builder]:
    def deco(build: Builder) -> Builder:
        FUNCTIONS[name] = (lo, hi, build)
        return build

    return deco


def _simple(name: str, fn: Callable[[list[Any]], list[Any]]) -> None:
    """Register an argument-less function that maps the input collection."""

    def build(c: Compiler, node: Call) -> Fn:
        target = c.target_of(node)
        return lambda focus, ctx: fn(target(focus, ctx))

    FUNCTIONS[name] = (0, 0, build)


def _type_name(node: Call, i: int = 0) -> str:
    arg = node.args[i]
    if isinstance(arg, TypeSpec):
        return arg.name
    if isinstance(arg, Ident):
        return arg.name
    raise FhirPathCompileError(f"{node.name}() expects a type name")


def _literal_arg(c: Compiler, node: Call, i: int) -> Fn:
    return c.compile(node.args[i])


# --------------------------------------------------------------------------- existence


_simple("empty", lambda coll: _FALSE if coll else _TRUE)
_simple("count", lambda coll: [len(coll)])
_simple("first", lambda coll: coll[:1])
_simple("last", lambda coll: coll[-1:])
_simple("tail", lambda coll: coll[1:])
_simple("distinct", _distinct)
_simple("isDistinct", lambda coll: _TRUE if len(_distinct(coll)) == len(coll) else _FALSE)
_simple("hasValue", lambda coll: _TRUE if len(coll) == 1 and type(coll[0]) is not dict else _FALSE)
_simple("allTrue", lambda coll: _TRUE if all(v is True for v in coll) else _FALSE)
_simple("anyTrue", lambda coll: _TRUE if any(v is True for v in coll) else _FALSE)
_simple("allFalse", lambda coll: _TRUE if all(v is False for v in coll) else _FALSE)
_simple("anyFalse", lambda coll: _TRUE if any(v is False for v in coll) else _FALSE)


def _not(coll: list[Any]) -> list[Any]:
    b = _truth(coll, "not()")
    if b is None:
        return _EMPTY
    return _FALSE if b else _TRUE


_simple("not", _not)


def _single_fn(coll: list[Any]) -> list[Any]:
    if len(coll) > 1:
        raise FhirPathEvaluationError(f"single(): got {len(coll)} items")
    return coll


_simple("single", _single_fn)


@_register("exists", 0, 1)
def _exists(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    if not node.args:
        return lambda focus, ctx: _TRUE if target(focus, ctx) else _FALSE
    crit = c.compile(node.args[0])

    def exists(focus: list[Any], ctx: Context) -> list[Any]:
        for item in target(focus, ctx):
            if _truth(crit([item], ctx), "exists()") is True:
                return _TRUE
        return _FALSE

    return exists


@_register("all", 1, 1)
def _all(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    crit = c.compile(node.args[0])

    def all_(focus: list[Any], ctx: Context) -> list[Any]:
        for item in target(focus, ctx):
            if _truth(crit([item], ctx), "all()") is not True:
                return _FALSE
        return _TRUE

    return all_


@_register("where", 1, 1)
def _where(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    arg = node.args[0]
    crit = c.compile(arg)
    pred = c.scalar_of(arg)
    if pred is not None:
        return _where_scalar(target, pred, crit)

    def where(focus: list[Any], ctx: Context) -> list[Any]:
        out: list[Any] = []
        for item in target(focus, ctx):
            r = crit([item], ctx)
            if r and _truth(r, "where()") is True:
                out.append(item)
        return out

    return where


def _where_scalar(target: Fn, pred: Callable[[Any], Any], crit: Fn) -> Fn:
    """``where`` whose criterion has a single-item evaluator: no list per item."""

    def where_fast(focus: list[Any], ctx: Context) -> list[Any]:
        out: list[Any] = []
        for item in target(focus, ctx):
            p = pred(item)
            if p is True:
                out.append(item)
            elif p is False or p is None:
                continue
            else:
                r = crit([item], ctx)
                if r and _truth(r, "where()") is True:
                    out.append(item)
        return out

    return where_fast


@_register("select", 1, 1)
def _select(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    proj = c.compile(node.args[0])

    def select(focus: list[Any], ctx: Context) -> list[Any]:
        out: list[Any] = []
        for item in target(focus, ctx):
            out.extend(proj([item], ctx))
        return out

    return select


@_register("repeat", 1, 1)
def _repeat(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    proj = c.compile(node.args[0])

    def repeat(focus: list[Any], ctx: Context) -> list[Any]:
        out: list[Any] = []
        seen: set[int] = set()  # identity: JSON trees have no cycles, but $this would loop
        todo = list(target(focus, ctx))
        while todo:
            nxt: list[Any] = []
            for item in todo:
                for child in proj([item], ctx):
                    key = id(child)
                    if key not in seen:
                        seen.add(key)
                        out.append(child)
                        nxt.append(child)
            todo = nxt
        return out

    return repeat


@_register("iif", 2, 3)
def _iif(c: Compiler, node: Call) -> Fn:
    target = None if node.target is None else c.compile(node.target)
    crit = c.compile(node.args[0])
    yes = c.compile(node.args[1])
    no = c.compile(node.args[2]) if len(node.args) == 3 else None

    def iif(focus: list[Any], ctx: Context) -> list[Any]:
        base = focus
        if target is not None:
            base = target(focus, ctx)
            if len(base) > 1:
                raise FhirPathEvaluationError("iif(): input must be a single item")
        if _truth(crit(base, ctx), "iif()") is True:
            return yes(base, ctx)
        return no(base, ctx) if no is not None else _EMPTY

    return iif


# --------------------------------------------------------------------------- subsetting


def _int_arg(c: Compiler, node: Call, name: str) -> Fn:
    return c.compile(node.args[0])


@_register("skip", 1, 1)
def _skip(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    n = c.compile(node.args[0])

    def skip(focus: list[Any], ctx: Context) -> list[Any]:
        k = _single(n(focus, ctx), "skip()")
        coll = target(focus, ctx)
        return coll[max(k, 0) :] if type(k) is int else coll

    return skip


@_register("take", 1, 1)
def _take(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    n = c.compile(node.args[0])

    def take(focus: list[Any], ctx: Context) -> list[Any]:
        k = _single(n(focus, ctx), "take()")
        if type(k) is not int or k <= 0:
            return _EMPTY
        return target(focus, ctx)[:k]

    return take


def _collection_op(name: str, op: Callable[[list[Any], list[Any]], list[Any]]) -> None:
    def build(c: Compiler, node: Call) -> Fn:
        target = c.target_of(node)
        other = c.compile(node.args[0])
        return lambda focus, ctx: op(target(focus, ctx), other(focus, ctx))

    FUNCTIONS[name] = (1, 1, build)


_collection_op("union", lambda a, b: _distinct(a + b))
_collection_op("combine", lambda a, b: a + b)
_collection_op("intersect", lambda a, b: _distinct([v for v in a if _contains(b, v)]))
_collection_op("exclude", lambda a, b: [v for v in a if not _contains(b, v)])
_collection_op("subsetOf", lambda a, b: _TRUE if all(_contains(b, v) for v in a) else _FALSE)
_collection_op("supersetOf", lambda a, b: _TRUE if all(_contains(a, v) for v in b) else _FALSE)


# --------------------------------------------------------------------------- types


@_register("ofType", 1, 1)
def _of_type(c: Compiler, node: Call) -> Fn:
    tname = _type_name(node)
    target = c.target_of(node)
    test = type_test(tname)
    return lambda focus, ctx: [v for v in target(focus, ctx) if test(v)]


@_register("is", 1, 1)
def _is(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    test = type_test(_type_name(node))

    def is_(focus: list[Any], ctx: Context) -> list[Any]:
        v = _single(target(focus, ctx), "is()")
        if v is None:
            return _EMPTY
        return _TRUE if test(v) else _FALSE

    return is_


@_register("as", 1, 1)
def _as(c: Compiler, node: Call) -> Fn:
    return _of_type(c, node)


# --------------------------------------------------------------------------- FHIR-specific


@_register("extension", 1, 1)
def _extension(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    arg = node.args[0]
    url_fn = c.compile(arg)
    fixed = arg.values[0] if isinstance(arg, Literal) and len(arg.values) == 1 else None
    sibling = _primitive_sibling(node.target)
    side = None if sibling is None else c.compile(sibling)

    def extension(focus: list[Any], ctx: Context) -> list[Any]:
        url = fixed if fixed is not None else _single(url_fn(focus, ctx), "extension()")
        if url is None:
            return _EMPTY
        out: list[Any] = []
        items = target(focus, ctx)
        if side is not None:
            items = items + side(focus, ctx)
        for item in items:
            if type(item) is not dict:
                continue
            exts = item.get("extension")
            if type(exts) is not list:
                continue
            for ext in exts:
                if type(ext) is dict and ext.get("url") == url:
                    out.append(ext)
        return out

    return extension


def _primitive_sibling(node: Any) -> Any:
    """``a.birthDate`` -> ``a._birthDate``: where JSON keeps a primitive's extensions.

    FHIR JSON stores the id and extensions of a primitive value in a sibling
    key prefixed with ``_`` (``"_birthDate": {"extension": [...]}``), so
    ``birthDate.extension(url)`` has to read that key too. Choice elements
    read ``_valueDate`` for ``value.ofType(date)``. None when the target is
    not a member name that could hold a primitive.
    """
    if isinstance(node, Member | Ident):
        name = node.name
        if not name[:1].islower() or name in ("extension", "modifierExtension"):
            return None
        if isinstance(node, Ident):
            return Ident("_" + name)
        return Member(node.target, "_" + name)
    if (
        isinstance(node, Call)
        and node.name == "ofType"
        and len(node.args) == 1
        and isinstance(node.args[0], TypeSpec | Ident)
        and isinstance(node.target, Member | Ident)
    ):
        inner = node.target
        tname = node.args[0].name.rsplit(".", 1)[-1]
        if not tname[:1].islower():
            return None  # a complex type keeps its extensions inside the object
        key = "_" + inner.name + tname[:1].upper() + tname[1:]
        return Ident(key) if isinstance(inner, Ident) else Member(inner.target, key)
    return None


@_register("getResourceKey", 0, 0)
def _get_resource_key(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)

    def key(focus: list[Any], ctx: Context) -> list[Any]:
        out: list[Any] = []
        for item in target(focus, ctx):
            if type(item) is dict and "resourceType" in item:
                rid = item.get("id")
                if type(rid) is str:
                    out.append(rid)
        return out

    return key


def reference_key(ref: str, want: str | None) -> str | None:
    """The key a reference points to (``Patient/1`` -> ``1``); None when the type differs.

    Handles relative (``Type/id``), versioned (``Type/id/_history/v``) and absolute
    (``http://server/fhir/Type/id``) references, and ``urn:uuid:``/``urn:oid:``
    (no type, so they match only when no type is asked for). Contained (``#id``)
    references have no key.
    """
    rtype, sep, rid = ref.partition("/")
    if sep and "/" not in rid:  # the common ``Type/id``
        if not rid or not rtype[:1].isupper() or (want is not None and rtype != want):
            return None
        return rid
    if not ref or ref.startswith("#"):
        return None
    if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
        return ref.rsplit(":", 1)[1] if want is None else None
    base = ref.split("/_history/", 1)[0]
    parts = base.rstrip("/").split("/")
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if not rid or not rtype[:1].isupper():
        return None
    if want is not None and rtype != want:
        return None
    return rid


#: Key under which a resource read from a Bundle carries ``{fullUrl: "Type/id"}`` for its
#: ``urn:`` references. The ``reference`` text itself stays as the source wrote it (a column
#: showing ``subject.reference`` shows ``urn:uuid:...``); only ``getReferenceKey()`` resolves.
#: A leading ``_`` keeps it out of ``children()``/``descendants()``; validation drops it.
REFERENCE_TABLE = "_fullUrlKeys"


def resolved_reference_key(ref: str, want: str | None, root: Any) -> str | None:
    """``reference_key`` after resolving a ``urn:`` reference through the root's Bundle table."""
    if ref[:4] == "urn:" and type(root) is dict:
        table = root.get(REFERENCE_TABLE)
        if table is not None:
            target = table.get(ref)
            if target is not None:
                ref = target
    return reference_key(ref, want)


@_register("getReferenceKey", 0, 1)
def _get_reference_key(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    want = _type_name(node) if node.args else None
    if want is not None and "." in want:
        want = want.rsplit(".", 1)[1]

    def key(focus: list[Any], ctx: Context) -> list[Any]:
        out: list[Any] = []
        for item in target(focus, ctx):
            if type(item) is not dict:
                continue
            ref = item.get("reference")
            if type(ref) is not str:
                continue
            k = resolved_reference_key(ref, want, ctx.root)
            if k is not None:
                out.append(k)
        return out

    return key


def _static_kind(node: Call) -> str | None:
    """The temporal kind a boundary function's input is known to have, from ``ofType``."""
    tgt = node.target
    if isinstance(tgt, Call) and tgt.name in ("ofType", "as") and tgt.args:
        arg = tgt.args[0]
        name = arg.name if isinstance(arg, TypeSpec | Ident) else ""
        name = name.rsplit(".", 1)[-1]
        return {
            "date": "Date",
            "Date": "Date",
            "dateTime": "DateTime",
            "DateTime": "DateTime",
            "instant": "DateTime",
            "time": "Time",
            "Time": "Time",
        }.get(name)
    return None


def _boundary(high: bool) -> Builder:
    def build(c: Compiler, node: Call) -> Fn:
        target = c.target_of(node)
        kind = _static_kind(node)
        prec_fn = c.compile(node.args[0]) if node.args else None

        def boundary(focus: list[Any], ctx: Context) -> list[Any]:
            v = _single(target(focus, ctx), "boundary")
            if v is None or type(v) is bool:
                return _EMPTY
            precision: int | None = None
            if prec_fn is not None:
                pv = _single(prec_fn(focus, ctx), "boundary precision")
                if pv is None:
                    return _EMPTY
                if type(pv) is not int:
                    raise FhirPathEvaluationError("boundary precision must be an integer")
                precision = pv
            r = _boundary_of(v, high, precision, kind)
            return _EMPTY if r is None else [r]

        return boundary

    return build


def _boundary_of(v: Any, high: bool, precision: int | None, kind: str | None) -> Any:
    if type(v) is int or type(v) is float or type(v) is Decimal:
        return decimal_boundary(v, high, precision)
    if type(v) is Quantity:
        return quantity_boundary(v, high, precision)
    if type(v) is dict:
        if "resourceType" in v:
            return None
        if "start" in v or "end" in v:  # a Period
            return period_boundary(v, high, precision)
        value = v.get("value")
        if (type(value) is int or type(value) is float) and "comparator" not in v:
            unit = quantity_unit(v)
            return quantity_boundary(Quantity(value, unit or "1"), high, precision)
        return None
    t: Temporal | None = v if type(v) is Temporal else None
    if t is None and type(v) is str:
        k = kind
        if k is None:
            k = "Time" if re.fullmatch(r"\d{2}:\d{2}.*", v) else "DateTime"
        try:
            t = Temporal.parse(v, k)
        except ValueError:
            return None
        if kind is None and t.kind == "DateTime" and "T" not in v:
            t = Temporal("Date", t.parts, None, v)
    if t is None:
        return None
    return temporal_boundary(t, high, precision)


FUNCTIONS["lowBoundary"] = (0, 1, _boundary(False))
FUNCTIONS["highBoundary"] = (0, 1, _boundary(True))


# --------------------------------------------------------------------------- strings


@_register("join", 0, 1)
def _join(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    arg = node.args[0] if node.args else None
    fixed: str | None = ""
    sep_fn: Fn | None = None
    if arg is not None:
        if isinstance(arg, Literal) and len(arg.values) == 1 and type(arg.values[0]) is str:
            fixed = arg.values[0]
        else:
            fixed = None
            sep_fn = c.compile(arg)

    def join(focus: list[Any], ctx: Context) -> list[Any]:
        sep = fixed
        if sep_fn is not None:
            sv = _single(sep_fn(focus, ctx), "join()")
            sep = "" if sv is None else _to_str(sv)
            if sep is None:
                raise FhirPathEvaluationError("join(): separator is not a string")
        parts: list[str] = []
        for v in target(focus, ctx):
            if type(v) is str:
                parts.append(v)
                continue
            p = _to_str(v)
            if p is None:
                raise FhirPathEvaluationError("join(): items are not strings")
            parts.append(p)
        return [(sep or "").join(parts)]

    return join


def _string_fn(name: str, nargs: tuple[int, int], fn: Callable[..., Any]) -> None:
    """Register a function on a single string input with evaluated arguments."""

    def build(c: Compiler, node: Call) -> Fn:
        target = c.target_of(node)
        args = [c.compile(a) for a in node.args]

        def call(focus: list[Any], ctx: Context) -> list[Any]:
            s = _single(target(focus, ctx), f"{name}()")
            if s is None:
                return _EMPTY
            if type(s) is not str:
                s = _to_str(s)
                if s is None:
                    raise FhirPathEvaluationError(f"{name}(): input is not a string")
            vals = []
            for a in args:
                av = _single(a(focus, ctx), f"{name}()")
                if av is None:
                    return _EMPTY
                vals.append(av)
            r = fn(s, *vals)
            if r is None:
                return _EMPTY
            return r if type(r) is list else [r]

        return call

    FUNCTIONS[name] = (nargs[0], nargs[1], build)


def _substring(s: str, start: int, length: int | None = None) -> str | None:
    if start < 0 or start >= len(s):
        return None
    return s[start:] if length is None else s[start : start + max(length, 0)]


_string_fn("startsWith", (1, 1), lambda s, p: s.startswith(p))
_string_fn("endsWith", (1, 1), lambda s, p: s.endswith(p))
_string_fn("contains", (1, 1), lambda s, p: p in s)
_string_fn("indexOf", (1, 1), lambda s, p: s.find(p))
_string_fn("substring", (1, 2), _substring)
_string_fn("upper", (0, 0), str.upper)
_string_fn("lower", (0, 0), str.lower)
_string_fn("trim", (0, 0), str.strip)
_string_fn("length", (0, 0), len)
_string_fn("toChars", (0, 0), list)
_string_fn("replace", (2, 2), lambda s, a, b: s.replace(a, b))


def _regex(pattern: Any) -> re.Pattern[str]:
    """Compile a FHIRPath regex argument; a bad pattern is an evaluation error, not a crash."""
    if type(pattern) is not str:
        raise FhirPathEvaluationError("regex argument must be a string")
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise FhirPathEvaluationError("invalid regular expression") from exc


_string_fn("matches", (1, 1), lambda s, p: _regex(p).search(s) is not None)
_string_fn("matchesFull", (1, 1), lambda s, p: _regex(p).fullmatch(s) is not None)


def _substitution(r: Any) -> str:
    """FHIRPath ``$1`` group references -> Python ``\\g<1>``; other backslashes literal."""
    return re.sub(r"\$(\d+)", r"\\g<\1>", str(r).replace("\\", "\\\\"))


_string_fn("replaceMatches", (2, 2), lambda s, p, r: _regex(p).sub(_substitution(r), s))
_string_fn("split", (1, 1), lambda s, sep: s.split(sep))


# --------------------------------------------------------------------------- conversion / math


def _convert(name: str, conv: Callable[[Any], Any]) -> None:
    def as_list(coll: list[Any]) -> list[Any]:
        v = _single(coll, f"{name}()")
        if v is None:
            return _EMPTY
        r = conv(v)
        return _EMPTY if r is None else [r]

    _simple(name, as_list)
    base = name[2:]

    def converts(coll: list[Any]) -> list[Any]:
        v = _single(coll, f"convertsTo{base}()")
        if v is None:
            return _EMPTY
        return _FALSE if conv(v) is None else _TRUE

    _simple("convertsTo" + base, converts)


def _to_integer(v: Any) -> int | None:
    if type(v) is int:
        return v
    if type(v) is bool:
        return int(v)
    if type(v) is str and re.fullmatch(r"[+-]?\d+", v):
        return int(v)
    return None


def _to_decimal(v: Any) -> float | None:
    if type(v) is bool:
        return 1.0 if v else 0.0
    if type(v) is int or type(v) is float:
        return float(v)
    if type(v) is str and re.fullmatch(r"[+-]?\d+(\.\d+)?", v):
        return float(v)
    return None


def _to_boolean(v: Any) -> bool | None:
    if type(v) is bool:
        return v
    if type(v) is str:
        low = v.lower()
        if low in ("true", "t", "yes", "y", "1", "1.0"):
            return True
        if low in ("false", "f", "no", "n", "0", "0.0"):
            return False
        return None
    if type(v) is int or type(v) is float:
        if v == 1:
            return True
        if v == 0:
            return False
    return None


_convert("toString", _to_str)
_convert("toInteger", _to_integer)
_convert("toDecimal", _to_decimal)
_convert("toBoolean", _to_boolean)


def _math(name: str, fn: Callable[[Any], Any]) -> None:
    def apply(coll: list[Any]) -> list[Any]:
        v = _single(coll, f"{name}()")
        if v is None:
            return _EMPTY
        if type(v) is bool or not (type(v) is int or type(v) is float):
            raise FhirPathEvaluationError(f"{name}(): input is not a number")
        try:
            r = fn(v)
        except (ValueError, OverflowError):
            return _EMPTY
        return [r]

    _simple(name, apply)


_math("abs", abs)
_math("ceiling", math.ceil)
_math("floor", math.floor)
_math("truncate", math.trunc)
_math("sqrt", math.sqrt)
_math("exp", math.exp)
_math("ln", math.log)


@_register("round", 0, 1)
def _round(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    prec = c.compile(node.args[0]) if node.args else None

    def round_(focus: list[Any], ctx: Context) -> list[Any]:
        v = _single(target(focus, ctx), "round()")
        if v is None:
            return _EMPTY
        p = 0 if prec is None else _single(prec(focus, ctx), "round()")
        d = to_decimal(v)
        if d is None or type(p) is not int:
            raise FhirPathEvaluationError("round(): bad operands")
        q = Decimal(1).scaleb(-p)
        return [float(d.quantize(q, rounding=ROUND_HALF_UP))]

    return round_


@_register("power", 1, 1)
def _power(c: Compiler, node: Call) -> Fn:
    target = c.target_of(node)
    exp = c.compile(node.args[0])

    def power(focus: list[Any], ctx: Context) -> list[Any]:
        a = _single(target(focus, ctx), "power()")
        b = _single(exp(focus, ctx), "power()")
        if a is None or b is None:
            return _EMPTY
        try:
            r = a**b
        except (OverflowError, ZeroDivisionError):
            return _EMPTY
        return _EMPTY if isinstance(r, complex) else [r]

    return power


# --------------------------------------------------------------------------- tree / misc


def _children(coll: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in coll:
        if type(item) is dict:
            for k, v in item.items():
                if k == "resourceType" or k.startswith("_"):
                    continue
                if type(v) is list:
                    out.extend(x for x in v if x is not None)
                else:
                    out.append(v)
    return out


def _descendants(coll: list[Any]) -> list[Any]:
    out: list[Any] = []
    todo = _children(coll)
    while todo:
        out.extend(todo)
        todo = _children(todo)
    return out


_simple("children", _children)
_simple("descendants", _descendants)


@_register("trace", 1, 2)
def _trace(c: Compiler, node: Call) -> Fn:
    # Tracing would log data; the gateway never logs resource content, so trace is a no-op.
    return c.target_of(node)


def _today(c: Compiler, node: Call) -> Fn:
    return lambda focus, ctx: [Temporal.parse(datetime.now(UTC).date().isoformat(), "Date")]


def _now(c: Compiler, node: Call) -> Fn:
    def now(focus: list[Any], ctx: Context) -> list[Any]:
        text = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return [Temporal.parse(text, "DateTime")]

    return now


FUNCTIONS["today"] = (0, 0, _today)
FUNCTIONS["now"] = (0, 0, _now)
