"""Single-item evaluators, generated as Python source: the fast path of views.

A *scalar* ``s(item)`` computes an expression on the focus ``[item]`` and
returns its value when the result is empty (``None``) or one JSON value, and
``MULTI`` when it cannot decide cheaply (several values, int vs decimal,
non-boolean operands of ``and``...). Callers then run the compiled collection
function, which is the reference semantics; a scalar never guesses.

The evaluator is emitted as straight-line Python (``ScalarSource.lines``), so
the view runner can also inline the code of every column and ``where`` clause
into one generated function per select node: no call and no list per step.
Generated code embeds only element names and literals through ``repr()``.

Covered: navigation chains (also after ``where``), ``first()``,
``getResourceKey()``, ``getReferenceKey([T])``, ``=``/``!=`` against a string,
integer or boolean literal, ``and``/``or``, ``not()``, ``exists()``,
``empty()``, ``where(criterion)`` and literals: what ViewDefinition columns and
``where`` clauses are made of in practice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_adapters.fhirpath.ast import Binary, Call, Ident, Literal, Node, TypeSpec
from fhir_adapters.fhirpath.functions import reference_key, resolved_reference_key
from fhir_adapters.fhirpath.navigation import MULTI, choice_get, step_source

if TYPE_CHECKING:
    from fhir_adapters.fhirpath.compiler import Compiler

Scalar = Callable[[Any], Any]

_LITERAL_TYPES = (str, bool, int)


# Names the generated code may use (besides locals and literals).
SCALAR_ENV: dict[str, Any] = {
    "MULTI": MULTI,
    "choice_get": choice_get,
    "reference_key": reference_key,
    "resolved_reference_key": resolved_reference_key,
}


def _indent(lines: list[str], n: int = 1) -> list[str]:
    pad = "    " * n
    return [pad + line for line in lines]


class ScalarSource:
    """Emits Python statements computing one expression on one item.

    ``lines(node, src, dst)`` returns statements that read the variable ``src``
    and assign ``dst`` (value, None or MULTI), or None when ``node`` has no
    single-item form. Temporary names are unique per instance (``prefix``), so
    several expressions can share one function body.
    """

    def __init__(self, compiler: Compiler, prefix: str = "_s", ctx_var: str | None = None) -> None:
        self.c = compiler
        self.prefix = prefix
        # the name of the evaluation Context in the generated code (None: not in scope, so a
        # ``urn:`` reference, which needs the root resource's Bundle table, is left undecided)
        self.ctx_var = ctx_var
        self.count = 0

    def var(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count}"

    def lines(self, node: Node, src: str, dst: str) -> list[str] | None:
        chain = self.c.chain_of(node)
        if chain is not None:
            target_node, steps = chain
            if target_node is None:
                return self._walk(steps, src, dst)
            t = self.var()
            inner = self.lines(target_node, src, t)
            if inner is None:
                return None
            return [
                *inner,
                f"if {t} is None or {t} is MULTI:",
                f"    {dst} = {t}",
                "else:",
                *_indent(self._walk(steps, t, dst)),
            ]
        if isinstance(node, Literal):
            if len(node.values) == 1 and type(node.values[0]) in _LITERAL_TYPES:
                return [f"{dst} = {node.values[0]!r}"]
            return None
        if isinstance(node, Binary):
            return self._binary(node, src, dst)
        if isinstance(node, Call):
            return self._call(node, src, dst)
        return None

    def _walk(self, steps: list[Any], src: str, dst: str) -> list[str]:
        cur, v = self.var(), self.var()
        body = [f"{cur} = {src}"]
        for st in steps:
            body += step_source(st, f"{dst} = None; break", f"{dst} = MULTI; break", cur, v)
        return ["while True:", *_indent([*body, f"{dst} = {cur}", "break"])]

    def _binary(self, node: Binary, src: str, dst: str) -> list[str] | None:
        op = node.op
        if op in ("=", "!="):
            lit = node.right
            if not (isinstance(lit, Literal) and len(lit.values) == 1):
                return None
            want = lit.values[0]
            if type(want) not in _LITERAL_TYPES:
                return None
            t = self.var()
            left = self.lines(node.left, src, t)
            if left is None:
                return None
            cmp = "!=" if op == "!=" else "=="
            return [
                *left,
                f"if {t} is None or {t} is MULTI:",
                f"    {dst} = {t}",
                f"elif type({t}) is not {type(want).__name__}:",
                f"    {dst} = MULTI",  # int vs float, string vs date...: general path
                "else:",
                f"    {dst} = {t} {cmp} {want!r}",
            ]
        if op in ("and", "or"):
            a, b = self.var(), self.var()
            left = self.lines(node.left, src, a)
            right = self.lines(node.right, src, b)
            if left is None or right is None:
                return None
            stop = "False" if op == "and" else "True"  # the value that decides alone
            other = "True" if op == "and" else "False"
            return [
                *left,
                f"if {a} is {stop}:",
                f"    {dst} = {stop}",
                f"elif {a} is not None and {a} is not {other}:",
                f"    {dst} = MULTI",
                "else:",
                *_indent(right),
                f"    if {b} is {stop}:",
                f"        {dst} = {stop}",
                f"    elif {b} is not None and {b} is not {other}:",
                f"        {dst} = MULTI",
                f"    elif {a} is {other} and {b} is {other}:",
                f"        {dst} = {other}",
                "    else:",
                f"        {dst} = None",
            ]
        return None

    def _call(self, node: Call, src: str, dst: str) -> list[str] | None:
        name = node.name
        if node.target is None:
            if name == "getResourceKey" and not node.args:
                return [
                    f"if type({src}) is dict and 'resourceType' in {src}:",
                    f"    {dst} = {src}.get('id')",
                    f"    if type({dst}) is not str:",
                    f"        {dst} = None",
                    "else:",
                    f"    {dst} = None",
                ]
            return None
        if name == "getReferenceKey":
            want: str | None = None
            if node.args:
                arg = node.args[0]
                if not isinstance(arg, TypeSpec | Ident):
                    return None
                want = arg.name.rsplit(".", 1)[-1]
            t = self.var()
            inner = self.lines(node.target, src, t)
            if inner is None:
                return None
            r = self.var()
            if self.ctx_var is not None:
                resolve = f"{dst} = resolved_reference_key({r}, {want!r}, {self.ctx_var}.root)"
            else:
                resolve = f"{dst} = MULTI"
            return [
                *inner,
                f"if {t} is None or {t} is MULTI:",
                f"    {dst} = {t}",
                f"elif type({t}) is dict and type({t}.get('reference')) is str:",
                f"    {r} = {t}['reference']",
                f"    if {r}[:4] != 'urn:':",
                f"        {dst} = reference_key({r}, {want!r})",
                "    else:",
                f"        {resolve}",
                "else:",
                f"    {dst} = None",
            ]
        if node.args and name != "where":
            return None
        if name == "first":
            return self.lines(node.target, src, dst)
        t = self.var()
        inner = self.lines(node.target, src, t)
        if inner is None:
            return None
        undecided = [f"if {t} is MULTI:", f"    {dst} = MULTI"]
        if name == "exists":
            return [*inner, *undecided, "else:", f"    {dst} = {t} is not None"]
        if name == "empty":
            return [*inner, *undecided, "else:", f"    {dst} = {t} is None"]
        if name == "not":
            return [
                *inner,
                f"if {t} is None or {t} is MULTI:",
                f"    {dst} = {t}",
                f"elif type({t}) is bool:",
                f"    {dst} = not {t}",
                "else:",
                f"    {dst} = MULTI",
            ]
        if name == "where":
            p = self.var()
            pred = self.lines(node.args[0], t, p)
            if pred is None:
                return None
            return [
                *inner,
                f"if {t} is None or {t} is MULTI:",
                f"    {dst} = {t}",
                "else:",
                *_indent(pred),
                f"    if {p} is True:",
                f"        {dst} = {t}",
                f"    elif {p} is False or {p} is None:",
                f"        {dst} = None",
                "    else:",
                f"        {dst} = MULTI",
            ]
        return None


def scalar_of(c: Compiler, node: Node) -> Scalar | None:
    """The single-item evaluator of ``node`` as a function, or None when there is none."""
    body = ScalarSource(c).lines(node, "item", "out")
    if body is None:
        return None
    src = "\n".join(["def scalar(item):", *_indent(body), "    return out"])
    namespace = dict(SCALAR_ENV)
    exec(compile(src, "<fhirpath scalar>", "exec"), namespace)
    fn: Scalar = namespace["scalar"]
    return fn
