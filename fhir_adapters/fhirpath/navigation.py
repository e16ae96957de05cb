"""Navigation chains (``a.b.value.ofType(Quantity).value``) fused into one closure.

Most expressions in a ViewDefinition are chains of element names, and most
elements on the way hold one value (``code.coding`` usually has one Coding).
The fused closure therefore walks a *single* item with plain ``dict.get`` and
only falls back to the general collection-at-a-time walk when a step yields
several items (or needs the untyped fallback of ``ofType``). Both walks give the
same FHIRPath result; the single-item walk just allocates no lists on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fhir_adapters.fhirpath.model import CHOICE_NAMES, CHOICE_SUFFIXES

Fn = Callable[[list[Any], Any], list[Any]]
StepFn = Callable[[list[Any]], list[Any]]

_EMPTY: list[Any] = []


class Step:
    """One navigation step: ``.name``, or ``.name.ofType(T)`` read as the key ``nameT``."""

    __slots__ = ("check", "choice", "key", "name", "test", "type_head")

    def __init__(
        self,
        name: str,
        *,
        key: str | None = None,
        test: Callable[[Any], bool] | None = None,
        check: str | None = None,
        head: bool = False,
    ) -> None:
        self.name = name
        self.key = key  # typed key for an ofType step (valueQuantity)
        self.test = test  # type test of an ofType step (typed key values and the untyped fallback)
        self.check = check  # the same test as inline Python on ``v`` (JSON type), if expressible
        self.choice = name in CHOICE_NAMES and key is None
        # A capitalised head identifier may name the resource type (``Patient.name``).
        self.type_head = head and name[:1].isupper()


_CHOICE_KEYS: dict[str, frozenset[str]] = {}


def choice_get(item: dict[str, Any], name: str) -> Any:
    """``value`` on an item holding ``valueQuantity`` etc. (the typed key present)."""
    keys = _CHOICE_KEYS.get(name)
    if keys is None:
        keys = frozenset(name + suffix for suffix in CHOICE_SUFFIXES)
        _CHOICE_KEYS[name] = keys
    for key in item:
        if key in keys:
            return item[key]
    return None


def _extend(out: list[Any], v: Any) -> None:
    if type(v) is list:
        if None in v:
            out.extend(x for x in v if x is not None)
        else:
            out.extend(v)
    else:
        out.append(v)


def step_function(step: Step) -> StepFn:
    """The collection-at-a-time form of one step."""
    name = step.name
    if step.key is not None:
        key = step.key
        test = step.test
        assert test is not None

        def typed(coll: list[Any]) -> list[Any]:
            out: list[Any] = []
            for item in coll:
                if type(item) is not dict:
                    continue
                v = item.get(key)
                if v is None:
                    v = item.get(name)
                if v is None:
                    continue
                for x in v if type(v) is list else (v,):
                    if x is not None and test(x):
                        out.append(x)
            return out

        return typed

    choice = step.choice
    type_head = step.type_head

    def member(coll: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in coll:
            if type(item) is not dict:
                continue
            if type_head and item.get("resourceType") == name:
                out.append(item)
                continue
            v = item.get(name)
            if v is None:
                if not choice:
                    continue
                v = choice_get(item, name)
                if v is None:
                    continue
            if type(v) is list:
                if None in v:
                    out.extend(x for x in v if x is not None)
                else:
                    out.extend(v)
            else:
                out.append(v)
        return out

    return member


class _Multi:
    """Sentinel: the single-item walk met several items; take the general walk."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MULTI"


MULTI: Any = _Multi()


def step_source(
    step: Step, on_empty: str, on_multi: str, cur: str = "cur", v: str = "v"
) -> list[str]:
    """Python lines advancing ``cur`` (one JSON value) by one step, single-item walk.

    ``on_empty``/``on_multi`` are the statements run when the step yields
    nothing / cannot be decided on one item; ``cur`` and ``v`` name the
    variables used, so several walks can be inlined into one function.
    """
    name = repr(step.name)
    lines = [f"if type({cur}) is not dict:", f"    {on_empty}"]
    if step.key is not None:
        lines += [
            f"{v} = {cur}.get({step.key!r})",
            f"if {v} is None:",
            f"    if {name} not in {cur}:",
            f"        {on_empty}",
            f"    {on_multi}",
        ]
        if step.check is not None:
            # invalid data (``deceasedBoolean: "yes"``) is not of the type: empty
            lines += [
                f"if not ({step.check.format(v=v)}):",
                f"    if type({v}) is list:",
                f"        {on_multi}",
                f"    {on_empty}",
            ]
    else:
        if step.type_head:
            lines += [f"if {cur}.get('resourceType') == {name}:", f"    {v} = {cur}", "else:"]
            indent = "    "
        else:
            indent = ""
        lines += [f"{indent}{v} = {cur}.get({name})", f"{indent}if {v} is None:"]
        if step.choice:
            lines += [
                f"{indent}    {v} = choice_get({cur}, {name})",
                f"{indent}    if {v} is None:",
                f"{indent}        {on_empty}",
            ]
        else:
            lines += [f"{indent}    {on_empty}"]
    if step.key is None or step.check is None:  # a checked typed value is never a list
        lines += [
            f"if type({v}) is list:",
            f"    if len({v}) != 1:",
            f"        if not {v}:",
            f"            {on_empty}",
            f"        {on_multi}",
            f"    {v} = {v}[0]",
            f"    if {v} is None:",
            f"        {on_empty}",
        ]
    lines.append(f"{cur} = {v}")
    return lines


def _compile_source(src: str, name: str, env: dict[str, Any]) -> Any:
    namespace = dict(env)
    exec(compile(src, f"<fhirpath {name}>", "exec"), namespace)
    return namespace[name]


def make_chain(target: Fn | None, steps: Sequence[Step]) -> Fn:
    """Fuse ``steps`` applied to ``target`` (or to the focus when None) into one function.

    The single-item walk is generated as straight-line Python (one ``dict.get``
    per step, no loop, no intermediate lists); several items, or an ``ofType``
    whose typed key is absent but whose plain element exists, fall back to the
    general collection walk from the start, which is always correct.
    """
    fns = [step_function(s) for s in steps]

    def general(coll: list[Any], start: int) -> list[Any]:
        for fn in fns[start:]:
            if not coll:
                return _EMPTY
            coll = fn(coll)
        return coll

    body: list[str] = []
    for st in steps:
        body += step_source(st, "return _EMPTY", "return general(coll, 0)")
    src = "\n".join(
        [
            "def chain(focus, ctx):",
            "    coll = focus" if target is None else "    coll = target(focus, ctx)",
            "    if len(coll) != 1:",
            "        return general(coll, 0) if coll else _EMPTY",
            "    cur = coll[0]",
            *("    " + line for line in body),
            "    return [cur]",
        ]
    )
    env = {"general": general, "target": target, "_EMPTY": _EMPTY, "choice_get": choice_get}
    chain: Fn = _compile_source(src, "chain", env)
    return chain


def make_scalar(steps: Sequence[Step]) -> Callable[[Any], Any]:
    """Single-item walk of ``steps`` from one item: the value, None (empty) or ``MULTI``.

    Used by the view runner for non-collection columns: no list is built for
    the (usual) single result; ``MULTI`` sends it to the general path.
    """
    body: list[str] = []
    for st in steps:
        body += step_source(st, "return None", "return MULTI")
    src = "\n".join(["def scalar(cur):", *("    " + line for line in body), "    return cur"])
    env = {"MULTI": MULTI, "choice_get": choice_get}
    scalar: Callable[[Any], Any] = _compile_source(src, "scalar", env)
    return scalar
