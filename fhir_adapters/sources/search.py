"""FHIR search: ``GET [base]/[type]?...`` following ``Bundle.link[next]`` to the end.

Yields resources one page at a time, so memory is one page, whatever the
result size. Next links are followed only on the base URL's origin (a next
link elsewhere would receive our token) and a next link seen twice stops the
search with an error instead of looping forever. ``search.mode = outcome``
entries (warnings the server attaches) are counted, not yielded.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_adapters.errors import FhirProtocolError, FhirSourceError
from fhir_adapters.sources.http import FhirClient, origin_of

RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


@dataclass
class SearchStats:
    pages: int = 0
    resources: int = 0
    outcomes: int = 0
    total: int | None = None


def _params(
    params: Mapping[str, str] | Sequence[tuple[str, str]], count: int | None
) -> list[tuple[str, str]]:
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    if count is not None:
        if count < 1:
            raise FhirSourceError("_count must be at least 1", code="FHIR_BAD_ARGUMENT")
        items = [(k, v) for k, v in items if k != "_count"] + [("_count", str(count))]
    return items


def next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, Mapping) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None


async def search_pages(
    client: FhirClient,
    resource_type: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    *,
    count: int | None = None,
    max_pages: int | None = None,
    stats: SearchStats | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield each searchset Bundle, from the first page to the last ``next``."""
    if not RESOURCE_TYPE.match(resource_type):
        raise FhirSourceError(
            f"not a FHIR resource type: {resource_type[:64]!r}", code="FHIR_BAD_ARGUMENT"
        )
    stats = stats if stats is not None else SearchStats()
    url: str | None = client.url(resource_type)
    query: list[tuple[str, str]] | None = _params(params, count)
    seen: set[str] = set()
    while url is not None:
        if max_pages is not None and stats.pages >= max_pages:
            return
        page_no = stats.pages + 1
        bundle = await client.get_json(
            url, params=query, what=f"search {resource_type} page {page_no}"
        )
        query = None  # next links carry their own query
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise FhirProtocolError(f"search {resource_type} page {page_no}: not a Bundle")
        if bundle.get("type") not in ("searchset", None):
            raise FhirProtocolError(
                f"search {resource_type} page {page_no}: Bundle.type is {bundle.get('type')!r}, "
                "expected 'searchset'"
            )
        stats.pages += 1
        if stats.total is None and isinstance(bundle.get("total"), int):
            stats.total = bundle["total"]
        yield bundle
        nxt = next_link(bundle)
        if nxt is None:
            return
        nxt = client.rebase(nxt)
        if not client.is_trusted(nxt):
            raise FhirProtocolError(
                f"search {resource_type} page {page_no}: next link points to another origin "
                f"({origin_of(nxt)}); refusing to follow it (behind a reverse proxy? "
                "see --rebase-links)"
            )
        if nxt in seen:
            raise FhirProtocolError(
                f"search {resource_type} page {page_no}: next link repeats an earlier page"
            )
        seen.add(nxt)
        url = nxt


async def search(
    client: FhirClient,
    resource_type: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    *,
    count: int | None = None,
    limit: int | None = None,
    stats: SearchStats | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The resource stream of a search: every matching (and ``_include``-d) resource.

    ``limit`` stops after that many resources (no further pages are fetched).
    """
    stats = stats if stats is not None else SearchStats()
    async for bundle in search_pages(client, resource_type, params, count=count, stats=stats):
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise FhirProtocolError(f"search {resource_type}: Bundle.entry is not a list")
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            resource = entry.get("resource")
            mode = (
                entry.get("search", {}).get("mode")
                if isinstance(entry.get("search"), Mapping)
                else None
            )
            if not isinstance(resource, dict):
                continue
            if mode == "outcome" or resource.get("resourceType") == "OperationOutcome":
                stats.outcomes += 1
                continue
            if limit is not None and stats.resources >= limit:
                return
            stats.resources += 1
            yield resource
        if limit is not None and stats.resources >= limit:
            return
