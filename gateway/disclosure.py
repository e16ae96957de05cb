"""Small-count suppression for everything a gateway returns about its data.

Pure functions. A count strictly between 0 and the floor is withheld, and so
is its complement within the same total (otherwise ``total - shown`` gives the
withheld count back). The floor is at least 5, the permit model's minimum.
"""

from __future__ import annotations

from collections.abc import Mapping


def is_small(n: int, floor: int) -> bool:
    return 0 < n < floor


def suppress_pair(a: int, b: int, floor: int) -> tuple[int | None, int | None]:
    """Two counts that add up to a known total: both shown, or both withheld."""
    if is_small(a, floor) or is_small(b, floor):
        return None, None
    return a, b


def suppress_counts(
    counts: Mapping[str, int], floor: int
) -> tuple[dict[str, int | None], list[str]]:
    """Independent counts: each withheld on its own when small. Returns (shown, withheld names)."""
    shown: dict[str, int | None] = {}
    withheld: list[str] = []
    for name, n in counts.items():
        if is_small(n, floor):
            shown[name] = None
            withheld.append(name)
        else:
            shown[name] = n
    return shown, withheld


__all__ = ["is_small", "suppress_counts", "suppress_pair"]
