"""A synthetic, multi-site FHIR R4 cohort with a known risk model.

Why: demos, tests and the federated benchmark need data whose answer is
known, that is predictable but not trivial (a centralized XGBoost reaches an
AUC of about 0.75–0.9), and whose sites differ the way real hospitals do:

* age mix (a paediatric-leaning site, a geriatric one),
* prevalence (a per-site intercept shift),
* units: glucose in mg/dL or mmol/L, HbA1c in % (NGSP) or mmol/mol (IFCC),
* coding: some sites use local lab codes that only a ConceptMap links to
  LOINC (the maps are in :func:`synthetic_spec`, pinned by its hash).

Everything is drawn from ``numpy.random.default_rng`` seeded by
``(seed, site)``: the same call gives the same resources, byte for byte,
on every machine. Patients are FHIR R4 ``Patient``; measurements
``Observation`` (LOINC; the blood pressure as a panel with components, as
Synthea and most EHRs write it); diagnoses ``Condition`` (SNOMED CT).

The risk model (log-odds of type 2 diabetes within three years of the
index date) is non-linear on purpose: a threshold on HbA1c, a hinge on BMI,
an age x blood-pressure interaction, a smoking effect, plus Gaussian noise::

    z = -3.1 + shift + 1.6*[hba1c >= 6.0] + 1.0*(hba1c-5.5) + 0.12*max(bmi-30, 0)
        + 0.035*(age-50) + 0.9*[sbp >= 140 and age >= 55] + 0.45*[smoker] + N(0, 0.6)
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

INDEX_DATE = "2024-01-01"

# (local system, {concept: local code}); dialect 0 is plain LOINC.
DIALECTS: tuple[tuple[str, dict[str, str]] | None, ...] = (
    None,
    ("http://lab.north.example.org/codes", {"glucose": "GLU-B", "hba1c": "HBA1C", "bmi": "BMI"}),
    (
        "http://lab.south.example.org/codes",
        {"glucose": "L-0101", "hba1c": "L-0203", "bmi": "V-0007"},
    ),
    ("http://lab.east.example.org/codes", {"glucose": "gluc", "hba1c": "a1c-ifcc", "bmi": "bmi"}),
)

# a local dialect fixes its units (its codes mean one LOINC concept each)
DIALECT_UNITS: dict[int, tuple[str, str]] = {
    1: ("mmol/L", "mmol/mol"),
    2: ("mg/dL", "%"),
    3: ("mmol/L", "%"),
}

# concept -> (LOINC code in the site's unit, display)
_LOINC = {
    ("glucose", "mg/dL"): ("2339-0", "Glucose [Mass/volume] in Blood"),
    ("glucose", "mmol/L"): ("15074-8", "Glucose [Moles/volume] in Blood"),
    ("hba1c", "%"): ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
    ("hba1c", "mmol/mol"): ("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol"),
    ("bmi", "kg/m2"): ("39156-5", "Body mass index (BMI) [Ratio]"),
}
NOISE_SD = 0.6
SMOKING = {"never": "266919005", "former": "8517006", "current": "77176002"}
DIABETES = "44054006"
HYPERTENSION = "38341003"


@dataclass(frozen=True)
class SiteProfile:
    """How one site differs from the others."""

    name: str
    age_mean: float
    age_sd: float
    prevalence_shift: float
    glucose_unit: str  # "mg/dL" | "mmol/L"
    hba1c_unit: str  # "%" | "mmol/mol"
    dialect: int  # index into DIALECTS


@dataclass(frozen=True)
class CohortConfig:
    """Size and seed of a cohort; sites get unequal shares (non-IID sizes too)."""

    n_patients: int = 1000
    n_sites: int = 3
    seed: int = 0

    def profiles(self) -> list[SiteProfile]:
        return site_profiles(self.n_sites)

    def site_sizes(self) -> list[int]:
        rng = np.random.default_rng([self.seed, 7919])
        w = rng.dirichlet(np.full(self.n_sites, 4.0))
        sizes = np.floor(w * self.n_patients).astype(int)
        sizes[: self.n_patients - int(sizes.sum())] += 1
        return [int(s) for s in sizes]


def site_profiles(n_sites: int) -> list[SiteProfile]:
    """Deterministic site profiles: site k cycles through ages, units and dialects."""
    ages = [(52.0, 15.0), (38.0, 14.0), (64.0, 12.0), (47.0, 18.0), (58.0, 16.0)]
    shifts = [0.0, -0.5, 0.45, 0.2, -0.25]
    glucose_units = ["mg/dL", "mmol/L", "mg/dL", "mmol/L"]
    hba1c_units = ["%", "mmol/mol", "%", "%", "mmol/mol"]
    out = []
    for k in range(n_sites):
        mean, sd = ages[k % len(ages)]
        dialect = k % len(DIALECTS)
        g_unit, a_unit = DIALECT_UNITS.get(
            dialect, (glucose_units[k % len(glucose_units)], hba1c_units[k % len(hba1c_units)])
        )
        out.append(
            SiteProfile(
                name=f"site-{k}",
                age_mean=mean,
                age_sd=sd,
                prevalence_shift=shifts[k % len(shifts)],
                glucose_unit=g_unit,
                hba1c_unit=a_unit,
                dialect=dialect,
            )
        )
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class SitePopulation:
    """The latent truth of one site (arrays of length n), before FHIR encoding."""

    ids: list[str]
    age: np.ndarray
    female: np.ndarray
    bmi: np.ndarray
    sbp: np.ndarray
    dbp: np.ndarray
    glucose: np.ndarray  # mg/dL
    hba1c: np.ndarray  # %
    smoking: np.ndarray  # 0 never, 1 former, 2 current
    risk: np.ndarray  # probability
    label: np.ndarray  # 0/1
    has_hba1c: np.ndarray
    has_glucose: np.ndarray
    n_visits: np.ndarray


def site_population(config: CohortConfig, site: int) -> SitePopulation:
    """Draw one site's patients and outcomes (vectorised)."""
    prof = config.profiles()[site]
    n = config.site_sizes()[site]
    rng = np.random.default_rng([config.seed, site, 1])
    age = np.clip(rng.normal(prof.age_mean, prof.age_sd, n), 18, 95)
    female = rng.random(n) < 0.52
    bmi = np.clip(rng.normal(27.0 + 0.04 * (age - 50), 5.0, n), 15, 60)
    sbp = np.clip(rng.normal(118 + 0.45 * (age - 50) + 0.6 * (bmi - 27), 13, n), 85, 220)
    dbp = np.clip(rng.normal(76 + 0.3 * (sbp - 120), 7, n), 45, 130)
    glucose = np.clip(rng.normal(96 + 1.4 * (bmi - 27) + 0.25 * (age - 50), 13, n), 55, 400)
    hba1c = np.clip(
        rng.normal(5.45 + 0.018 * (glucose - 96) + 0.006 * (age - 50), 0.35, n), 4.0, 14.0
    )
    smoking = rng.choice(3, size=n, p=[0.55, 0.27, 0.18])
    z = (
        -3.1
        + prof.prevalence_shift
        + 1.6 * (hba1c >= 6.0)
        + 1.0 * (hba1c - 5.5)
        + 0.12 * np.maximum(bmi - 30, 0)
        + 0.035 * (age - 50)
        + 0.9 * ((sbp >= 140) & (age >= 55))
        + 0.45 * (smoking == 2)
        + rng.normal(0, NOISE_SD, n)
    )
    risk = _sigmoid(z)
    label = (rng.random(n) < risk).astype(np.int8)
    ids = [
        str(uuid.UUID(bytes=bytes(b), version=4))
        for b in rng.integers(0, 256, (n, 16), dtype=np.uint8)
    ]
    return SitePopulation(
        ids=ids,
        age=age,
        female=female,
        bmi=bmi,
        sbp=sbp,
        dbp=dbp,
        glucose=glucose,
        hba1c=hba1c,
        smoking=smoking,
        risk=risk,
        label=label,
        has_hba1c=rng.random(n) < 0.7,
        has_glucose=rng.random(n) < 0.8,
        n_visits=rng.integers(1, 4, n),
    )


def _coding(concept: str, unit: str, dialect: int) -> dict[str, Any]:
    d = DIALECTS[dialect]
    if d is not None and concept in d[1]:
        return {"coding": [{"system": d[0], "code": d[1][concept]}], "text": concept}
    code, display = _LOINC[(concept, unit)]
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


_INDEX_ORD = date.fromisoformat(INDEX_DATE).toordinal()


def _day(offset_days: int) -> str:
    return date.fromordinal(_INDEX_ORD + offset_days).isoformat()


def _obs(
    oid: str, pid: str, code: dict[str, Any], when: str, value: float, unit: str
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": code,
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def site_resources(config: CohortConfig, site: int) -> Iterator[dict[str, Any]]:
    """The site's resources: per patient its Patient, Observations and Conditions."""
    prof = config.profiles()[site]
    pop = site_population(config, site)
    rng = np.random.default_rng([config.seed, site, 2])
    n = len(pop.ids)
    visit_offsets = rng.integers(-1090, -5, (n, 3))
    noise = rng.normal(0, 1, (n, 3, 4))
    onset = rng.integers(10, 1090, n)
    htn = (pop.sbp >= 140) & (rng.random(n) < 0.7)
    g_unit, a_unit, dialect = prof.glucose_unit, prof.hba1c_unit, prof.dialect
    code_bmi = _coding("bmi", "kg/m2", dialect)
    code_glu = _coding("glucose", g_unit, dialect)
    code_a1c = _coding("hba1c", a_unit, dialect)
    bp_code = {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]}
    smoke_code = {
        "coding": [{"system": LOINC, "code": "72166-2", "display": "Tobacco smoking status"}]
    }
    smoke_names = ("never", "former", "current")
    birth_days = np.round(pop.age * 365.2425).astype(int).tolist()
    # plain Python lists: indexing numpy scalars in the loop costs more than building the dicts
    offsets_l, noise_l, onset_l, htn_l = (
        visit_offsets.tolist(),
        noise.tolist(),
        onset.tolist(),
        htn.tolist(),
    )
    female, n_visits = pop.female.tolist(), pop.n_visits.tolist()
    bmi_l, sbp_l, dbp_l = pop.bmi.tolist(), pop.sbp.tolist(), pop.dbp.tolist()
    glu_l, a1c_l, smoking_l = pop.glucose.tolist(), pop.hba1c.tolist(), pop.smoking.tolist()
    has_glu, has_a1c, label_l = pop.has_glucose.tolist(), pop.has_hba1c.tolist(), pop.label.tolist()
    for i in range(n):
        pid = pop.ids[i]
        yield {
            "resourceType": "Patient",
            "id": pid,
            "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/Patient"]},
            "gender": "female" if female[i] else "male",
            "birthDate": _day(-birth_days[i]),
        }
        visits = sorted(offsets_l[i][: n_visits[i]])
        for v, off in enumerate(visits):
            when = _day(off) + "T09:30:00+02:00"
            last = v == len(visits) - 1
            # earlier visits drift; the latest is closest to the truth
            drift = 0.0 if last else 1.0
            eps = noise_l[i][v]
            base = f"{pid[:8]}-{v}"
            bmi = round((bmi_l[i] + drift * 1.2 * eps[0] + 0.4 * eps[1]), 1)
            yield _obs(f"{base}-bmi", pid, code_bmi, when, bmi, "kg/m2")
            sbp = round(sbp_l[i] + drift * 8 * eps[1] + 3 * eps[2])
            dbp = round(dbp_l[i] + drift * 5 * eps[2])
            yield {
                "resourceType": "Observation",
                "id": f"{base}-bp",
                "status": "final",
                "code": bp_code,
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": when,
                "component": [
                    {
                        "code": {
                            "coding": [
                                {
                                    "system": LOINC,
                                    "code": "8480-6",
                                    "display": "Systolic blood pressure",
                                }
                            ]
                        },
                        "valueQuantity": {
                            "value": sbp,
                            "unit": "mm[Hg]",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                    {
                        "code": {
                            "coding": [
                                {
                                    "system": LOINC,
                                    "code": "8462-4",
                                    "display": "Diastolic blood pressure",
                                }
                            ]
                        },
                        "valueQuantity": {
                            "value": dbp,
                            "unit": "mm[Hg]",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                ],
            }
            if last and has_glu[i]:
                g = glu_l[i] + 6 * eps[3]
                g = round(g, 0) if g_unit == "mg/dL" else round(g / 18.016, 1)
                yield _obs(f"{base}-glu", pid, code_glu, when, g, g_unit)
            if last and has_a1c[i]:
                a = a1c_l[i] + 0.15 * eps[0]
                a = round(a, 1) if a_unit == "%" else round(10.929 * (a - 2.15))
                yield _obs(f"{base}-a1c", pid, code_a1c, when, a, a_unit)
            if last:
                s = smoke_names[smoking_l[i]]
                yield {
                    "resourceType": "Observation",
                    "id": f"{base}-smk",
                    "status": "final",
                    "code": smoke_code,
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": when,
                    "valueCodeableConcept": {
                        "coding": [{"system": SNOMED, "code": SMOKING[s]}],
                        "text": s,
                    },
                }
        if htn_l[i]:
            yield _condition(
                f"{pid[:8]}-htn", pid, HYPERTENSION, "Essential hypertension", _day(visits[0])
            )
        if label_l[i]:
            yield _condition(
                f"{pid[:8]}-dm", pid, DIABETES, "Diabetes mellitus type 2", _day(onset_l[i])
            )


def _condition(cid: str, pid: str, code: str, display: str, onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
    }


def concept_maps() -> list[dict[str, Any]]:
    """One R4 ConceptMap per local lab dialect, mapping its codes to LOINC."""
    out = []
    for k, d in enumerate(DIALECTS):
        if d is None:
            continue
        system, codes = d
        units = DIALECT_UNITS[k]
        elements = [
            {
                "code": codes["glucose"],
                "target": [{"code": _LOINC[("glucose", units[0])][0], "equivalence": "equivalent"}],
            },
            {
                "code": codes["hba1c"],
                "target": [{"code": _LOINC[("hba1c", units[1])][0], "equivalence": "equivalent"}],
            },
            {"code": codes["bmi"], "target": [{"code": "39156-5", "equivalence": "equivalent"}]},
        ]
        out.append(
            {
                "resourceType": "ConceptMap",
                "id": f"lab-dialect-{k}",
                "url": f"https://ehds-gateway.example.org/ConceptMap/lab-dialect-{k}",
                "status": "active",
                "group": [{"source": system, "target": LOINC, "element": elements}],
            }
        )
    return out


# ---------------------------------------------------------------- ground truth and spec


def ground_truth(config: CohortConfig, site: int) -> dict[str, tuple[int, float]]:
    """``patient id -> (label, true risk)`` for one site (tests and benchmarks)."""
    pop = site_population(config, site)
    return {pid: (int(pop.label[i]), float(pop.risk[i])) for i, pid in enumerate(pop.ids)}


def _col(name: str, path: str) -> dict[str, str]:
    return {"name": name, "path": path}


def _value_branch(for_each: str | None) -> dict[str, Any]:
    branch: dict[str, Any] = {
        "column": [
            _col("value", "value.ofType(Quantity).value"),
            _col("unit", "value.ofType(Quantity).code"),
            _col("value_code", "value.ofType(CodeableConcept).coding.code.first()"),
        ],
        "select": [
            {"forEach": "code.coding", "column": [_col("system", "system"), _col("code", "code")]}
        ],
    }
    if for_each:
        branch = {"forEach": for_each, **branch}
    return branch


def _codes(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"system": s, "code": c} for s, c in pairs]


def synthetic_spec_document() -> dict[str, Any]:
    """The companion feature specification of the synthetic cohort (a plain dict)."""
    window = {"from": -1095, "to": 0}
    obs = "observation"
    return {
        "specVersion": 1,
        "name": "synthetic-diabetes-risk",
        "version": "1.0.0",
        "description": (
            "Incident type 2 diabetes within three years of 2024-01-01 from age, sex, BMI, blood "
            "pressure, glucose, HbA1c, smoking and hypertension in the three years before; "
            "site-local lab codes mapped to LOINC through the pinned ConceptMaps."
        ),
        "fhirVersion": "R4",
        "views": {
            "patient": {
                "resourceType": "ViewDefinition",
                "name": "patient",
                "status": "active",
                "resource": "Patient",
                "select": [
                    {
                        "column": [
                            _col("id", "getResourceKey()"),
                            _col("birth_date", "birthDate"),
                            _col("gender", "gender"),
                        ]
                    }
                ],
            },
            obs: {
                "resourceType": "ViewDefinition",
                "name": "observation_values",
                "status": "active",
                "resource": "Observation",
                "where": [{"path": "status != 'entered-in-error'"}],
                "select": [
                    {
                        "column": [
                            _col("patient", "subject.getReferenceKey(Patient)"),
                            _col("time", "effective.ofType(dateTime)"),
                        ]
                    },
                    {"unionAll": [_value_branch(None), _value_branch("component")]},
                ],
            },
            "condition": {
                "resourceType": "ViewDefinition",
                "name": "condition_codes",
                "status": "active",
                "resource": "Condition",
                "where": [
                    {
                        "path": "verificationStatus.coding.where(code = 'entered-in-error' or code = 'refuted').empty()"
                    }
                ],
                "select": [
                    {
                        "column": [
                            _col("patient", "subject.getReferenceKey(Patient)"),
                            _col("time", "onset.ofType(dateTime)"),
                        ]
                    },
                    {
                        "forEach": "code.coding",
                        "column": [_col("system", "system"), _col("code", "code")],
                    },
                ],
            },
        },
        "conceptMaps": concept_maps(),
        "recipe": {
            "patients": {
                "view": "patient",
                "key": "id",
                "birthDate": "birth_date",
                "sex": "gender",
            },
            "events": {
                obs: {
                    "view": obs,
                    "patient": "patient",
                    "time": "time",
                    "system": "system",
                    "code": "code",
                    "value": "value",
                    "unit": "unit",
                },
                "condition": {
                    "view": "condition",
                    "patient": "patient",
                    "time": "time",
                    "system": "system",
                    "code": "code",
                },
            },
            "index": {"type": "fixed", "date": INDEX_DATE},
            "features": [
                {"name": "age", "type": "age"},
                {
                    "name": "sex",
                    "type": "one_hot",
                    "attribute": "sex",
                    "categories": ["female", "male"],
                },
                {
                    "name": "bmi",
                    "events": obs,
                    "codes": _codes((LOINC, "39156-5")),
                    "aggregation": "latest",
                    "window": window,
                    "unit": "kg/m2",
                },
                {
                    "name": "systolic_bp",
                    "events": obs,
                    "codes": _codes((LOINC, "8480-6")),
                    "aggregation": "latest",
                    "window": window,
                    "unit": "mm[Hg]",
                },
                {
                    "name": "systolic_bp_mean",
                    "events": obs,
                    "codes": _codes((LOINC, "8480-6")),
                    "aggregation": "mean",
                    "window": window,
                    "unit": "mm[Hg]",
                },
                {
                    "name": "bp_measurements",
                    "events": obs,
                    "codes": _codes((LOINC, "8480-6")),
                    "aggregation": "count",
                    "window": window,
                },
                {
                    "name": "glucose",
                    "events": obs,
                    "codes": _codes((LOINC, "2339-0"), (LOINC, "15074-8")),
                    "aggregation": "latest",
                    "window": window,
                    "unit": "mg/dL",
                    "analyte": "glucose",
                },
                {
                    "name": "hba1c",
                    "events": obs,
                    "codes": _codes((LOINC, "4548-4"), (LOINC, "59261-8")),
                    "aggregation": "latest",
                    "window": window,
                    "unit": "%",
                    "analyte": "hba1c",
                },
                {
                    "name": "smoking",
                    "type": "one_hot",
                    "events": obs,
                    "codes": _codes((LOINC, "72166-2")),
                    "column": "value_code",
                    "categories": [SMOKING["never"], SMOKING["former"], SMOKING["current"]],
                    "window": window,
                },
                {
                    "name": "hypertension",
                    "events": "condition",
                    "codes": _codes((SNOMED, HYPERTENSION)),
                    "aggregation": "exists",
                    "window": {"from": None, "to": 0},
                },
            ],
            "label": {
                "name": "incident_t2d_3y",
                "events": "condition",
                "codes": _codes((SNOMED, DIABETES)),
                "window": {"from": 0, "to": 1095},
            },
        },
    }


def synthetic_spec() -> Any:
    """The companion :class:`~fhir_adapters.features.FeatureSpec` (same as docs/examples/synthetic.spec.json)."""
    from fhir_adapters.features.spec import FeatureSpec

    return FeatureSpec.from_dict(synthetic_spec_document())


# ---------------------------------------------------------------- writers


def write_ndjson(config: CohortConfig, out_dir: str | Path, *, gz: bool = False) -> list[Path]:
    """Bulk-Data-style output: ``out_dir/site-k/{Patient,Observation,Condition,ConceptMap}.ndjson``.

    Returns the site folders. Streams: memory stays bounded by one patient.
    """
    import gzip

    root = Path(out_dir)
    folders = []
    for site, prof in enumerate(config.profiles()):
        folder = root / prof.name
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".ndjson.gz" if gz else ".ndjson"
        handles: dict[str, Any] = {}
        try:
            for rtype in ("Patient", "Observation", "Condition"):
                path = folder / f"{rtype}{suffix}"
                handles[rtype] = gzip.open(path, "wb", compresslevel=1) if gz else path.open("wb")  # noqa: SIM115 - closed in finally
            dumps = orjson.dumps
            for resource in site_resources(config, site):
                handles[resource["resourceType"]].write(dumps(resource) + b"\n")
        finally:
            for h in handles.values():
                h.close()
        d = DIALECTS[prof.dialect]
        if d is not None:
            cmap = next(c for c in concept_maps() if c["group"][0]["source"] == d[0])
            (folder / f"ConceptMap{suffix}").write_bytes(
                gzip.compress(orjson.dumps(cmap) + b"\n") if gz else orjson.dumps(cmap) + b"\n"
            )
        folders.append(folder)
    return folders


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle with ``urn:uuid`` fullUrls and references, as Synthea writes them."""
    urn = {
        f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, r['resourceType'] + '/' + r['id'])}"
        for r in resources
    }
    entries = []
    for r in resources:
        r = dict(r)
        subject = r.get("subject")
        if isinstance(subject, dict) and subject.get("reference") in urn:
            r["subject"] = {"reference": urn[subject["reference"]]}
        entries.append(
            {
                "fullUrl": urn[f"{r['resourceType']}/{r['id']}"],
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def write_bundles(
    config: CohortConfig, out_dir: str | Path, *, patients_per_bundle: int = 1
) -> list[Path]:
    """Transaction Bundles per site (``out_dir/site-k/bundle-NNNNNN.json``); returns the site folders."""
    root = Path(out_dir)
    folders = []
    for site, prof in enumerate(config.profiles()):
        folder = root / prof.name
        folder.mkdir(parents=True, exist_ok=True)
        batch: list[dict[str, Any]] = []
        patients = 0
        count = 0

        def flush(items: list[dict[str, Any]], number: int, where: Path = folder) -> None:
            (where / f"bundle-{number:06d}.json").write_bytes(orjson.dumps(_bundle(items)))

        for resource in site_resources(config, site):
            if resource["resourceType"] == "Patient":
                if patients and patients % patients_per_bundle == 0:
                    flush(batch, count)
                    count += 1
                    batch = []
                patients += 1
            batch.append(resource)
        if batch:
            flush(batch, count)
        folders.append(folder)
    return folders


def expected_prevalence(config: CohortConfig) -> float:
    """Overall label rate of a cohort (for sanity checks)."""
    total = 0
    pos = 0
    for site in range(config.n_sites):
        pop = site_population(config, site)
        total += len(pop.ids)
        pos += int(pop.label.sum())
    return pos / total if total else math.nan
