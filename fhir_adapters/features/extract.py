"""Run a feature specification over a resource stream: one pass, then numpy.

Why this shape: the stream may be a national Bulk export, so it is read
once and never held. Each resource goes to the compiled views of its type;
each view row is reduced on the spot to what some feature needs — a patient
index, a time, a value already converted to the feature's unit — appended to
flat per-feature lists. Rows whose code no feature wants cost one dict
lookup. After the stream ends, windows around each patient's index date and
the aggregations (latest, first, min, max, mean, count, exists) are a few
vectorised numpy operations per feature.

Opt-out is applied at the first sight of a patient key: an opted-out
patient's rows are never appended anywhere. A cohort smaller than
``min_rows`` raises :class:`CohortTooSmallError` before any feature is
computed, so no matrix exists to leak.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fhir_adapters.conceptmap import ConceptMapIndex
from fhir_adapters.errors import CohortTooSmallError, FhirAdapterError
from fhir_adapters.features.event_time import fallback_time
from fhir_adapters.features.matrix import ExtractionReport, FeatureMatrix
from fhir_adapters.features.medications import MEDICATION_USERS, MedicationCodes
from fhir_adapters.features.spec import (
    VALUE_AGGREGATIONS,
    Coding,
    EventsRole,
    FeatureDef,
    FeatureSpec,
    Window,
)
from fhir_adapters.features.timeutil import birth_days, known_part, to_days, to_local_days
from fhir_adapters.features.warnings import feature_warnings, release_warnings
from fhir_adapters.optout import OptOutFilter, OptOutRegistry
from fhir_adapters.quality import (
    DANGLING_REFERENCE,
    INVALID_VALUE,
    NO_EVENT_TIME,
    UNKNOWN_UNIT,
    VIEW_ERROR,
    QualityReport,
)
from fhir_adapters.stream import ResourceStream
from fhir_adapters.units import UnitNormalizer, analyte_for_loinc

_NAN = float("nan")
DAYS_PER_YEAR = 365.2425
_VIEW_ERRORS = (
    FhirAdapterError,
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
    ArithmeticError,
)


class _Slot:
    """What one feature (or the label, or the index) takes from an events view.

    Value and event slots read the handler's shared row buffer at the end
    (``code_ids`` None = every row); category slots (event one-hot) collect
    their own (P, T, category) lists during the pass.
    """

    __slots__ = (
        "analyte",
        "categories",
        "code_ids",
        "kind",
        "name",
        "owner",
        "p",
        "t",
        "target_unit",
        "v",
        "value_col",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        value_col: int | None = None,
        target_unit: str | None = None,
        analyte: str | None = None,
        categories: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.kind = kind  # "value", "event", "category"
        self.value_col = value_col
        self.target_unit = target_unit
        self.analyte = analyte
        self.categories = {c: float(i) for i, c in enumerate(categories)}
        self.code_ids: set[int] | None = None
        self.owner: Any = None  # the _EventsHandler holding this slot's rows
        self.p: list[int] = []
        self.t: list[float] = []
        self.v: list[float] = []


_BUFFER_FLUSH = 1 << 16


class _EventsHandler:
    """Reduces the rows of one events view to one compact row buffer.

    Each row a feature wants becomes one tuple ``(patient, time, value,
    unit id, code id)``; which feature takes which code, unit conversion and
    windowing happen once, vectorised, after the pass. The buffer is turned
    into numpy chunks every 65,536 rows, so memory stays at ~40 bytes a row.
    """

    def __init__(self, role: EventsRole, columns: Sequence[str], maps: ConceptMapIndex) -> None:
        self.role = role
        col = {c: i for i, c in enumerate(columns)}
        self.pi = col[role.patient]
        self.ti = col[role.time] if role.time else None
        self.si = col[role.system] if role.system else None
        self.ci = col[role.code] if role.code else None
        self.vi = col[role.value] if role.value else None
        self.ui = col[role.unit] if role.unit else None
        self.columns = col
        self.maps = maps
        self.code_ids: dict[Coding, int] = {}
        self.direct: set[Coding] = set()
        self.value_codes: set[int] = set()
        self.has_every = False
        self.slots: list[_Slot] = []
        self.cat_by_code: dict[Coding, list[_Slot]] = {}
        self.cat_every: list[_Slot] = []
        self.buf: list[tuple[int, float, float, int, int]] = []
        self.chunks: list[np.ndarray] = []
        self.unit_ids: dict[Any, int] = {}
        self.unit_names: list[Any] = []
        self.unit_first: list[tuple[str | None, str | None]] = []
        self.mapped: frozenset[Coding] = frozenset()  # codings wanted only through a ConceptMap
        # ``match: prefix`` codes: system -> [(prefix, slot)]; codings already decided
        self.prefixes: dict[str, list[tuple[str, _Slot]]] = {}
        self.prefix_seen: set[Any] = set()

    @property
    def active(self) -> bool:
        return bool(self.slots or self.cat_by_code or self.cat_every)

    def add_slot(
        self, slot: _Slot, codes: frozenset[Coding], prefixes: frozenset[Coding] = frozenset()
    ) -> None:
        slot.owner = self
        for system, prefix in sorted(prefixes):
            self.prefixes.setdefault(system, []).append((prefix, slot))
        self.direct |= codes
        expanded = self.maps.expand(codes) if codes else set()
        self.mapped = frozenset(
            (set(self.code_ids) | set(self.cat_by_code) | expanded) - self.direct
        )
        if slot.kind == "category":
            if not codes and not prefixes:
                self.cat_every.append(slot)
            for coding in expanded:
                self.cat_by_code.setdefault(coding, []).append(slot)
            return
        self.slots.append(slot)
        if not codes and not prefixes:
            self.has_every = True
            return
        ids = {self.code_ids.setdefault(c, len(self.code_ids)) for c in sorted(expanded)}
        slot.code_ids = ids
        if slot.kind == "value":
            self.value_codes |= ids

    def match_prefix(self, code: Any) -> int | None:
        """Route a coding no exact code wanted through the ``match: prefix`` codes (once each).

        ``E11`` (ICD-10, prefix) takes ``E11.9``: the coding gets a code id of
        its own, added to every slot whose prefix it starts with, so later rows
        with it cost one dict lookup like an exact code.
        """
        if code in self.prefix_seen:
            return self.code_ids.get(code)
        self.prefix_seen.add(code)
        system, value = code
        if type(value) is not str:
            return None
        hits = [s for p, s in self.prefixes.get(system, ()) if value.startswith(p)]
        if not hits:
            return None
        cid: int | None = None
        for slot in hits:
            if slot.kind == "category":
                self.cat_by_code.setdefault(code, []).append(slot)
                continue
            if cid is None:
                cid = self.code_ids.setdefault(code, len(self.code_ids))
            assert slot.code_ids is not None
            slot.code_ids.add(cid)
            if slot.kind == "value":
                self.value_codes.add(cid)
        return cid

    def new_unit(self, unit: Any, res: dict[str, Any]) -> int:
        uid = len(self.unit_names)
        self.unit_ids[unit] = uid
        self.unit_names.append(unit)
        rid = res.get("id")
        self.unit_first.append((res.get("resourceType"), rid if isinstance(rid, str) else None))
        return uid

    def flush(self) -> None:
        if self.buf:
            self.chunks.append(np.array(self.buf, dtype=np.float64))
            self.buf.clear()

    def table(self) -> np.ndarray:
        self.flush()
        if not self.chunks:
            return np.zeros((0, 5), dtype=np.float64)
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0]


class _Extractor:
    def __init__(
        self,
        spec: FeatureSpec,
        opt_out: OptOutFilter,
        report: ExtractionReport,
        extra_maps: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.spec = spec
        self.opt_out = opt_out
        self.report = report
        self.quality = report.quality
        self.normalizer = UnitNormalizer()
        maps = ConceptMapIndex.from_resources(spec.document.get("conceptMaps", []))
        for cm in extra_maps:
            maps.add(cm)
        self.maps = maps
        views = spec.compiled_views()
        self.views = views
        # patient key -> internal index; -1 = opted out
        self.keymap: dict[str, int] = {}
        self.keys: list[str] = []
        self.key_rows: list[int] = []
        self.has_patient: list[bool] = []
        self.birth: dict[int, float | None] = {}
        self.sex: dict[int, Any] = {}
        pr = spec.patients
        pcols = {c: i for i, c in enumerate(views[pr.view].column_names)}
        self.p_key = pcols[pr.key]
        self.p_birth = pcols[pr.birth_date] if pr.birth_date else None
        self.p_age = pcols[pr.age] if pr.age else None
        self.p_accuracy = pcols[pr.birth_date_accuracy] if pr.birth_date_accuracy else None
        self.stated_age: dict[int, float] = {}
        self.p_sex = pcols[pr.sex] if pr.sex else None
        self.handlers: dict[str, _EventsHandler] = {
            name: _EventsHandler(role, views[role.view].column_names, maps)
            for name, role in spec.events.items()
        }
        self.feature_slots: dict[str, _Slot] = {}
        for f in spec.features:
            if f.type == "aggregate":
                assert f.events is not None
                h = self.handlers[f.events]
                analyte = f.analyte
                if analyte is None and f.unit is not None:
                    analyte = next((a for c in f.codes if (a := analyte_for_loinc(c[1]))), None)
                slot = _Slot(
                    f.name,
                    "value" if f.aggregation in VALUE_AGGREGATIONS else "event",
                    value_col=h.vi,
                    target_unit=f.unit,
                    analyte=analyte,
                )
                h.add_slot(slot, f.codes, f.prefixes)
                self.feature_slots[f.name] = slot
            elif f.type == "one_hot" and f.events is not None:
                h = self.handlers[f.events]
                assert f.column is not None
                slot = _Slot(
                    f.name, "category", value_col=h.columns[f.column], categories=f.categories
                )
                h.add_slot(slot, f.codes, f.prefixes)
                self.feature_slots[f.name] = slot
        self.label_slot: _Slot | None = None
        if spec.label is not None:
            self.label_slot = _Slot(spec.label.name, "event")
            self.handlers[spec.label.events].add_slot(
                self.label_slot, spec.label.codes, spec.label.prefixes
            )
        self.index_slot: _Slot | None = None
        if spec.index.type != "fixed":
            assert spec.index.events is not None
            self.index_slot = _Slot("__index__", "event")
            self.handlers[spec.index.events].add_slot(
                self.index_slot, spec.index.codes, spec.index.prefixes
            )
        # resourceType -> [(view name, compiled view, handler or None for patients)]
        self.dispatch: dict[str, list[tuple[str, Any, _EventsHandler | None]]] = {}
        self.dispatch.setdefault(views[pr.view].resource, []).append(
            (pr.view, views[pr.view], None)
        )
        for name, h in self.handlers.items():
            if h.active:
                v = views[h.role.view]
                self.dispatch.setdefault(v.resource, []).append((name, v, h))
        self.view_rows: dict[str, int] = dict.fromkeys(self.dispatch_names(), 0)
        self.local_dates = spec.window_dates == "local"
        self.medications = MedicationCodes(
            any(views[h.role.view].resource in MEDICATION_USERS for h in self.handlers.values())
        )
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._undated_counted: set[int] = set()

    def dispatch_names(self) -> list[str]:
        return [name for entries in self.dispatch.values() for name, _, _ in entries]

    # -- keys ---------------------------------------------------------------------

    def _new_key(self, key: str) -> int:
        if not self.opt_out.keep(key):
            self.keymap[key] = -1
            return -1
        idx = len(self.keys)
        self.keymap[key] = idx
        self.keys.append(key)
        self.key_rows.append(0)
        self.has_patient.append(False)
        return idx

    # -- the pass -----------------------------------------------------------------

    def consume(self, stream: Iterable[dict[str, Any]]) -> None:
        dispatch = self.dispatch
        view_rows = self.view_rows
        quality = self.quality
        medications = self.medications
        for res in stream:
            entries = dispatch.get(res.get("resourceType"))  # type: ignore[arg-type]
            if entries is None:
                if medications.wanted and res.get("resourceType") == "Medication":
                    medications.add(res)
                continue
            for name, view, handler in entries:
                try:
                    rows = view.evaluate_tuples(res)
                except _VIEW_ERRORS as exc:
                    rid = res.get("id")
                    quality.add(
                        VIEW_ERROR,
                        resource_type=view.resource,
                        resource_id=rid if isinstance(rid, str) else None,
                        path=f"view:{name}",
                        message=str(getattr(exc, "code", type(exc).__name__)),
                    )
                    continue
                if not rows:
                    continue
                view_rows[name] += len(rows)
                if handler is None:
                    self._patients(rows, res)
                else:
                    self._events(handler, rows, res)

    def _patients(self, rows: list[tuple[Any, ...]], res: dict[str, Any]) -> None:
        pk, pb, ps = self.p_key, self.p_birth, self.p_sex
        for row in rows:
            key = row[pk]
            if type(key) is not str or not key:
                self.quality.add(
                    INVALID_VALUE,
                    resource_type="Patient",
                    path="key",
                    message="Patient without key",
                )
                continue
            idx = self.keymap.get(key)
            if idx is None:
                idx = self._new_key(key)
            if not self.opt_out.note_patient(key) or idx < 0:
                continue
            self.has_patient[idx] = True
            birth = row[pb] if pb is not None else None
            if self.p_accuracy is not None:
                birth = known_part(birth, row[self.p_accuracy])
            self.birth[idx] = birth_days(birth) if pb is not None else None
            if self.p_age is not None:
                a = row[self.p_age]
                if (type(a) is int or type(a) is float) and a >= 0:
                    self.stated_age[idx] = float(a)
            self.sex[idx] = row[ps] if ps is not None else None

    def _events(self, h: _EventsHandler, rows: list[tuple[Any, ...]], res: dict[str, Any]) -> None:
        keymap = self.keymap
        key_rows = self.key_rows
        code_ids = h.code_ids
        cat_by_code = h.cat_by_code
        cat_every = h.cat_every
        has_every = h.has_every
        buf = h.buf
        unit_ids = h.unit_ids
        pi, ti, si, ci, vi, ui = h.pi, h.ti, h.si, h.ci, h.vi, h.ui
        coded = si is not None and ci is not None
        mapped = h.mapped
        prefixes = h.prefixes
        local = self.local_dates
        day_of = to_local_days if local else to_days
        for row in rows:
            key = row[pi]
            try:
                idx = keymap[key]
            except (KeyError, TypeError):  # first sight of this key (or no key at all)
                if type(key) is not str:
                    continue
                idx = self._new_key(key)
            if idx < 0:
                continue
            key_rows[idx] += 1
            code = (row[si], row[ci]) if coded else None  # type: ignore[index]
            cid = code_ids.get(code) if coded else None  # type: ignore[arg-type]
            if cid is None and prefixes and coded:
                cid = h.match_prefix(code)
            cats = cat_by_code.get(code) if cat_by_code else None  # type: ignore[arg-type]
            if cid is None:
                if coded and row[ci] is None and self.medications.defer(h, row, res):  # type: ignore[index]
                    continue
                if has_every:
                    cid = -1
                elif cats is None and not cat_every:
                    continue
            if ti is not None:
                tv = row[ti]
                t = day_of(tv)
                if t is None and tv is None:
                    t = self._fallback_time(res, local)
            else:
                t = None
            tf = _NAN if t is None else t
            if mapped and code in mapped:
                self.report.concept_mapped_rows += 1
            if cid is not None:
                raw: Any = row[vi] if vi is not None else None
                tr = type(raw)
                if tr is float or tr is int:
                    v: float = raw
                elif raw is None:
                    v = _NAN
                else:
                    v = self._number(raw, res, cid in h.value_codes)
                if ui is not None:
                    u = row[ui]
                    try:
                        uid = unit_ids[u]
                    except (KeyError, TypeError):
                        uid = h.new_unit(u if isinstance(u, str) or u is None else str(u), res)
                else:
                    uid = -1
                buf.append((idx, tf, v, uid, cid))
            if cats or cat_every:
                for slot in (cats or []) + cat_every:
                    raw = row[slot.value_col] if slot.value_col is not None else None
                    if raw is not None:
                        slot.p.append(idx)
                        slot.t.append(tf)
                        slot.v.append(slot.categories.get(str(raw), -1.0))
        if len(buf) >= _BUFFER_FLUSH:
            h.flush()

    def _fallback_time(self, res: dict[str, Any], local: bool) -> float | None:
        """An empty time column falls back on the resource's own date (counted)."""
        t = None
        fallback = fallback_time(res)
        if fallback is not None:
            t = to_days(fallback, local=local)
            if t is not None:
                self.report.time_fallback_rows += 1
        return t

    def _number(self, raw: Any, res: dict[str, Any], report: bool) -> float:
        """A non-int/float value: a numeric string is accepted, anything else is NaN (counted)."""
        if type(raw) is not bool and isinstance(raw, str | int | float):
            try:
                return float(raw)
            except ValueError:
                pass
        if report:
            self._bad(INVALID_VALUE, res, "value", "value is not a number")
        return _NAN

    def _bad(self, kind: str, res: dict[str, Any], path: str, message: str) -> None:
        rid = res.get("id")
        rtype = res.get("resourceType")
        self.quality.add(
            kind,
            resource_type=rtype if isinstance(rtype, str) else None,
            resource_id=rid if isinstance(rid, str) else None,
            path=path,
            message=message,
        )

    # -- after the pass -----------------------------------------------------------

    def _resolve_medications(self) -> None:
        def dangling(stub: dict[str, Any]) -> None:
            self._bad(DANGLING_REFERENCE, stub, "medication", "medication reference not resolved")

        self.report.medication_rows_resolved += self.medications.resolve(self._events, dangling)
        for h in self.handlers.values():
            h.flush()

    def finish(self, min_rows: int | None) -> FeatureMatrix:
        spec = self.spec
        report = self.report
        self._resolve_medications()
        report.rows_by_view = dict(self.view_rows)
        report.excluded_opt_out = self.opt_out.excluded
        n_int = len(self.keys)
        has_patient = np.asarray(self.has_patient, dtype=bool) if n_int else np.zeros(0, dtype=bool)
        # dangling: event rows whose patient never appeared as a Patient resource
        # (a Patient that was quarantined did appear: its rows are counted as such)
        quarantined = self.quality.quarantined_patients
        for i in range(n_int):
            if not self.has_patient[i] and self.key_rows[i] and self.keys[i] in quarantined:
                report.rows_of_quarantined_patients += self.key_rows[i]
            elif not self.has_patient[i] and self.key_rows[i]:
                self.quality.add(
                    DANGLING_REFERENCE,
                    resource_type="Patient",
                    resource_id=self.keys[i],
                    path="patient",
                    message=f"{self.key_rows[i]} row(s) reference a Patient not in the stream",
                )
                if self.key_rows[i] > 1:
                    self.quality.count(DANGLING_REFERENCE, self.key_rows[i] - 1)
        report.patients_seen = int(has_patient.sum()) + report.excluded_opt_out
        # index dates (internal index space)
        index = np.full(n_int, np.nan)
        if spec.index.type == "fixed":
            assert spec.index.date is not None
            index[:] = spec.index.date + spec.index.offset_days
        else:
            assert self.index_slot is not None
            p, t, _ = self._slot_arrays(self.index_slot)
            ok = ~np.isnan(t)
            p, t = p[ok], t[ok]
            if spec.index.type == "last_event":
                acc = np.full(n_int, -np.inf)
                np.maximum.at(acc, p, t)
                acc[np.isinf(acc)] = np.nan
            else:
                acc = np.full(n_int, np.inf)
                np.minimum.at(acc, p, t)
                acc[np.isinf(acc)] = np.nan
            index = np.floor(acc) + spec.index.offset_days  # the index *day* (windows count days)
        in_cohort = has_patient & ~np.isnan(index)
        report.excluded_no_index = int((has_patient & np.isnan(index)).sum())
        order = sorted((self.keys[i], int(i)) for i in np.flatnonzero(in_cohort))
        n = len(order)
        report.patients = n
        if min_rows is not None and n < min_rows:
            raise CohortTooSmallError(n, min_rows)
        row_of = np.full(n_int, -1, dtype=np.int64)
        for r, (_, i) in enumerate(order):
            row_of[i] = r
        idx_rows = index[[i for _, i in order]] if n else np.zeros(0)
        columns: list[np.ndarray] = []
        names: list[str] = []
        for f in spec.features:
            for name, col in self._feature_columns(f, row_of, idx_rows, n, [i for _, i in order]):
                names.append(name)
                columns.append(col)
        X = np.column_stack(columns).astype(np.float32) if columns else np.zeros((n, 0), np.float32)
        if X.shape[0] != n:  # column_stack of zero-length columns
            X = X.reshape(n, len(names))
        y: np.ndarray | None = None
        label_name: str | None = None
        if spec.label is not None and self.label_slot is not None:
            label_name = spec.label.name
            cnt = self._window_count(self.label_slot, row_of, idx_rows, n, spec.label.window)
            y = (cnt > 0).astype(np.float32)
            report.matched_rows[label_name] = len(self._slot_arrays(self.label_slot)[0])
        for name, slot in self.feature_slots.items():
            report.matched_rows[name] = len(self._slot_arrays(slot)[0])
        report.warnings = feature_warnings(X, y, names) + release_warnings(
            spec.views, spec.fhir_version, self.quality.fhir_versions.values()
        )
        nonmissing = (~np.isnan(X)).sum(axis=0) if n else np.zeros(len(names), dtype=np.int64)
        counts = {name: int(nonmissing[j]) for j, name in enumerate(names)}
        missingness = {name: (1.0 - counts[name] / n) if n else 1.0 for name in names}
        return FeatureMatrix(
            X=X,
            y=y,
            feature_names=names,
            patient_keys=[k for k, _ in order],
            counts=counts,
            missingness=missingness,
            report=report,
            label_name=label_name,
        )

    def _slot_arrays(self, slot: _Slot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(patient index, time, value) of the slot's rows, values in the slot's unit.

        Computed once per slot (unit problems are counted once).
        """
        cached = self._arrays.get(id(slot))
        if cached is None:
            cached = self._arrays[id(slot)] = self._compute_slot_arrays(slot)
        return cached

    def _compute_slot_arrays(self, slot: _Slot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if slot.kind == "category":
            return (
                np.asarray(slot.p, dtype=np.int64),
                np.asarray(slot.t, dtype=np.float64),
                np.asarray(slot.v, dtype=np.float64),
            )
        h: _EventsHandler = slot.owner
        table = h.table()
        codes = table[:, 4]
        if slot.code_ids is None:
            mask = np.ones(len(table), dtype=bool)
        else:
            mask = np.isin(codes, np.fromiter(slot.code_ids, dtype=np.float64))
        if slot.kind != "value":
            return table[mask, 0].astype(np.int64), table[mask, 1], np.ones(int(mask.sum()))
        values = table[:, 2]
        mask &= ~np.isnan(values)
        if slot.target_unit is not None:
            values = values.copy()
            units = table[:, 3].astype(np.int64)
            for uid in np.unique(units[mask]).tolist():
                sel = mask & (units == uid)
                name = h.unit_names[uid] if uid >= 0 else None
                aff = (
                    self.normalizer.affine(name, slot.target_unit, slot.analyte)
                    if isinstance(name, str)
                    else None
                )
                if aff is None:
                    bad = int(sel.sum())
                    rtype, rid = h.unit_first[uid] if uid >= 0 else (None, None)
                    self.quality.add(
                        UNKNOWN_UNIT,
                        resource_type=rtype,
                        resource_id=rid,
                        path="value.unit",
                        message=(
                            f"unit {str(name)[:40]!r} not convertible to {slot.target_unit!r}"
                            f" ({slot.name}): {bad} row(s)"
                        ),
                    )
                    if bad > 1:
                        self.quality.count(UNKNOWN_UNIT, bad - 1)
                    mask &= ~sel
                elif aff != (1.0, 0.0):
                    values[sel] = aff[0] * values[sel] + aff[1]
                    self.report.converted_values += int(sel.sum())
        return table[mask, 0].astype(np.int64), table[mask, 1], values[mask]

    def _windowed(
        self, slot: _Slot, row_of: np.ndarray, idx_rows: np.ndarray, window: Window
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p, t, v = self._slot_arrays(slot)
        if p.size == 0:
            return p, t, v
        r = row_of[p]
        keep = r >= 0
        r, t, v = r[keep], t[keep], v[keep]
        # whole days: an event at 09:00 on the index day is day 0, inside ``to: 0``
        rel = np.floor(t) - np.floor(idx_rows[r])
        mask = np.ones(r.size, dtype=bool)
        if window.start is not None:
            mask &= rel >= window.start
        if window.end is not None:
            mask &= rel <= window.end
        if window.start is not None or window.end is not None:
            self._count_undated(slot, int(np.isnan(t).sum()))
        return r[mask], t[mask], v[mask]

    def _count_undated(self, slot: _Slot, n: int) -> None:
        """Rows without any date cannot be placed in a bounded window: counted, once per slot."""
        if n and id(slot) not in self._undated_counted:
            self._undated_counted.add(id(slot))
            self.quality.add(
                NO_EVENT_TIME,
                path=f"feature:{slot.name}",
                message=f"{n} row(s) without a date left out of the window of {slot.name}",
            )
            if n > 1:
                self.quality.count(NO_EVENT_TIME, n - 1)

    def _window_count(
        self, slot: _Slot, row_of: np.ndarray, idx_rows: np.ndarray, n: int, window: Window
    ) -> np.ndarray:
        r, _, _ = self._windowed(slot, row_of, idx_rows, window)
        return np.bincount(r, minlength=n).astype(np.float64)

    def _feature_columns(
        self, f: FeatureDef, row_of: np.ndarray, idx_rows: np.ndarray, n: int, internal: list[int]
    ) -> list[tuple[str, np.ndarray]]:
        if f.type == "age":
            birth = np.array([_none_nan(self.birth.get(i)) for i in internal], dtype=np.float64)
            age = (idx_rows - birth) / DAYS_PER_YEAR
            stated = np.array([self.stated_age.get(i, _NAN) for i in internal], dtype=np.float64)
            return [(f.name, np.where(np.isnan(age), stated, age))]
        if f.type == "one_hot" and f.attribute == "sex":
            vals = [self.sex.get(i) for i in internal]
            out = []
            for cat in f.categories:
                col = np.array(
                    [_NAN if v is None else float(v == cat) for v in vals], dtype=np.float64
                )
                out.append((f"{f.name}={cat}", col))
            return out
        slot = self.feature_slots[f.name]
        r, t, v = self._windowed(slot, row_of, idx_rows, f.window)
        if f.type == "one_hot":
            latest = _latest(r, t, v, n)
            out = []
            for j, cat in enumerate(f.categories):
                col = np.where(np.isnan(latest), np.nan, (latest == j).astype(np.float64))
                out.append((f"{f.name}={cat}", col))
            return out
        agg = f.aggregation
        if agg == "count":
            return [(f.name, np.bincount(r, minlength=n).astype(np.float64))]
        if agg == "exists":
            return [(f.name, (np.bincount(r, minlength=n) > 0).astype(np.float64))]
        if agg == "latest":
            return [(f.name, _latest(r, t, v, n))]
        if agg == "first":
            return [(f.name, _first(r, t, v, n))]
        cnt = np.bincount(r, minlength=n).astype(np.float64)
        if agg == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                col = np.bincount(r, weights=v, minlength=n) / cnt
            col[cnt == 0] = np.nan
            return [(f.name, col)]
        if agg == "min":
            acc = np.full(n, np.inf)
            np.minimum.at(acc, r, v)
        else:
            acc = np.full(n, -np.inf)
            np.maximum.at(acc, r, v)
        acc[cnt == 0] = np.nan
        return [(f.name, acc)]


def _none_nan(x: float | None) -> float:
    return _NAN if x is None else x


def _latest(r: np.ndarray, t: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Per row, the value at the greatest time (ties: the greatest value)."""
    out = np.full(n, np.nan)
    ok = ~np.isnan(t)
    r, t, v = r[ok], t[ok], v[ok]
    if r.size:
        order = np.lexsort((v, t, r))
        rs = r[order]
        last = np.r_[rs[1:] != rs[:-1], True]
        out[rs[last]] = v[order][last]
    return out


def _first(r: np.ndarray, t: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Per row, the value at the smallest time (ties: the smallest value)."""
    out = np.full(n, np.nan)
    ok = ~np.isnan(t)
    r, t, v = r[ok], t[ok], v[ok]
    if r.size:
        order = np.lexsort((v, t, r))
        rs = r[order]
        first = np.r_[True, rs[1:] != rs[:-1]]
        out[rs[first]] = v[order][first]
    return out


def extract_features(
    spec: FeatureSpec,
    stream: ResourceStream | Iterable[dict[str, Any]] | str | Path,
    opt_out: OptOutRegistry | None = None,
    min_rows: int | None = None,
    validate: str = "off",
    *,
    concept_maps: Iterable[Mapping[str, Any]] = (),
    fhir_version: str | None = None,
) -> FeatureMatrix:
    """Compute the spec's per-patient features from a stream (one pass).

    ``stream`` is a :class:`ResourceStream` (its validation mode and report
    are used as they are; so is any iterable with a ``report`` attribute
    holding a :class:`QualityReport`), a path, or any iterable of resource dicts (wrapped
    in a ResourceStream with ``validate``, limited to the resource types the
    spec's views read: validating a Claim no view reads cannot change a
    feature, and validation is the expensive part). ``opt_out`` removes registered
    patients before anything is computed; ``min_rows`` refuses a small cohort
    with :class:`CohortTooSmallError`. ``concept_maps`` adds site-local
    ConceptMaps to the ones the spec pins.
    """
    rs: Any
    if isinstance(stream, ResourceStream) or isinstance(
        getattr(stream, "report", None), QualityReport
    ):
        rs = stream  # already checked (e.g. a ResourceStream behind a progress wrapper)
    else:
        source: Any = stream
        rs = ResourceStream(
            [source],
            validate=validate,
            fhir_version=fhir_version or spec.fhir_version,
            validate_types=spec.resource_types(),
        )
    quality: QualityReport = rs.report
    report = ExtractionReport(
        spec_hash=spec.canonical_hash(), quality=quality, spec_fhir_version=spec.fhir_version
    )
    extractor = _Extractor(spec, OptOutFilter(opt_out), report, concept_maps)
    extractor.consume(rs)
    return extractor.finish(min_rows)
