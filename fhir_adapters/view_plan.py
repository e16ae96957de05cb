"""The interpretive plan of a compiled view: select nodes, columns, where clauses.

``views.compile_view`` validates a ViewDefinition and builds this plan. It is a
complete runner on its own (flattened select nodes; one generated function per
node computing its columns into a tuple; partial rows crossed as tuples), and
the reference that the whole-view code generator (``view_codegen``) is tested
against. Column values and ``where`` results go through the same helpers here
in both runners (``ColumnPlan.value``, ``WherePlan.check``), so errors are
raised identically: ``VIEW_COLUMN_NOT_SINGLE``, ``VIEW_WHERE_NOT_BOOLEAN``,
``VIEW_REPEAT_DEPTH``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhir_adapters.errors import ViewEvaluationError
from fhir_adapters.fhirpath import Compiler, Context, Fn, Quantity, Temporal
from fhir_adapters.fhirpath.ast import Node
from fhir_adapters.fhirpath.scalar import SCALAR_ENV, ScalarSource
from fhir_adapters.view_codegen import where_lines


class ColumnPlan:
    __slots__ = ("collection", "fn", "name", "node", "path")

    def __init__(
        self,
        name: str,
        path: str,
        fn: Fn,
        collection: bool,
        node: Node | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.fn = fn
        self.collection = collection
        self.node = node  # parsed expression (native engine): source of the inlined fast path

    def value(self, focus: list[Any], ctx: Context) -> Any:
        """The column's value by the general path (also raises for a non-single result)."""
        v = self.fn(focus, ctx)
        if self.collection:
            return [_out(x) if type(x) in _WRAPPED else x for x in v]
        if not v:
            return None
        if len(v) == 1:
            x = v[0]
            return _out(x) if type(x) in _WRAPPED else x
        raise ViewEvaluationError(
            f"column {self.name!r} is not a collection but its path returned {len(v)} values",
            code="VIEW_COLUMN_NOT_SINGLE",
        )


def _exec(lines: list[str], name: str, env: dict[str, Any]) -> Any:
    namespace = dict(SCALAR_ENV)
    namespace.update(env)
    exec(compile("\n".join(lines), f"<view {name}>", "exec"), namespace)
    return namespace[name]


def columns_function(
    columns: list[ColumnPlan], compiler: Compiler | None
) -> Callable[[list[Any], Context], tuple[Any, ...]]:
    """Generate the function computing a node's own columns as one tuple.

    Straight-line code: per column either the inlined single-item evaluator
    (``fhirpath.scalar``: no call, no list) or the compiled function with the
    singleton check inlined; anything unusual (several values, collection
    columns, empty focus, ``MULTI``) goes through ``ColumnPlan.value``, the
    reference path.
    """
    if not columns:
        empty: tuple[Any, ...] = ()
        return lambda focus, ctx: empty
    env: dict[str, Any] = {"W": _WRAPPED, "out": _out}
    lines = ["def cols(focus, ctx):", "    if len(focus) == 1:", "        item = focus[0]"]
    for i, col in enumerate(columns):
        env[f"slow{i}"] = col.value
        inline = None
        if not col.collection and col.node is not None and compiler is not None:
            inline = ScalarSource(compiler, prefix=f"_c{i}_", ctx_var="ctx").lines(
                col.node, "item", f"c{i}"
            )
        if col.collection:
            lines.append(f"        c{i} = slow{i}(focus, ctx)")
        elif inline is not None:
            lines += [
                *("        " + line for line in inline),
                f"        if c{i} is MULTI:",
                f"            c{i} = slow{i}(focus, ctx)",
            ]
        else:
            env[f"f{i}"] = col.fn
            lines += [
                f"        v = f{i}(focus, ctx)",
                "        if not v:",
                f"            c{i} = None",
                "        elif len(v) == 1:",
                f"            c{i} = v[0]",
                f"            if type(c{i}) in W:",
                f"                c{i} = out(c{i})",
                "        else:",
                f"            c{i} = slow{i}(focus, ctx)",
            ]
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    slow = ", ".join(f"slow{i}(focus, ctx)" for i in range(len(columns)))
    lines += [f"        return ({names},)", f"    return ({slow},)"]
    fn: Callable[[list[Any], Context], tuple[Any, ...]] = _exec(lines, "cols", env)
    return fn


class WherePlan:
    __slots__ = ("fn", "node", "path")

    def __init__(self, path: str, fn: Fn, node: Node | None) -> None:
        self.path = path
        self.fn = fn
        self.node = node

    def check(self, resource: Any, ctx: Context) -> bool:
        """The clause by the general path: True/False, or VIEW_WHERE_NOT_BOOLEAN."""
        r = self.fn([resource], ctx)
        if not r:
            return False
        if len(r) != 1 or type(r[0]) is not bool:
            raise ViewEvaluationError(
                f"where path {self.path!r} did not evaluate to a boolean",
                code="VIEW_WHERE_NOT_BOOLEAN",
            )
        return r[0]


def where_function(
    clauses: list[WherePlan], compiler: Compiler | None
) -> Callable[[Any, Context], bool] | None:
    """Generate ``where_ok(resource, ctx)``: all clauses, fast paths inlined."""
    if not clauses:
        return None
    env: dict[str, Any] = {}
    lines = ["def where_ok(item, ctx):"]
    lines += ["    " + line for line in where_lines(clauses, compiler, "return False", env)]
    lines.append("    return True")
    fn: Callable[[Any, Context], bool] = _exec(lines, "where_ok", env)
    return fn


def _cross(
    rows: list[tuple[Any, ...]] | None, more: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """Cross product of partial rows (None: no columns yet, the identity)."""
    if rows is None:
        return more
    if len(more) == 1:
        m = more[0]
        return [r + m for r in rows]
    if len(rows) == 1:
        r0 = rows[0]
        return [r0 + m for m in more]
    return [r + m for r in rows for m in more]


class SelectPlan:
    """Compiled select node; ``rows`` returns the node's partial rows as tuples."""

    __slots__ = (
        "cols",
        "columns",
        "iter_fn",
        "mode",
        "null_row",
        "repeat_fns",
        "selects",
        "union",
        "width",
    )

    def __init__(self) -> None:
        self.mode: str | None = None  # None | forEach | forEachOrNull | repeat
        self.iter_fn: Fn | None = None
        self.repeat_fns: list[Fn] = []
        self.columns: list[ColumnPlan] = []
        self.cols: Callable[[list[Any], Context], tuple[Any, ...]] = lambda focus, ctx: ()
        self.selects: list[SelectPlan] = []
        self.union: list[SelectPlan] = []
        self.width = 0
        self.null_row: tuple[Any, ...] = ()

    def rows(self, focus: list[Any], ctx: Context) -> list[tuple[Any, ...]]:
        mode = self.mode
        simple = not self.selects and not self.union
        if mode is None:
            if simple:
                return [self.cols(focus, ctx)]
            return self.body(focus, ctx)
        if mode == "repeat":
            items = self._repeat(focus, ctx)
        else:
            assert self.iter_fn is not None
            items = self.iter_fn(focus, ctx)
        saved = ctx.row_index
        out: list[tuple[Any, ...]] = []
        try:
            if items:
                cols = self.cols
                for i, item in enumerate(items):
                    ctx.row_index = i
                    if simple:
                        out.append(cols([item], ctx))
                    else:
                        out.extend(self.body([item], ctx))
            elif mode == "forEachOrNull":
                ctx.row_index = 0
                out = self.body([], ctx) or [self.null_row]
        finally:
            ctx.row_index = saved
        return out

    def _repeat(self, focus: list[Any], ctx: Context) -> list[Any]:
        """Depth-first, pre-order closure of the repeat paths (spec order)."""
        out: list[Any] = []
        fns = self.repeat_fns

        def walk(node: Any, depth: int) -> None:
            if depth > 200:
                raise ViewEvaluationError(
                    "repeat: nesting deeper than 200", code="VIEW_REPEAT_DEPTH"
                )
            for fn in fns:
                for child in fn([node], ctx):
                    out.append(child)
                    walk(child, depth + 1)

        for item in focus:
            walk(item, 0)
        return out

    def body(self, focus: list[Any], ctx: Context) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] | None = [self.cols(focus, ctx)] if self.columns else None
        for sub in self.selects:
            subrows = sub.rows(focus, ctx)
            if not subrows:
                return []
            rows = _cross(rows, subrows)
        if self.union:
            urows: list[tuple[Any, ...]] = []
            for branch in self.union:
                urows.extend(branch.rows(focus, ctx))
            if not urows:
                return []
            rows = _cross(rows, urows)
        return rows if rows is not None else [()]

    def flatten(self, compiler: Compiler | None) -> None:
        """Merge leading nested selects that only add columns into this node's columns.

        A select without forEach/repeat/unionAll yields exactly one partial row,
        so crossing with it is concatenation; merging saves a call per row.
        Column order is unchanged because a node's columns precede its selects.
        """
        for sub in self.selects:
            sub.flatten(compiler)
        for u in self.union:
            u.flatten(compiler)
        while self.selects:
            sub = self.selects[0]
            if sub.mode is not None or sub.selects or sub.union:
                break
            self.columns.extend(sub.columns)
            self.selects.pop(0)
        self.cols = columns_function(self.columns, compiler)


_WRAPPED = (Temporal, Quantity, Decimal)


def _out(v: Any) -> Any:
    """FHIRPath value -> JSON-compatible column value."""
    t = type(v)
    if t is Temporal:
        return v.text
    if t is Quantity:
        return {"value": v.value, "unit": v.unit}
    if t is Decimal:
        return float(v)
    return v
