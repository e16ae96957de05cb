"""The feature specification: views + a per-patient recipe, versioned and hashed.

Why declarative: the HDAB must be able to read what a permit allows, and
every site must compute exactly the same features. The specification is one
JSON document (``specVersion`` 1) holding SQL-on-FHIR v2 ViewDefinitions,
optional ConceptMaps, and a recipe naming, per feature, which view rows count
(codes), how they are aggregated over which window around the index date, and
in which unit. :meth:`FeatureSpec.canonical_hash` is :func:`trust.spec_hash`
(SHA-256 of the RFC 8785 canonical JSON), the one function permits and
``federation`` use too, and is what a permit pins.

Everything is checked here, before any data is read: unknown keys, unknown
views or columns, aggregations, windows, duplicate feature names, and each
ViewDefinition compiles.

Shape (see ``docs/features.md`` for the full reference)::

    {"specVersion": 1, "name": "...", "version": "1.0.0",
     "views": {"patient": {ViewDefinition}, "observation": {...}, ...},
     "conceptMaps": [{ConceptMap}, ...],
     "recipe": {
        "patients": {"view": "patient", "key": "id", "birthDate": "birth_date", "sex": "gender"},
        "events": {"observation": {"view": "observation", "patient": "patient", "time": "time",
                                   "system": "system", "code": "code", "value": "value", "unit": "unit"}},
        "index": {"type": "last_event", "events": "observation"},
        "features": [{"name": "bmi", "type": "aggregate", "events": "observation",
                      "codes": [{"system": "http://loinc.org", "code": "39156-5"}],
                      "aggregation": "latest", "window": {"from": -1096, "to": 0}, "unit": "kg/m2"},
                     {"name": "age", "type": "age"},
                     {"name": "sex", "type": "one_hot", "attribute": "sex", "categories": ["female", "male"]}],
        "label": {"name": "diabetes", "events": "condition", "codes": [...]}}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

import trust
from fhir_adapters.conceptmap import ConceptMapIndex
from fhir_adapters.errors import ConceptMapError, FeatureSpecError, FhirAdapterError

SPEC_VERSION = 1
AGGREGATIONS: tuple[str, ...] = ("latest", "first", "min", "max", "mean", "count", "exists")
VALUE_AGGREGATIONS = frozenset({"latest", "first", "min", "max", "mean"})
FEATURE_TYPES: tuple[str, ...] = ("aggregate", "age", "one_hot")
INDEX_TYPES: tuple[str, ...] = ("fixed", "last_event", "first_event")
EVENT_ROLES = ("patient", "time", "system", "code", "value", "unit")

Coding = tuple[str, str]


# ---------------------------------------------------------------- JSON values


def _canonical_value(value: Any) -> Any:
    """A plain JSON value: integral floats as ints (so ``1.0`` parses like ``1``); NaN/inf refused."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FeatureSpecError("specification contains a non-finite number")
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(v) for v in value]
    raise FeatureSpecError(f"specification contains a non-JSON value ({type(value).__name__})")


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of a specification document (:func:`trust.canonical_json`)."""
    try:
        return trust.canonical_json(_canonical_value(document))
    except trust.TrustError as exc:
        raise FeatureSpecError(f"specification has no canonical form: {exc}") from None


# ---------------------------------------------------------------- parsed recipe


@dataclass(frozen=True)
class Window:
    """Days relative to the index date, both ends inclusive; None is unbounded."""

    start: float | None = None
    end: float | None = 0.0


@dataclass(frozen=True)
class PatientsRole:
    view: str
    key: str
    birth_date: str | None
    sex: str | None


@dataclass(frozen=True)
class EventsRole:
    """How a view's columns map to event roles (patient, time, code, value, unit)."""

    name: str
    view: str
    patient: str
    time: str | None
    system: str | None
    code: str | None
    value: str | None
    unit: str | None


@dataclass(frozen=True)
class IndexDef:
    type: str
    date: float | None = None  # days since 1970-01-01 for "fixed"
    events: str | None = None
    codes: frozenset[Coding] = frozenset()
    offset_days: float = 0.0


@dataclass(frozen=True)
class FeatureDef:
    name: str
    type: str
    events: str | None = None
    codes: frozenset[Coding] = frozenset()
    aggregation: str | None = None
    window: Window = field(default_factory=Window)
    unit: str | None = None
    analyte: str | None = None
    attribute: str | None = None
    column: str | None = None
    categories: tuple[str, ...] = ()

    def output_names(self) -> list[str]:
        if self.type == "one_hot":
            return [f"{self.name}={c}" for c in self.categories]
        return [self.name]


@dataclass(frozen=True)
class LabelDef:
    name: str
    events: str
    codes: frozenset[Coding]
    window: Window


# ---------------------------------------------------------------- helpers


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FeatureSpecError(f"{where} must be an object")
    return value


def _str(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise FeatureSpecError(f"{where} must be a non-empty string")
    return value


def _keys(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = set(obj) - allowed
    if extra:
        raise FeatureSpecError(f"{where}: unknown key(s) {sorted(extra)}")


def _codes(value: Any, where: str) -> frozenset[Coding]:
    if not isinstance(value, list) or not value:
        raise FeatureSpecError(f"{where} must be a non-empty list of {{system, code}}")
    out: set[Coding] = set()
    for i, item in enumerate(value):
        item = _obj(item, f"{where}[{i}]")
        _keys(item, {"system", "code", "display"}, f"{where}[{i}]")
        system = _str(item.get("system"), f"{where}[{i}].system")
        code = _str(item.get("code"), f"{where}[{i}].code")
        assert system is not None and code is not None
        out.add((system, code))
    return frozenset(out)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FeatureSpecError(f"{where} must be a number of days or null")
    return float(value)


def _window(value: Any, where: str, default: Window) -> Window:
    if value is None:
        return default
    obj = _obj(value, where)
    _keys(obj, {"from", "to"}, where)
    start = _number(obj.get("from"), f"{where}.from")
    end = _number(obj.get("to"), f"{where}.to")
    if start is not None and end is not None and start > end:
        raise FeatureSpecError(f"{where}: 'from' is after 'to'")
    return Window(start, end)


def parse_date_days(value: str, where: str) -> float:
    try:
        d = date.fromisoformat(value)
    except ValueError as exc:
        raise FeatureSpecError(f"{where} must be a date YYYY-MM-DD") from exc
    return float(d.toordinal() - date(1970, 1, 1).toordinal())


# ---------------------------------------------------------------- the spec


class FeatureSpec:
    """A parsed, checked feature specification. Build with :meth:`from_dict`/:meth:`from_file`."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document: dict[str, Any] = _canonical_value(_obj(document, "specification"))
        self._parse()

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> FeatureSpec:
        return cls(document)

    @classmethod
    def from_json(cls, text: str | bytes) -> FeatureSpec:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise FeatureSpecError("specification is not valid JSON") from exc
        return cls(_obj(doc, "specification"))

    @classmethod
    def from_file(cls, path: str | Path) -> FeatureSpec:
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise FeatureSpecError(f"cannot read specification {p.name}: {exc.strerror}") from exc
        return cls.from_json(data)

    # -- identity -----------------------------------------------------------------

    def canonical_json(self) -> bytes:
        return canonical_json(self.document)

    def canonical_hash(self) -> str:
        """:func:`trust.spec_hash` of the document: what a data permit pins."""
        try:
            return trust.spec_hash(self.document)
        except trust.TrustError as exc:
            raise FeatureSpecError(f"specification has no canonical form: {exc}") from None

    def to_json(self, *, indent: bool = True) -> bytes:
        opt = orjson.OPT_INDENT_2 if indent else 0
        return orjson.dumps(self.document, option=opt | orjson.OPT_SORT_KEYS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpec) and self.canonical_json() == other.canonical_json()

    def __hash__(self) -> int:
        return hash(self.canonical_json())

    def __repr__(self) -> str:
        return f"FeatureSpec(name={self.name!r}, version={self.version!r}, hash={self.canonical_hash()[:19]}...)"

    @property
    def feature_names(self) -> list[str]:
        out: list[str] = []
        for f in self.features:
            out.extend(f.output_names())
        return out

    # -- parsing ------------------------------------------------------------------

    def _parse(self) -> None:
        doc = self.document
        _keys(
            doc,
            {
                "specVersion",
                "name",
                "version",
                "description",
                "fhirVersion",
                "views",
                "conceptMaps",
                "recipe",
            },
            "specification",
        )
        if doc.get("specVersion") != SPEC_VERSION:
            raise FeatureSpecError(f"specVersion must be {SPEC_VERSION}")
        self.name: str = _str(doc.get("name"), "name") or ""
        self.version: str = _str(doc.get("version"), "version") or ""
        fv = doc.get("fhirVersion")
        self.fhir_version: str | None = _str(fv, "fhirVersion", optional=True)
        views = _obj(doc.get("views"), "views")
        if not views:
            raise FeatureSpecError("views must name at least one ViewDefinition")
        self.views: dict[str, Mapping[str, Any]] = {}
        for name, view in views.items():
            self.views[name] = _obj(view, f"views.{name}")
        self._compiled: dict[str, Any] | None = None
        self.column_names: dict[str, tuple[str, ...]] = {
            name: self._compile_one(name).column_names for name in self.views
        }
        maps = doc.get("conceptMaps", [])
        if not isinstance(maps, list):
            raise FeatureSpecError("conceptMaps must be a list of ConceptMap resources")
        try:
            self.concept_maps = ConceptMapIndex.from_resources(maps)
        except ConceptMapError as exc:
            raise FeatureSpecError(f"conceptMaps: {exc}") from exc
        recipe = _obj(doc.get("recipe"), "recipe")
        _keys(recipe, {"patients", "events", "index", "features", "label"}, "recipe")
        self.patients = self._parse_patients(_obj(recipe.get("patients"), "recipe.patients"))
        events = _obj(recipe.get("events", {}), "recipe.events")
        self.events: dict[str, EventsRole] = {
            name: self._parse_events(name, _obj(e, f"recipe.events.{name}"))
            for name, e in events.items()
        }
        self.index = self._parse_index(_obj(recipe.get("index"), "recipe.index"))
        feats = recipe.get("features")
        if not isinstance(feats, list) or not feats:
            raise FeatureSpecError("recipe.features must be a non-empty list")
        self.features: list[FeatureDef] = [
            self._parse_feature(_obj(f, f"recipe.features[{i}]"), f"recipe.features[{i}]")
            for i, f in enumerate(feats)
        ]
        names = self.feature_names
        if len(set(names)) != len(names):
            raise FeatureSpecError("feature names must be unique")
        label = recipe.get("label")
        self.label: LabelDef | None = (
            self._parse_label(_obj(label, "recipe.label")) if label is not None else None
        )

    def _compile_one(self, name: str) -> Any:
        from fhir_adapters.views import compile_view

        try:
            view = compile_view(self.views[name])
        except FhirAdapterError as exc:
            raise FeatureSpecError(f"views.{name}: {exc}") from exc
        if self._compiled is None:
            self._compiled = {}
        self._compiled[name] = view
        return view

    def compiled_views(self) -> dict[str, Any]:
        """name -> CompiledView (compiled once per spec)."""
        if self._compiled is None or len(self._compiled) != len(self.views):
            for name in self.views:
                self._compile_one(name)
        assert self._compiled is not None
        return dict(self._compiled)

    def resource_types(self) -> frozenset[str]:
        """The resource types the spec's views read (what needs validating)."""
        return frozenset(str(v.get("resource")) for v in self.views.values())

    def _column(self, view: str, col: Any, where: str, *, optional: bool = False) -> str | None:
        name = _str(col, where, optional=optional)
        if name is None:
            return None
        if name not in self.column_names[view]:
            raise FeatureSpecError(f"{where}: view {view!r} has no column {name!r}")
        return name

    def _view(self, value: Any, where: str) -> str:
        name = _str(value, where)
        assert name is not None
        if name not in self.views:
            raise FeatureSpecError(f"{where}: unknown view {name!r}")
        return name

    def _parse_patients(self, obj: Mapping[str, Any]) -> PatientsRole:
        _keys(obj, {"view", "key", "birthDate", "sex"}, "recipe.patients")
        view = self._view(obj.get("view"), "recipe.patients.view")
        return PatientsRole(
            view=view,
            key=self._column(view, obj.get("key"), "recipe.patients.key") or "",
            birth_date=self._column(
                view, obj.get("birthDate"), "recipe.patients.birthDate", optional=True
            ),
            sex=self._column(view, obj.get("sex"), "recipe.patients.sex", optional=True),
        )

    def _parse_events(self, name: str, obj: Mapping[str, Any]) -> EventsRole:
        where = f"recipe.events.{name}"
        _keys(obj, {"view", *EVENT_ROLES}, where)
        view = self._view(obj.get("view"), f"{where}.view")
        cols = {
            r: self._column(view, obj.get(r), f"{where}.{r}", optional=r != "patient")
            for r in EVENT_ROLES
        }
        return EventsRole(name=name, view=view, **cols)  # type: ignore[arg-type]

    def _events(self, value: Any, where: str) -> str:
        name = _str(value, where)
        assert name is not None
        if name not in self.events:
            raise FeatureSpecError(f"{where}: unknown events {name!r}")
        return name

    def _parse_index(self, obj: Mapping[str, Any]) -> IndexDef:
        _keys(obj, {"type", "date", "events", "codes", "offsetDays"}, "recipe.index")
        itype = obj.get("type")
        if itype not in INDEX_TYPES:
            raise FeatureSpecError(f"recipe.index.type must be one of {list(INDEX_TYPES)}")
        offset = _number(obj.get("offsetDays", 0), "recipe.index.offsetDays") or 0.0
        if itype == "fixed":
            d = _str(obj.get("date"), "recipe.index.date")
            assert d is not None
            return IndexDef(
                type="fixed", date=parse_date_days(d, "recipe.index.date"), offset_days=offset
            )
        events = self._events(obj.get("events"), "recipe.index.events")
        if self.events[events].time is None:
            raise FeatureSpecError("recipe.index.events needs a time column")
        codes = _codes(obj["codes"], "recipe.index.codes") if "codes" in obj else frozenset()
        return IndexDef(type=str(itype), events=events, codes=codes, offset_days=offset)

    def _parse_feature(self, obj: Mapping[str, Any], where: str) -> FeatureDef:
        ftype = obj.get("type", "aggregate")
        if ftype not in FEATURE_TYPES:
            raise FeatureSpecError(f"{where}.type must be one of {list(FEATURE_TYPES)}")
        name = _str(obj.get("name"), f"{where}.name")
        assert name is not None
        if ftype == "age":
            _keys(obj, {"name", "type", "description"}, where)
            if self.patients.birth_date is None:
                raise FeatureSpecError(f"{where}: age needs recipe.patients.birthDate")
            return FeatureDef(name=name, type="age")
        if ftype == "one_hot":
            _keys(
                obj,
                {
                    "name",
                    "type",
                    "description",
                    "attribute",
                    "events",
                    "codes",
                    "column",
                    "categories",
                    "window",
                },
                where,
            )
            cats = obj.get("categories")
            if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats):
                raise FeatureSpecError(f"{where}.categories must be a non-empty list of strings")
            if len(cats) > 64:
                raise FeatureSpecError(
                    f"{where}.categories: one-hot is for small code sets (<= 64)"
                )
            if "attribute" in obj:
                attr = obj["attribute"]
                if attr not in ("sex",):
                    raise FeatureSpecError(f"{where}.attribute must be 'sex'")
                if self.patients.sex is None:
                    raise FeatureSpecError(f"{where}: needs recipe.patients.sex")
                return FeatureDef(name=name, type="one_hot", attribute=attr, categories=tuple(cats))
            events = self._events(obj.get("events"), f"{where}.events")
            view = self.events[events].view
            column = self._column(view, obj.get("column"), f"{where}.column")
            codes = _codes(obj["codes"], f"{where}.codes") if "codes" in obj else frozenset()
            return FeatureDef(
                name=name,
                type="one_hot",
                events=events,
                codes=codes,
                column=column,
                categories=tuple(cats),
                aggregation="latest",
                window=_window(obj.get("window"), f"{where}.window", Window()),
            )
        _keys(
            obj,
            {
                "name",
                "type",
                "description",
                "events",
                "codes",
                "aggregation",
                "window",
                "unit",
                "analyte",
            },
            where,
        )
        events = self._events(obj.get("events"), f"{where}.events")
        role = self.events[events]
        agg = obj.get("aggregation")
        if agg not in AGGREGATIONS:
            raise FeatureSpecError(f"{where}.aggregation must be one of {list(AGGREGATIONS)}")
        if agg in VALUE_AGGREGATIONS and role.value is None:
            raise FeatureSpecError(f"{where}: {agg} needs a value column in events {events!r}")
        if agg in ("latest", "first") and role.time is None:
            raise FeatureSpecError(f"{where}: {agg} needs a time column in events {events!r}")
        unit = _str(obj.get("unit"), f"{where}.unit", optional=True)
        if unit is not None and role.unit is None:
            raise FeatureSpecError(
                f"{where}: unit conversion needs a unit column in events {events!r}"
            )
        analyte = _str(obj.get("analyte"), f"{where}.analyte", optional=True)
        if analyte is not None:
            from fhir_adapters.units import default_analytes

            if analyte not in default_analytes():
                raise FeatureSpecError(f"{where}.analyte: unknown analyte {analyte!r}")
        return FeatureDef(
            name=name,
            type="aggregate",
            events=events,
            codes=_codes(obj.get("codes"), f"{where}.codes"),
            aggregation=str(agg),
            window=_window(obj.get("window"), f"{where}.window", Window()),
            unit=unit,
            analyte=analyte,
        )

    def _parse_label(self, obj: Mapping[str, Any]) -> LabelDef:
        _keys(obj, {"name", "events", "codes", "window", "description"}, "recipe.label")
        name = _str(obj.get("name", "label"), "recipe.label.name")
        assert name is not None
        return LabelDef(
            name=name,
            events=self._events(obj.get("events"), "recipe.label.events"),
            codes=_codes(obj.get("codes"), "recipe.label.codes"),
            window=_window(obj.get("window"), "recipe.label.window", Window(None, None)),
        )
