"""Federated XGBoost on Flower, bound to an EHDS data permit.

Owns the Flower ServerApp/ClientApp, bagging and cyclic XGBoost strategies,
model hygiene (stripping per-node statistics, sending only new trees), the
model card and model release, and the simulation/deployment engines.

May import: ``audit_chain``, ``permits``, ``fhir_adapters``.
"""
