"""Pull FHIR from servers: search paging, Bulk Data ``$export``, SMART Backend Services.

Everything here is async (aiohttp) and streams: search pages and export files
are turned into a *resource stream* (``AsyncIterator[dict]``, or
``Iterator[dict]`` through :func:`iterate_sync`) or NDJSON files on disk in the
Bulk Data layout, never a whole export in memory.

Entry points:

- :class:`FhirClient` - one server, retries, auth, the CapabilityStatement once.
- :func:`search` - ``GET [base]/[type]?...`` following ``Bundle.link[next]``.
- :class:`BulkExporter` - kick-off, poll, download, delete, resume.
- :class:`SmartBackendAuth` - ``client_credentials`` + ``private_key_jwt``.
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
    "read_export_dir",
    "search",
    "search_pages",
    "summarize_outcome",
]
