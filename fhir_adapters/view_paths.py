"""A ViewDefinition's paths checked against one FHIR release's structure, at compile time.

Why: FHIRPath on JSON cannot tell a missing element from an element that
does not exist. ``Encounter.class.code`` is right in R4 (``class`` is a
Coding) and names nothing in R5 (``class`` is a list of CodeableConcepts), so
on R5 data it gave null for every row and "problems: none". When the release
is known (the view's or the spec's ``fhirVersion``), every member step of every
path is looked up in that release's structure definitions (the pydantic
models fhir.resources ships: R5 ``fhir.resources``, R4 ``fhir.resources.R4B``)
and a step that does not exist is a compile error naming the path, the type
and the release.

The check follows what it can type: member steps, ``ofType``/``as``,
``extension()``, filters (``where``, ``first``, ...) keep their input type;
anything else (arithmetic, ``resolve()``, constants) stops the check for that
path rather than guessing. Primitive values only have ``id``/``extension``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from fhir_adapters.errors import ViewDefinitionError
from fhir_adapters.fhirpath.ast import (
    Binary,
    Call,
    Ident,
    Member,
    Node,
    TypeOp,
    TypeSpec,
    Unary,
)
from fhir_adapters.fhirpath.parser import parse

_MODULES = {"R4": "fhir.resources.R4B", "R5": "fhir.resources"}
PRIMITIVE = "primitive"
_KEEP_TYPE = frozenset(
    {"where", "first", "last", "single", "tail", "skip", "take", "distinct", "trace", "repeat"}
)
_TYPE_RE = re.compile(r"abc\.(\w+)Type\b")


class _Choice:
    """A choice element (``value[x]``): its type is known only after ``ofType``."""

    __slots__ = ("types",)

    def __init__(self, types: frozenset[str]) -> None:
        self.types = types


def _type_of(annotation: Any) -> str:
    text = str(annotation)
    m = _TYPE_RE.findall(text)
    if m:
        return str(m[-1])
    return PRIMITIVE


@lru_cache(maxsize=1024)
def elements(release: str, type_name: str) -> dict[str, Any] | None:
    """JSON element name -> type name (or a choice) of a type in a release; None if unknown."""
    if type_name == PRIMITIVE:
        return None
    module = importlib.import_module(_MODULES[release])
    try:
        cls = module.get_fhir_model_class(type_name)
    except (KeyError, ValueError, AttributeError, LookupError):
        return None
    out: dict[str, Any] = {}
    choices: dict[str, set[str]] = {}
    for name, info in cls.model_fields.items():
        alias = info.alias or name
        if alias.startswith("_") or alias == "fhir_comments":
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        base = extra.get("one_of_many")
        tname = _type_of(info.annotation)
        out[alias] = tname
        if isinstance(base, str):
            suffix = alias[len(base) :]
            choices.setdefault(base, set()).add(tname if tname != PRIMITIVE else suffix)
    for base, types in choices.items():
        out.setdefault(base, _Choice(frozenset(types)))
    return out


def view_release(view: Mapping[str, Any], stated: str | None = None) -> str | None:
    """The release a view is written for: ``stated`` (a spec's) or the view's ``fhirVersion``.

    ``fhirVersion`` is a list of FHIR version codes in SQL-on-FHIR v2 (a single
    string is accepted too); every entry must be a release we read, and a
    view naming several releases is checked against none of them.
    """
    from fhir_adapters.errors import ValidationModeError
    from fhir_adapters.release import normalize_version

    raw = view.get("fhirVersion")
    declared: set[str] = set()
    for v in [raw] if isinstance(raw, str) else (raw or ()):
        try:
            declared.add(normalize_version(str(v)))
        except ValidationModeError:
            raise ViewDefinitionError(
                f"fhirVersion {str(v)[:20]!r} is not a supported FHIR release",
                code="VIEW_FHIR_VERSION",
            ) from None
    if stated is not None:
        if declared and stated not in declared:
            raise ViewDefinitionError(
                f"the view is for FHIR {'/'.join(sorted(declared))}, not {stated}",
                code="VIEW_FHIR_VERSION",
            )
        return stated
    return declared.pop() if len(declared) == 1 else None


def check_view_paths(view: Mapping[str, Any], release: str) -> None:
    """Raise ViewDefinitionError (``VIEW_PATH_NOT_IN_RELEASE``) for a path the release lacks."""
    rtype = str(view.get("resource"))
    if elements(release, rtype) is None:
        raise ViewDefinitionError(
            f"resource {rtype!r} does not exist in FHIR {release}", code="VIEW_PATH_NOT_IN_RELEASE"
        )
    for i, w in enumerate(view.get("where") or ()):
        if isinstance(w, Mapping) and isinstance(w.get("path"), str):
            _check(w["path"], rtype, rtype, release, f"where[{i}].path")
    _check_select({"select": view.get("select") or []}, rtype, rtype, release, "")


def _check_select(node: Mapping[str, Any], ctx: Any, rtype: str, release: str, where: str) -> None:
    for key in ("forEach", "forEachOrNull"):
        path = node.get(key)
        if isinstance(path, str):
            ctx = _check(path, ctx, rtype, release, f"{where}{key}")
    if isinstance(node.get("repeat"), list):
        # ``repeat`` applies its paths again to their own results, at any depth: neither the
        # paths nor the items they reach have one type to check against
        ctx = None
    for j, col in enumerate(node.get("column") or ()):
        if isinstance(col, Mapping) and isinstance(col.get("path"), str):
            _check(col["path"], ctx, rtype, release, f"{where}column[{j}].path")
    for key in ("select", "unionAll"):
        for j, child in enumerate(node.get(key) or ()):
            if isinstance(child, Mapping):
                _check_select(child, ctx, rtype, release, f"{where}{key}[{j}].")


def _check(path: str, ctx: Any, rtype: str, release: str, where: str) -> Any:
    try:
        tree = parse(path)
    except Exception:  # syntax errors are reported by the compiler with their own code
        return None
    try:
        return _Typer(release, rtype).infer(tree, ctx)
    except _Missing as exc:
        raise ViewDefinitionError(
            f"{where}: {path!r}: {exc.type_name} has no element {exc.name!r} in FHIR {release}",
            code="VIEW_PATH_NOT_IN_RELEASE",
        ) from None


class _Missing(Exception):
    def __init__(self, type_name: str, name: str) -> None:
        super().__init__(name)
        self.type_name = type_name
        self.name = name


class _Typer:
    def __init__(self, release: str, rtype: str) -> None:
        self.release = release
        self.rtype = rtype

    def member(self, t: Any, name: str) -> Any:
        if t is None or isinstance(t, _Choice):
            return None
        if t == PRIMITIVE:
            if name in ("id", "extension"):
                return "Extension" if name == "extension" else PRIMITIVE
            raise _Missing("a primitive value", name)
        elems = elements(self.release, t)
        if elems is None:
            return None
        if name not in elems:
            if t == "Resource" or t == "DomainResource":
                return None
            raise _Missing(t, name)
        return elems[name]

    def infer(self, node: Node, ctx: Any) -> Any:
        if isinstance(node, Ident):
            if node.name == self.rtype and ctx == self.rtype:
                return ctx
            if node.name.startswith("$"):
                return ctx if node.name == "$this" else None
            return self.member(ctx, node.name)
        if isinstance(node, Member):
            return self.member(self.infer(node.target, ctx), node.name)
        if isinstance(node, Call):
            base = ctx if node.target is None else self.infer(node.target, ctx)
            if node.name in ("where", "exists", "all", "select") and node.args and base is not None:
                inner = self.infer(node.args[0], base)
                return inner if node.name == "select" else (base if node.name == "where" else None)
            if node.name in _KEEP_TYPE:
                return base
            if node.name in ("ofType", "as") and node.args:
                arg = node.args[0]
                if isinstance(arg, TypeSpec | Ident):
                    tname = arg.name.rsplit(".", 1)[-1]
                    return tname if tname[:1].isupper() else PRIMITIVE
                return None
            if node.name == "extension":
                return "Extension" if base is not None else None
            return None
        if isinstance(node, Binary):
            self.infer(node.left, ctx)
            self.infer(node.right, ctx)
            return None
        if isinstance(node, TypeOp):
            self.infer(node.operand, ctx)
            return None
        if isinstance(node, Unary):
            self.infer(node.operand, ctx)
            return None
        return None
