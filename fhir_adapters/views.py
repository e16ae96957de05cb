"""SQL-on-FHIR v2 ViewDefinition runner: validate and compile once, then stream rows.

``compile_view(view)`` checks the whole ViewDefinition before any data is read
(unknown keys, bad column names, unionAll branches whose columns differ,
undefined constants, FHIRPath syntax) and raises ``ViewDefinitionError``.

The result, a ``CompiledView``, runs a view with one generated Python function
(``view_codegen``: the select tree as nested loops, columns as local variables,
``where`` clauses first) or, when generation gives up, with the interpretive
plan of ``view_plan``. Both follow the spec's algorithm: a select node yields
its own columns, crossed with each nested ``select``, crossed with the
concatenated ``unionAll`` branches; ``forEach``/``forEachOrNull``/``repeat`` run
the node once per item with ``%rowIndex`` the item's index. Column order: own
columns, then nested selects, then unionAll.

Errors on one resource (a ``where`` path that is not boolean, several values in
a non-collection column, data of an unexpected shape) raise
``ViewEvaluationError`` carrying the resource type and stream index only, never
content. ``rows(..., on_error=callback)`` reports the error and continues with
the next resource instead.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_adapters.bundle import is_bundle, iter_bundle
from fhir_adapters.errors import (
    FhirAdapterError,
    FhirPathCompileError,
    FhirPathSyntaxError,
    ViewDefinitionError,
    ViewEvaluationError,
)
from fhir_adapters.fhirpath import Compiler, Context, Fn, Temporal, parse
from fhir_adapters.fhirpath.ast import Node
from fhir_adapters.quality import QualityReport
from fhir_adapters.view_codegen import generate_runner
from fhir_adapters.view_paths import check_view_paths, view_release
from fhir_adapters.view_plan import ColumnPlan, SelectPlan, WherePlan, where_function

__all__ = [
    "Column",
    "CompiledView",
    "ExpressionEngine",
    "compile_view",
]

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESOURCE_RE = re.compile(r"^[A-Z][A-Za-z0-9]{1,63}$")

_SELECT_KEYS = frozenset(
    {"column", "select", "forEach", "forEachOrNull", "repeat", "unionAll", "extension", "id"}
)
_COLUMN_KEYS = frozenset(
    {"name", "path", "type", "collection", "description", "tag", "extension", "id"}
)

# valueX of a ViewDefinition constant -> how to read it
_CONSTANT_TYPES: dict[str, str] = {
    "valueBase64Binary": "str",
    "valueCanonical": "str",
    "valueCode": "str",
    "valueId": "str",
    "valueOid": "str",
    "valueString": "str",
    "valueUri": "str",
    "valueUrl": "str",
    "valueUuid": "str",
    "valueMarkdown": "str",
    "valueBoolean": "bool",
    "valueInteger": "int",
    "valueInteger64": "int",
    "valuePositiveInt": "int",
    "valueUnsignedInt": "int",
    "valueDecimal": "number",
    "valueDate": "Date",
    "valueDateTime": "DateTime",
    "valueInstant": "DateTime",
    "valueTime": "Time",
}

# A FHIRPath backend: expression source + constants -> compiled function.
ExpressionEngine = Callable[[str, Mapping[str, list[Any]]], Fn]


def native_engine(source: str, constants: Mapping[str, list[Any]]) -> Fn:
    """The built-in compiler (``fhir_adapters.fhirpath``)."""
    return Compiler(constants).compile(parse(source))


@dataclass(frozen=True, slots=True)
class Column:
    """One output column: its name, declared FHIR type (if any) and collection flag."""

    name: str
    type: str | None
    collection: bool


# --------------------------------------------------------------------------- compiled view


class CompiledView:
    """A validated, compiled ViewDefinition; run it with ``rows(resources)``."""

    def __init__(
        self,
        resource: str,
        columns: list[Column],
        root: SelectPlan,
        where_ok: Callable[[Any, Context], bool] | None,
        name: str | None,
        runner: Callable[[Any, Context], list[tuple[Any, ...]]] | None = None,
    ) -> None:
        self.resource = resource
        self.columns = columns
        self.column_names: tuple[str, ...] = tuple(c.name for c in columns)
        self.name = name
        self._root = root
        self._where_ok = where_ok
        self._runner = runner  # generated whole-tree function (view_codegen), if any
        self._definition: tuple[dict[str, Any], dict[str, Any] | None, str | None] | None = None
        self.fhir_version: str | None = None  # the release its paths were checked against
        # one row per resource (no forEach/unionAll/nested iteration): no list per resource
        self._single_row = root.mode is None and not root.selects and not root.union

    def __repr__(self) -> str:
        return f"CompiledView(resource={self.resource!r}, columns={list(self.column_names)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the definition, recompiled on load (generated code does not pickle).

        Lets a compiled view travel to worker processes (multiprocessing, Ray).
        """
        if self._definition is None:
            raise TypeError("a view compiled with a custom engine cannot be pickled")
        return (_recompile, self._definition)

    def evaluate_tuples(self, resource: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of one resource (assumed of ``self.resource`` type) as tuples in column order.

        Raises ``ViewEvaluationError`` (``index`` None) when the resource cannot be
        evaluated; the caller counts it and goes on.
        """
        try:
            runner = self._runner
            if runner is not None:
                return runner(resource, Context(resource, 0))
            return self._eval(resource, Context(resource, 0))
        except _DATA_ERRORS as exc:
            raise _wrap(exc, self.resource, None) from exc

    def _eval(self, resource: Mapping[str, Any], ctx: Context) -> list[tuple[Any, ...]]:
        if self._runner is not None:  # includes the where clauses
            return self._runner(resource, ctx)
        where_ok = self._where_ok
        if where_ok is not None and not where_ok(resource, ctx):
            return []
        return self._root.rows([resource], ctx)

    def evaluate(self, resource: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Rows of one resource as dicts (column order preserved)."""
        names = self.column_names
        return [dict(zip(names, t, strict=True)) for t in self.evaluate_tuples(resource)]

    def tuples(
        self,
        resources: Iterable[Any],
        *,
        on_error: Callable[[ViewEvaluationError], None] | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Like ``rows`` but yields tuples in ``columns`` order (no dict per row)."""
        rtype = self.resource
        ctx = Context(None, 0)
        evaluate = self._eval
        where_ok = self._where_ok
        cols = self._root.cols if self._single_row else None
        for index, res in enumerate(resources):
            if type(res) is not dict:
                if isinstance(res, Mapping):
                    res = dict(res)
                else:
                    err = ViewEvaluationError(
                        "stream item is not a JSON object", code="VIEW_NOT_A_RESOURCE", index=index
                    )
                    if on_error is None:
                        raise err
                    on_error(err)
                    continue
            if res.get("resourceType") != rtype:
                if rtype != "Bundle" and is_bundle(res):  # a Bundle passed in: its entries
                    yield from self.tuples(iter_bundle(res, QualityReport()), on_error=on_error)
                continue
            ctx.root = res
            ctx.row_index = 0
            try:
                if cols is not None:
                    if where_ok is not None and not where_ok(res, ctx):
                        continue
                    row = cols([res], ctx)
                else:
                    out = evaluate(res, ctx)
            except _DATA_ERRORS as exc:
                err = _wrap(exc, rtype, index)
                if on_error is None:
                    raise err from exc
                on_error(err)
                continue
            if cols is not None:
                yield row
            elif len(out) == 1:
                yield out[0]
            else:
                yield from out

    def rows(
        self,
        resources: Iterable[Any],
        *,
        on_error: Callable[[ViewEvaluationError], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows (dicts keyed by column name, in column order) for every matching resource.

        Resources of other types are skipped. A resource whose evaluation fails
        raises ``ViewEvaluationError`` — unless ``on_error`` is given, in which
        case the error is passed to it and the run continues (no partial rows of
        that resource are emitted).
        """
        names = self.column_names
        for t in self.tuples(resources, on_error=on_error):
            yield dict(zip(names, t))  # noqa: B905 - tuples always match the columns


# What evaluating one resource may raise: our errors, and Python errors from data
# shapes nothing anticipated (reported as VIEW_BAD_DATA, never as a crash of the run).
_DATA_ERRORS = (
    FhirAdapterError,
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
    ArithmeticError,
    RecursionError,
)


def _wrap(exc: BaseException, rtype: str, index: int | None) -> ViewEvaluationError:
    """A per-resource error: resource type, stream index and a code; never resource content."""
    if isinstance(exc, ViewEvaluationError):
        exc.resource_type = rtype
        exc.index = index
        return exc
    code = exc.code if isinstance(exc, FhirAdapterError) else "VIEW_BAD_DATA"
    msg = str(exc) if isinstance(exc, FhirAdapterError) else type(exc).__name__
    where = rtype if index is None else f"{rtype} #{index}"
    return ViewEvaluationError(f"{where}: {msg}", code=code, resource_type=rtype, index=index)


# --------------------------------------------------------------------------- compile


class _ViewCompiler:
    def __init__(self, engine: ExpressionEngine, constants: Mapping[str, list[Any]]) -> None:
        self.engine = engine
        self.constants = constants
        self.names: set[str] = set()

    def expr(self, source: Any, where: str) -> Fn:
        if not isinstance(source, str) or not source.strip():
            raise ViewDefinitionError(f"{where}: FHIRPath expression must be a non-empty string")
        try:
            return self.engine(source, self.constants)
        except (FhirPathSyntaxError, FhirPathCompileError) as exc:
            raise ViewDefinitionError(f"{where}: {exc}", code="VIEW_BAD_FHIRPATH") from exc

    def node(self, source: str) -> Node | None:
        """AST of an (already validated) expression for the inlined fast paths (native only)."""
        if self.engine is not native_engine:
            return None
        return parse(source)

    def compiler(self) -> Compiler | None:
        return Compiler(self.constants) if self.engine is native_engine else None

    def select(self, node: Any, where: str) -> tuple[SelectPlan, list[Column]]:
        if not isinstance(node, Mapping):
            raise ViewDefinitionError(f"{where}: select must be an object")
        unknown = set(node) - _SELECT_KEYS
        if unknown:
            raise ViewDefinitionError(f"{where}: unknown keys {sorted(unknown)}")
        plan = SelectPlan()
        modes = [k for k in ("forEach", "forEachOrNull", "repeat") if k in node]
        if len(modes) > 1:
            raise ViewDefinitionError(f"{where}: only one of forEach/forEachOrNull/repeat")
        if modes:
            mode = modes[0]
            plan.mode = mode
            if mode == "repeat":
                paths = node["repeat"]
                if not isinstance(paths, list) or not paths:
                    raise ViewDefinitionError(f"{where}.repeat: must be a non-empty list")
                plan.repeat_fns = [
                    self.expr(p, f"{where}.repeat[{i}]") for i, p in enumerate(paths)
                ]
            else:
                plan.iter_fn = self.expr(node[mode], f"{where}.{mode}")
        if not any(k in node for k in ("column", "select", "unionAll")):
            raise ViewDefinitionError(f"{where}: needs column, select or unionAll")
        columns: list[Column] = []
        cols = node.get("column", [])
        if not isinstance(cols, list):
            raise ViewDefinitionError(f"{where}.column: must be a list")
        for i, col in enumerate(cols):
            cplan, cdef = self.column(col, f"{where}.column[{i}]")
            plan.columns.append(cplan)
            columns.append(cdef)
        subs = node.get("select", [])
        if not isinstance(subs, list):
            raise ViewDefinitionError(f"{where}.select: must be a list")
        for i, sub in enumerate(subs):
            splan, scols = self.select(sub, f"{where}.select[{i}]")
            plan.selects.append(splan)
            columns.extend(scols)
        if "unionAll" in node:
            branches = node["unionAll"]
            if not isinstance(branches, list) or not branches:
                raise ViewDefinitionError(f"{where}.unionAll: must be a non-empty list")
            first: list[Column] | None = None
            names_before = set(self.names)
            for i, br in enumerate(branches):
                # each branch declares the same columns: check names against the view once
                self.names = set(names_before)
                bplan, bcols = self.select(br, f"{where}.unionAll[{i}]")
                if first is None:
                    first = bcols
                elif [c.name for c in bcols] != [c.name for c in first]:
                    raise ViewDefinitionError(
                        f"{where}.unionAll[{i}]: columns {[c.name for c in bcols]} differ "
                        f"from the first branch {[c.name for c in first]}",
                        code="VIEW_UNION_MISMATCH",
                    )
                plan.union.append(bplan)
            assert first is not None
            self.names = names_before | {c.name for c in first}
            columns.extend(first)
        plan.width = len(columns)
        plan.null_row = (None,) * len(columns)
        return plan, columns

    def column(self, col: Any, where: str) -> tuple[ColumnPlan, Column]:
        if not isinstance(col, Mapping):
            raise ViewDefinitionError(f"{where}: column must be an object")
        unknown = set(col) - _COLUMN_KEYS
        if unknown:
            raise ViewDefinitionError(f"{where}: unknown keys {sorted(unknown)}")
        name = col.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ViewDefinitionError(f"{where}: column name must match {_NAME_RE.pattern}")
        if name in self.names:
            raise ViewDefinitionError(f"{where}: duplicate column name {name!r}")
        self.names.add(name)
        ctype = col.get("type")
        if ctype is not None and not isinstance(ctype, str):
            raise ViewDefinitionError(f"{where}: type must be a string")
        collection = col.get("collection", False)
        if not isinstance(collection, bool):
            raise ViewDefinitionError(f"{where}: collection must be a boolean")
        path = col.get("path")
        fn = self.expr(path, f"{where}.path")
        assert isinstance(path, str)
        node = None if collection else self.node(path)
        return ColumnPlan(name, path, fn, collection, node), Column(name, ctype, collection)


def _constant_value(c: Any, i: int) -> tuple[str, list[Any]]:
    where = f"constant[{i}]"
    if not isinstance(c, Mapping):
        raise ViewDefinitionError(f"{where}: must be an object")
    name = c.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ViewDefinitionError(f"{where}: name must match {_NAME_RE.pattern}")
    keys = [k for k in c if k.startswith("value")]
    if len(keys) != 1:
        raise ViewDefinitionError(f"{where} ({name}): needs exactly one value[x]")
    key = keys[0]
    kind = _CONSTANT_TYPES.get(key)
    if kind is None:
        raise ViewDefinitionError(f"{where} ({name}): unsupported constant type {key}")
    v = c[key]
    ok = {
        "str": lambda x: type(x) is str,
        "bool": lambda x: type(x) is bool,
        "int": lambda x: type(x) is int,
        "number": lambda x: type(x) in (int, float),
    }.get(kind, lambda x: type(x) is str)
    if not ok(v):
        raise ViewDefinitionError(f"{where} ({name}): {key} has the wrong JSON type")
    if kind in ("Date", "DateTime", "Time"):
        try:
            t = Temporal.parse(v, kind)
        except ValueError as exc:
            raise ViewDefinitionError(f"{where} ({name}): invalid {key}") from exc
        if kind == "Date" and t.kind != "Date":
            raise ViewDefinitionError(f"{where} ({name}): invalid {key}")
        return name, [t]
    return name, [v]


def _user_constant(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list | tuple):
        return list(v)
    return [v]


def compile_view(
    view: Mapping[str, Any],
    *,
    constants: Mapping[str, Any] | None = None,
    engine: ExpressionEngine | None = None,
    fhir_version: str | None = None,
) -> CompiledView:
    """Validate and compile a SQL-on-FHIR v2 ViewDefinition.

    ``constants`` adds or overrides ViewDefinition constants (plain Python
    values or lists). ``engine`` swaps the FHIRPath backend (used to measure
    fhirpathpy against the built-in compiler); leave it unset in production.
    ``fhir_version`` (a spec's release) or the view's own ``fhirVersion``
    makes every path be checked against that release's structure
    (``VIEW_PATH_NOT_IN_RELEASE``). Raises ``ViewDefinitionError`` for any
    invalid view.
    """
    if not isinstance(view, Mapping):
        raise ViewDefinitionError("a ViewDefinition must be a JSON object")
    rtype = view.get("resource")
    if not isinstance(rtype, str) or not _RESOURCE_RE.match(rtype):
        raise ViewDefinitionError("ViewDefinition.resource must name a FHIR resource type")
    rt = view.get("resourceType")
    if rt is not None and rt != "ViewDefinition":
        raise ViewDefinitionError("resourceType must be 'ViewDefinition'")
    consts: dict[str, list[Any]] = {}
    raw_consts = view.get("constant", [])
    if not isinstance(raw_consts, list):
        raise ViewDefinitionError("constant must be a list")
    for i, c in enumerate(raw_consts):
        cname, cval = _constant_value(c, i)
        if cname in consts:
            raise ViewDefinitionError(f"constant[{i}]: duplicate name {cname!r}")
        consts[cname] = cval
    for k, v in (constants or {}).items():
        if not isinstance(k, str) or not _NAME_RE.match(k):
            raise ViewDefinitionError("constant names must be identifiers")
        consts[k] = _user_constant(v)
    vc = _ViewCompiler(engine or native_engine, consts)
    selects = view.get("select")
    if not isinstance(selects, list) or not selects:
        raise ViewDefinitionError("ViewDefinition.select must be a non-empty list")
    root, columns = vc.select({"select": selects}, "select")
    root.flatten(vc.compiler())
    where_plans: list[WherePlan] = []
    raw_where = view.get("where", [])
    if not isinstance(raw_where, list):
        raise ViewDefinitionError("where must be a list")
    for i, w in enumerate(raw_where):
        if not isinstance(w, Mapping) or set(w) - {"path", "description", "extension", "id"}:
            raise ViewDefinitionError(f"where[{i}]: must be an object with a path")
        wpath = w.get("path")
        wfn = vc.expr(wpath, f"where[{i}].path")
        assert isinstance(wpath, str)
        where_plans.append(WherePlan(wpath, wfn, vc.node(wpath)))
    release = view_release(view, fhir_version)
    if release is not None:
        check_view_paths(view, release)
    name = view.get("name")
    compiler = vc.compiler()
    where_ok = where_function(where_plans, compiler)
    runner = generate_runner(root, compiler, where_plans)
    compiled = CompiledView(
        rtype, columns, root, where_ok, name if isinstance(name, str) else None, runner
    )
    compiled.fhir_version = release
    if engine is None:
        compiled._definition = (
            copy.deepcopy(dict(view)),
            dict(constants) if constants else None,
            fhir_version,
        )
    return compiled


def _recompile(
    view: dict[str, Any], constants: dict[str, Any] | None, fhir_version: str | None = None
) -> CompiledView:
    return compile_view(view, constants=constants, fhir_version=fhir_version)
