"""Generate one Python function per ViewDefinition: the whole select tree, inlined.

The interpretive plan (``view_plan.SelectPlan``) builds a list of partial-row
tuples per node and crosses them; that costs several calls and allocations per
node and resource. The generated runner instead writes the tree as nested
loops in continuation-passing style: every column is a local variable
``c<k>`` (k = its position in the view), a nested ``select`` is a loop inside
its parent, ``unionAll`` branches follow one another, and the innermost
statement appends ``(c0, c1, ...)`` to the output. Nothing is concatenated and
no intermediate lists exist; an empty ``forEach`` simply emits nothing, which
is exactly the cross-product semantics.

Semantics are those of the interpretive plan (and both are checked against the
conformance suite): ``%rowIndex`` is re-set before each node is evaluated
because loops of siblings nest; ``forEachOrNull`` on an empty collection runs
the node on an empty focus and emits a null row if that produced nothing.
Column values use the inlined single-item evaluators of ``fhirpath.scalar``,
falling back to the column's reference path (``ColumnPlan.value``).

Generation gives up (the caller keeps the interpretive plan) when the source
would be very large (``unionAll`` duplicates the code that follows it) or
nests deeper than CPython allows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fhir_adapters.fhirpath import Compiler, Context
from fhir_adapters.fhirpath.scalar import SCALAR_ENV, ScalarSource

if TYPE_CHECKING:
    from fhir_adapters.view_plan import ColumnPlan, SelectPlan, WherePlan

Runner = Callable[[Any, Context], list[tuple[Any, ...]]]
_MAX_LINES = 4000


class _TooLarge(Exception):
    pass


class _Gen:
    def __init__(self, compiler: Compiler, width: int) -> None:
        self.compiler = compiler
        self.width = width
        self.lines: list[str] = []
        self.env: dict[str, Any] = dict(SCALAR_ENV)
        self.env["_E"] = []
        self.count = 0
        self.refs: dict[int, str] = {}

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def ref(self, obj: Any, prefix: str) -> str:
        """A global name for a Python object used by the generated code."""
        key = id(obj)
        if key not in self.refs:
            name = self.fresh(prefix)
            self.refs[key] = name
            self.env[name] = obj
        return self.refs[key]

    def emit(self, depth: int, line: str) -> None:
        if len(self.lines) > _MAX_LINES:
            raise _TooLarge
        self.lines.append("    " * depth + line)

    # -- tree
    def node(
        self,
        plan: SelectPlan,
        src: str | None,
        idx: str,
        base: int,
        depth: int,
        k: Callable[[int], None],
    ) -> None:
        mode = plan.mode
        if mode is None:
            self.body(plan, src, idx, base, depth, k)
            return
        fn = plan._repeat if mode == "repeat" else plan.iter_fn
        fname = self.ref(fn, "_it")
        focus = f"[{src}]" if src is not None else "_E"
        items, i, x = self.fresh("_items"), self.fresh("_i"), self.fresh("_x")
        self.emit(depth, f"ctx.row_index = {idx}")
        self.emit(depth, f"{items} = {fname}({focus}, ctx)")
        if mode != "forEachOrNull":
            self.emit(depth, f"for {i}, {x} in enumerate({items}):")
            self.body(plan, x, i, base, depth + 1, k)
            return
        flag = self.fresh("_f")
        self.emit(depth, f"if {items}:")
        self.emit(depth + 1, f"for {i}, {x} in enumerate({items}):")
        self.body(plan, x, i, base, depth + 2, k)
        self.emit(depth, "else:")
        self.emit(depth + 1, f"{flag} = False")

        def mark(d: int) -> None:
            self.emit(d, f"{flag} = True")
            k(d)

        self.body(plan, None, "0", base, depth + 1, mark)
        self.emit(depth + 1, f"if not {flag}:")
        for j in range(base, base + plan.width):
            self.emit(depth + 2, f"c{j} = None")
        k(depth + 2)

    def body(
        self,
        plan: SelectPlan,
        src: str | None,
        idx: str,
        base: int,
        depth: int,
        k: Callable[[int], None],
    ) -> None:
        self.emit(depth, f"ctx.row_index = {idx}")
        for j, col in enumerate(plan.columns):
            self.column(col, src, base + j, depth)
        offset = base + len(plan.columns)
        parts: list[tuple[SelectPlan, int]] = []
        for sub in plan.selects:
            parts.append((sub, offset))
            offset += sub.width
        union_base = offset

        def step(n: int, d: int) -> None:
            if n < len(parts):
                sub, sbase = parts[n]
                self.node(sub, src, idx, sbase, d, lambda d2: step(n + 1, d2))
            elif plan.union:
                for branch in plan.union:
                    self.node(branch, src, idx, union_base, d, k)
            else:
                k(d)

        step(0, depth)

    def column(self, col: ColumnPlan, src: str | None, j: int, depth: int) -> None:
        slow = self.ref(col.value, "_slow")
        if src is None:
            self.emit(depth, f"c{j} = {slow}(_E, ctx)")
            return
        inline = None
        if not col.collection and col.node is not None:
            inline = ScalarSource(self.compiler, prefix=f"_c{j}_", ctx_var="ctx").lines(
                col.node, src, f"c{j}"
            )
        if inline is None:
            self.emit(depth, f"c{j} = {slow}([{src}], ctx)")
            return
        for line in inline:
            self.emit(depth, line)
        self.emit(depth, f"if c{j} is MULTI:")
        self.emit(depth + 1, f"c{j} = {slow}([{src}], ctx)")

    def final(self, depth: int) -> None:
        cols = ", ".join(f"c{j}" for j in range(self.width))
        self.emit(depth, f"out.append(({cols},))" if self.width else "out.append(())")


def where_lines(
    clauses: Sequence[WherePlan], compiler: Compiler | None, fail: str, env: dict[str, Any]
) -> list[str]:
    """Statements checking all ``where`` clauses on ``item``; ``fail`` runs when one is not true.

    Each clause uses its inlined single-item evaluator when it has one; an
    undecided or non-boolean result goes to the clause's reference check, which
    raises ``VIEW_WHERE_NOT_BOOLEAN`` when appropriate.
    """
    lines: list[str] = []
    for i, w in enumerate(clauses):
        check = f"_check{i}"
        env[check] = w.check
        inline = None
        if w.node is not None and compiler is not None:
            inline = ScalarSource(compiler, prefix=f"_w{i}_", ctx_var="ctx").lines(
                w.node, "item", f"_w{i}"
            )
        if inline is None:
            lines += [f"if not {check}(item, ctx):", f"    {fail}"]
            continue
        lines += [
            *inline,
            f"if _w{i} is not True:",
            f"    if _w{i} is False or _w{i} is None:",
            f"        {fail}",
            f"    if not {check}(item, ctx):",
            f"        {fail}",
        ]
    return lines


def generate_runner(
    root: SelectPlan, compiler: Compiler | None, clauses: Sequence[WherePlan] = ()
) -> Runner | None:
    """The generated ``run(resource, ctx) -> rows`` (where clauses included), or None."""
    if compiler is None:
        return None
    gen = _Gen(compiler, root.width)
    try:
        gen.emit(0, "def run(item, ctx):")
        gen.emit(1, "out = []")
        for line in where_lines(clauses, compiler, "return out", gen.env):
            gen.emit(1, line)
        gen.node(root, "item", "0", 0, 1, gen.final)
        gen.emit(1, "return out")
    except (_TooLarge, RecursionError):
        return None
    try:
        code = compile("\n".join(gen.lines), "<view runner>", "exec")
    except (SyntaxError, RecursionError, MemoryError):  # nesting beyond CPython's limits
        return None
    namespace = dict(gen.env)
    exec(code, namespace)
    run: Runner = namespace["run"]
    return run
