"""Test and demo support for :mod:`fhir_adapters`: not part of the product's data path.

``fhir_test_server`` is a FHIR R4 server on loopback (search, Bulk ``$export``, SMART
backend auth) used by tests, benchmarks and ``ehds demo``; ``synthetic`` writes
reproducible synthetic cohorts and the feature spec that goes with them.
"""
