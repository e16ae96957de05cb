"""Pull FHIR from servers: search paging, Bulk Data ``$export``, SMART Backend Services.

Everything here is async (aiohttp) and streams: search pages and export files
are turned into a *resource stream* (``AsyncIterator[dict]``, or
``Iterator[dict]`` through :func:`iterate_sync`) or NDJSON files on disk in the
Bulk Data layout, never a whole export in memory.

Entry points:

- :class:`FhirClient` - one server, retries, auth, the CapabilityStatement once.
- :func:`search` - ``GET [base]/[type]?...`` following ``Bundle.link[next]``.
- :class:`BulkExporter` - kick-off, poll, download, delete, resume.
- :class:`SmartBackendAuth` - ``client_credentials`` + ``private_key_jwt``;
  (``trust.generate_client_key`` / ``trust.client_jwks`` make its key and the JWKS to register).
- :func:`parse_retry_after` - every ``Retry-After`` form real servers send.
"""

from fhir_adapters.sources.bulk_export import (
    BulkExporter,
    ExportProgress,
    ExportRequest,
    ExportResult,
    read_export_dir,
)
from fhir_adapters.sources.capability import ServerCapability, parse_capability
from fhir_adapters.sources.http import FhirClient, RetryPolicy
from fhir_adapters.sources.outcome import summarize_outcome
from fhir_adapters.sources.retry_after import parse_retry_after
from fhir_adapters.sources.search import search, search_pages
from fhir_adapters.sources.smart_auth import SmartBackendAuth, discover_smart_configuration
from fhir_adapters.sources.sync import iterate_sync

__all__ = [
    "BulkExporter",
    "ExportProgress",
    "ExportRequest",
    "ExportResult",
    "FhirClient",
    "RetryPolicy",
    "ServerCapability",
    "SmartBackendAuth",
    "discover_smart_configuration",
    "iterate_sync",
    "parse_capability",
    "parse_retry_after",
    "read_export_dir",
    "search",
    "search_pages",
    "summarize_outcome",
]
