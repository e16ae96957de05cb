"""FHIR data in, training features out — computed locally at the data holder.

Owns FHIR sources (files, Bundles, NDJSON, FHIR search, Bulk Data ``$export``,
SMART Backend Services auth), R4/R5 detection, validation and quarantine,
SQL-on-FHIR v2 ViewDefinitions with their FHIRPath compiler, the declarative
feature specification and its canonical hash, opt-out exclusion and the
synthetic cohort generator.

May import: nothing else of ours. The opt-out registry is consumed through a
protocol declared here.
"""
