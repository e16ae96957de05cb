"""Test, bench and demo support for :mod:`federation`: not used on a production path.

``devpermit`` builds a signed permit world for local runs, ``synthetic`` makes
risk cohorts, ``stock`` wraps Flower's stock XGBoost strategy for comparison,
and ``inprocess`` drives ServerApp/ClientApp in one process for protocol tests.
"""
