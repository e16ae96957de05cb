"""Feature specification and extraction: FHIR resources in, a float32 matrix out.

``FeatureSpec.from_file(path)`` reads and checks a specification,
``spec.canonical_hash()`` is what a permit pins, and
``extract_features(spec, stream, opt_out=..., min_rows=...)`` returns a
:class:`FeatureMatrix`. See ``docs/features.md``.
"""

from fhir_adapters.features.extract import extract_features
from fhir_adapters.features.matrix import ExtractionReport, FeatureMatrix
from fhir_adapters.features.spec import (
    AGGREGATIONS,
    SPEC_VERSION,
    FeatureDef,
    FeatureSpec,
    canonical_json,
)

__all__ = [
    "AGGREGATIONS",
    "SPEC_VERSION",
    "ExtractionReport",
    "FeatureDef",
    "FeatureMatrix",
    "FeatureSpec",
    "canonical_json",
    "extract_features",
]
