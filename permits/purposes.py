"""Purposes of secondary use (Art. 53(1)), prohibited uses (Art. 54) and who may ask.

Pure data and pure functions: the HDAB runs :func:`purpose_violations` on every
application at decision *and* issue time, so a prohibited use can never reach a
signed permit, even if an operator tries to approve it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class PurposeCode(StrEnum):
    """Art. 53(1) points; ``e.i``/``e.ii`` are the two named sub-points of (e)."""

    PUBLIC_HEALTH = "a"  # public interest in public and occupational health
    POLICY = "b"  # policy-making and regulatory activities of public sector bodies
    STATISTICS = "c"  # official statistics (Reg. (EC) No 223/2009)
    EDUCATION = "d"  # education or teaching at vocational or higher level
    RESEARCH = "e"  # scientific research related to health or care sectors
    RESEARCH_INNOVATION = "e.i"  # development and innovation of products or services
    RESEARCH_AI = "e.ii"  # training, testing and evaluating algorithms incl. AI systems
    CARE_IMPROVEMENT = "f"  # improvement of delivery of care and treatment optimisation


PURPOSE_TITLES: dict[PurposeCode, str] = {
    PurposeCode.PUBLIC_HEALTH: "Public interest in the area of public and occupational health",
    PurposeCode.POLICY: "Policy-making and regulatory activities (public sector)",
    PurposeCode.STATISTICS: "Official statistics related to the health or care sectors",
    PurposeCode.EDUCATION: "Education or teaching in health or care sectors",
    PurposeCode.RESEARCH: "Scientific research related to health or care sectors",
    PurposeCode.RESEARCH_INNOVATION: "Research: development and innovation of products or services",
    PurposeCode.RESEARCH_AI: "Research: training, testing and evaluating algorithms, incl. AI systems",
    PurposeCode.CARE_IMPROVEMENT: "Improvement of the delivery of care and treatment optimisation",
}

#: Art. 53(2): points (a)-(c) are reserved for public sector bodies and Union institutions.
PUBLIC_SECTOR_ONLY: frozenset[PurposeCode] = frozenset(
    {PurposeCode.PUBLIC_HEALTH, PurposeCode.POLICY, PurposeCode.STATISTICS}
)


class ProhibitedUse(StrEnum):
    """Art. 54 points (a)-(e): never permitted, whatever the purpose code."""

    DETRIMENTAL_DECISIONS = "art54.a"
    DISCRIMINATION_INSURANCE_EMPLOYMENT = "art54.b"
    ADVERTISING_MARKETING = "art54.c"
    HARMFUL_PRODUCTS = "art54.d"
    UNETHICAL_ACTIVITIES = "art54.e"


#: Declared-use codes an applicant may write that fall under Art. 54.
PROHIBITED_USE_ALIASES: dict[str, ProhibitedUse] = {
    "detrimental_decisions": ProhibitedUse.DETRIMENTAL_DECISIONS,
    "individual_decisions": ProhibitedUse.DETRIMENTAL_DECISIONS,
    "insurance_pricing": ProhibitedUse.DISCRIMINATION_INSURANCE_EMPLOYMENT,
    "insurance_exclusion": ProhibitedUse.DISCRIMINATION_INSURANCE_EMPLOYMENT,
    "credit_scoring": ProhibitedUse.DISCRIMINATION_INSURANCE_EMPLOYMENT,
    "employment_decisions": ProhibitedUse.DISCRIMINATION_INSURANCE_EMPLOYMENT,
    "advertising": ProhibitedUse.ADVERTISING_MARKETING,
    "marketing": ProhibitedUse.ADVERTISING_MARKETING,
    "harmful_products": ProhibitedUse.HARMFUL_PRODUCTS,
    "addictive_products": ProhibitedUse.HARMFUL_PRODUCTS,
    "weapons": ProhibitedUse.HARMFUL_PRODUCTS,
    "unethical_activities": ProhibitedUse.UNETHICAL_ACTIVITIES,
}
for _use in ProhibitedUse:
    PROHIBITED_USE_ALIASES[_use.value] = _use


def prohibited_uses(declared: Iterable[str]) -> list[ProhibitedUse]:
    """The Art. 54 points hit by a list of declared-use codes (case-insensitive)."""
    hits = {
        PROHIBITED_USE_ALIASES[u.strip().lower()]
        for u in declared
        if u.strip().lower() in PROHIBITED_USE_ALIASES
    }
    return sorted(hits)


def purpose_violations(
    codes: Iterable[PurposeCode], declared_uses: Iterable[str], *, public_sector: bool
) -> list[str]:
    """Reason codes why these purposes cannot be permitted, empty if they can.

    ``prohibited_use`` (Art. 54) and ``public_sector_only`` (Art. 53(2)); the
    list is deterministic so the refusal recorded in the register is stable.
    """
    reasons: list[str] = []
    if prohibited_uses(declared_uses):
        reasons.append("prohibited_use")
    if not public_sector and any(PurposeCode(c) in PUBLIC_SECTOR_ONLY for c in codes):
        reasons.append("public_sector_only")
    return reasons


__all__ = [
    "PROHIBITED_USE_ALIASES",
    "PUBLIC_SECTOR_ONLY",
    "PURPOSE_TITLES",
    "ProhibitedUse",
    "PurposeCode",
    "prohibited_uses",
    "purpose_violations",
]
