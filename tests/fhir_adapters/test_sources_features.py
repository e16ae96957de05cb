"""The synthetic cohort exported through ``$export`` gives the same feature matrix as its files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fhir_adapters.features import FeatureMatrix, extract_features
from fhir_adapters.sources import (
    BulkExporter,
    ExportRequest,
    FhirClient,
    RetryPolicy,
    read_export_dir,
)
from fhir_adapters.testing.fhir_test_server import ExportBehaviour, FhirTestServer, ServerConfig
from fhir_adapters.testing.synthetic import CohortConfig, synthetic_spec, write_ndjson


def _by_patient(m: FeatureMatrix) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    order = np.argsort(np.array(m.patient_keys))
    y = m.y[order] if m.y is not None else None
    return [m.patient_keys[i] for i in order], m.X[order], y


def _same(a: FeatureMatrix, b: FeatureMatrix) -> None:
    assert a.feature_names == b.feature_names
    assert a.spec_hash == b.spec_hash
    ka, xa, ya = _by_patient(a)
    kb, xb, yb = _by_patient(b)
    assert ka == kb
    np.testing.assert_array_equal(xa, xb)  # NaN == NaN here, bit-exact otherwise
    assert ya is not None and yb is not None
    np.testing.assert_array_equal(ya, yb)


async def test_same_matrix_through_export_as_from_files(tmp_path: Path) -> None:
    site = write_ndjson(CohortConfig(n_patients=160, n_sites=2, seed=11), tmp_path / "files")[1]
    spec = synthetic_spec()
    direct = extract_features(spec, site)
    assert direct.n_rows > 20

    # Small files, gzip on the wire, one transient failure: the client must not change a value.
    behaviour = ExportBehaviour(
        resources_per_file=97, download_failures=[503], polls_before_ready=2
    )
    fast = RetryPolicy(backoff_base=0.001, backoff_cap=0.01)
    async with (
        FhirTestServer(ServerConfig(ndjson_dir=site, export=behaviour)) as srv,
        FhirClient(srv.base_url, retry=fast) as client,
    ):
        result = await BulkExporter(client, concurrency=3).run(ExportRequest(), tmp_path / "export")
        streamed = [r async for r in BulkExporter(client).stream(ExportRequest())]
    assert result.bad_lines == 0

    # The export directory as `ehds features --data DIR` reads it, and as a resource stream.
    from_dir = extract_features(spec, tmp_path / "export")
    from_stream = extract_features(spec, read_export_dir(tmp_path / "export"))
    from_http = extract_features(spec, streamed)
    for matrix in (from_dir, from_stream, from_http):
        _same(direct, matrix)
    assert from_dir.report.quality.problems == direct.report.quality.problems == 0
