"""The EHDS data permit, as a typed model; the JSON Schema is generated from it.

No official machine-readable permit exists yet (the templates come by implementing
act, Art. 70 of Regulation (EU) 2025/327), so this model *is* the format. Each
field's description names the article it serves; ``docs/permit.schema.json`` is
generated from these models and a test keeps them identical.

Everything is frozen and ``extra="forbid"``: an unknown member in a signed
permit is a malformed permit, not something to ignore.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from permits.errors import PermitModelError
from permits.purposes import PurposeCode
from trust import (
    HASH_PATTERN,
    KID_PATTERN,
    TrustError,
    canonical_json,
    sha256_tag,
    spec_hash,
    strict_json,
)
from trust import IDENTIFIER_PATTERN as ID_PATTERN

COUNTRY_PATTERN = r"^[A-Z]{2}$"

#: Art. 68(12): a permit is valid for at most ten years (leap days included).
MAX_VALIDITY_SECONDS = 3653 * 24 * 3600
PROFILE: Literal["ehds-permit/1"] = "ehds-permit/1"

Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
Thumbprint = Annotated[
    str,
    Field(
        pattern=KID_PATTERN,
        description="RFC 7638 JWK thumbprint (SHA-256, base64url) of the person's public key.",
    ),
]
Sha256 = Annotated[str, Field(pattern=HASH_PATTERN)]
NumericDate = Annotated[
    int, Field(ge=0, le=253402300799, description="Seconds since the epoch (UTC).")
]
Strategy = Literal["bagging", "cyclic"]
Operation = Literal["train", "evaluate"]
Output = Literal["model", "aggregate_metrics"]


class FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Issuer(FrozenModel):
    """The issuing health data access body."""

    id: Identifier = Field(
        description="Identifier of the HDAB (Art. 55); also the key owner in trust lists."
    )
    country: str = Field(
        pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2 Member State of the HDAB."
    )


class HolderOfPermit(FrozenModel):
    """The data user organisation the permit is granted to (Art. 68(10)(d))."""

    id: Identifier = Field(description="Identifier of the data user organisation.")
    name: str = Field(
        min_length=1, max_length=200, description="Legal name of the organisation (not a person)."
    )
    country: str = Field(pattern=COUNTRY_PATTERN, description="Country of establishment.")
    sector: Literal["public", "private"] = Field(
        description="Public sector bodies alone may use Art. 53(1)(a)-(c) purposes (Art. 53(2))."
    )
    kid: Thumbprint = Field(
        description="Thumbprint of the organisation's request-signing key (Art. 68(10)(d))."
    )


class AuthorisedPerson(FrozenModel):
    """A person allowed to access the data in the SPE (Art. 68(10)(d), Art. 73(1)).

    Identified by a pseudonymous identifier and bound to a key thumbprint; the
    name stays in the HDAB's own records, not in the token the data holders see.
    """

    id: Identifier = Field(description="Pseudonymous identifier of the authorised person.")
    role: str | None = Field(
        default=None, pattern=r"^[a-z0-9_.-]{1,64}$", description="Role code, e.g. 'analyst'."
    )
    kid: Thumbprint


class Purpose(FrozenModel):
    """What the data may be used for (Art. 53(1)); Art. 54 uses are refused at issue time."""

    codes: list[PurposeCode] = Field(
        min_length=1,
        description="Art. 53(1) points, e.g. 'e.ii' (training and evaluation of AI systems).",
    )
    description: str = Field(
        min_length=1, max_length=4000, description="The research question (Art. 67(2))."
    )
    declared_uses: list[Annotated[str, Field(pattern=r"^[a-z0-9_.-]{1,64}$")]] = Field(
        default_factory=list,
        description="Use codes declared by the applicant; any Art. 54 use means refusal.",
    )


class TimeRange(FrozenModel):
    start: date = Field(description="First day of records in scope (inclusive).")
    end: date = Field(description="Last day of records in scope (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end < self.start:
            raise ValueError("time_range.end is before time_range.start")
        return self


class DataGrant(FrozenModel):
    """What one data holder may compute and release (Art. 66, Art. 68(10)(a))."""

    holder: Identifier = Field(description="Identifier of the data holder (its gateway's site id).")
    datasets: list[Identifier] = Field(
        min_length=1, description="Dataset identifiers in the holder's catalogue."
    )
    feature_spec_hash: Sha256 = Field(
        description="Canonical hash of the only feature specification the gateway may compute."
    )
    time_range: TimeRange
    form: Literal["anonymised", "pseudonymised"] = Field(
        description="Anonymised unless the purpose needs pseudonymised data (Art. 66(2)-(3))."
    )

    def pins_spec(self, document: Mapping[str, Any]) -> bool:
        """Whether ``document`` is the feature specification this grant pins.

        The hash is :func:`trust.spec_hash` (RFC 8785), the same function
        ``fhir_adapters`` and ``federation`` use, so all three agree.
        """
        try:
            return spec_hash(document) == self.feature_spec_hash
        except TrustError:
            return False


class FederatedXGBoost(FrozenModel):
    """Bounds for federated gradient-boosted trees; ``min_rows_per_leaf`` is a disclosure floor."""

    strategies: list[Strategy] = Field(min_length=1, description="Allowed federated strategies.")
    max_rounds: int = Field(
        ge=1, le=100_000, description="Boosting rounds in total over the permit's life."
    )
    max_depth: int = Field(ge=1, le=32, description="Maximum tree depth.")
    min_rows_per_site: int = Field(ge=1, description="A site with fewer rows takes no part.")
    min_rows_per_leaf: int = Field(
        ge=5, description="Disclosure floor: XGBoost min_child_weight must be at least this (>= 5)."
    )
    outputs: list[Output] = Field(min_length=1, description="What may leave the SPE (Art. 73(2)).")


class Processing(FrozenModel):
    """Allowed operations and their bounds (Art. 68(10)(b), Art. 73)."""

    operations: list[Operation] = Field(min_length=1, description="Operations a gateway may run.")
    federated_xgboost: FederatedXGBoost


class OptOutTerms(FrozenModel):
    """Whether the Art. 71 opt-out applies, or the Art. 71(4) exception (Art. 68(10)(c))."""

    applied: bool = Field(
        description="True: opted-out persons are excluded before any feature is computed."
    )
    exception: Literal["art71.4"] | None = Field(
        default=None, description="Only when applied is false."
    )
    justification: str | None = Field(
        default=None, max_length=4000, description="Required with the exception."
    )

    @model_validator(mode="after")
    def _consistent(self) -> OptOutTerms:
        if self.applied and (self.exception or self.justification):
            raise ValueError("opt_out: exception/justification given although opt-out is applied")
        if not self.applied and not (self.exception and self.justification):
            raise ValueError(
                "opt_out: not applied requires exception 'art71.4' and a justification"
            )
        return self


class Spe(FrozenModel):
    """The secure processing environment (Art. 73); here always federated."""

    id: Identifier
    mode: Literal["federated"] = "federated"


class Fees(FrozenModel):
    """Fees charged for the permit (Art. 62)."""

    amount_minor: int = Field(ge=0, description="Amount in minor units (cents).")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")


class CrossBorder(FrozenModel):
    """A multi-country permit: the lead HDAB and every co-issuer sign (Art. 67(3), 68(5))."""

    lead: Identifier = Field(description="The lead HDAB, equal to iss.id.")
    co_issuers: list[Identifier] = Field(
        min_length=1, description="Every other HDAB that must co-sign."
    )


class PermitBody(FrozenModel):
    """The fields an applicant proposes and the HDAB may change before issuing."""

    holder_of_permit: HolderOfPermit
    authorised_persons: list[AuthorisedPerson] = Field(default_factory=list)
    purpose: Purpose
    data: list[DataGrant] = Field(min_length=1, description="Per data holder (Art. 68(10)(a)).")
    processing: Processing
    opt_out: OptOutTerms
    spe: Spe
    cross_border: CrossBorder | None = None

    @model_validator(mode="after")
    def _unique(self) -> PermitBody:
        holders = [g.holder for g in self.data]
        if len(set(holders)) != len(holders):
            raise ValueError("data: a data holder is listed twice")
        kids = [self.holder_of_permit.kid, *(p.kid for p in self.authorised_persons)]
        if len(set(kids)) != len(kids):
            raise ValueError("a key thumbprint is bound to more than one party")
        if self.cross_border is not None:
            co = self.cross_border.co_issuers
            if len(set(co)) != len(co) or self.cross_border.lead in co:
                raise ValueError("cross_border: co_issuers must be distinct and exclude the lead")
        return self


class PermitApplication(PermitBody):
    """A data access application (Art. 67): the permit body plus the requested duration."""

    duration_days: int = Field(
        ge=1, le=3652, description="Requested validity, at most 10 years (Art. 68(12))."
    )


class Permit(PermitBody):
    """A data permit (Art. 68) as signed by the HDAB(s)."""

    profile: Literal["ehds-permit/1"] = Field(
        default=PROFILE, description="Format and version of this model."
    )
    jti: Identifier = Field(
        description="Permit identifier; stable across amendments (Art. 68(13))."
    )
    iss: Issuer
    iat: NumericDate = Field(description="Time of signing.")
    nbf: NumericDate = Field(description="Start of validity.")
    exp: NumericDate = Field(
        description="End of validity, at most 10 years after nbf (Art. 68(12))."
    )
    version: int = Field(
        ge=1, description="Amendment number, 1 for the original permit (Art. 68(13))."
    )
    supersedes: Sha256 | None = Field(
        default=None,
        description="permit_hash of the version this one amends; only when version > 1.",
    )
    fees: Fees | None = None
    conditions: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=list, description="Further conditions of the HDAB (Art. 68(10))."
    )

    @model_validator(mode="after")
    def _permit_rules(self) -> Permit:
        if self.exp <= self.nbf:
            raise ValueError("exp must be after nbf")
        if self.exp - self.nbf > MAX_VALIDITY_SECONDS:
            raise ValueError("validity exceeds 10 years (Art. 68(12))")
        if (self.version > 1) != (self.supersedes is not None):
            raise ValueError("supersedes is required exactly when version > 1")
        if self.cross_border is not None and self.cross_border.lead != self.iss.id:
            raise ValueError("cross_border.lead must equal iss.id")
        return self

    # -- helpers used by the guard ------------------------------------------------
    def grant_for(self, holder: str) -> DataGrant | None:
        return next((g for g in self.data if g.holder == holder), None)

    def requester_kids(self) -> frozenset[str]:
        """Key thumbprints allowed to sign access requests."""
        return frozenset([self.holder_of_permit.kid, *(p.kid for p in self.authorised_persons)])

    def required_issuers(self) -> frozenset[str]:
        """HDABs whose signatures must all be present."""
        if self.cross_border is None:
            return frozenset([self.iss.id])
        return frozenset([self.iss.id, *self.cross_border.co_issuers])

    def payload(self) -> bytes:
        """The exact bytes that are signed."""
        return canonical_json(self.model_dump(mode="json", exclude_none=True))

    def permit_hash(self) -> str:
        return sha256_tag(self.payload())


# ---------------------------------------------------------------------------- helpers
def parse_permit(payload: bytes) -> Permit:
    """Strictly parse a signed payload into a :class:`Permit` (no type coercion)."""
    try:
        strict_json(payload)
        return Permit.model_validate_json(payload, strict=True)
    except (ValueError, ValidationError) as exc:
        raise PermitModelError(f"permit payload invalid: {_summary(exc)}") from None


def _summary(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_input=False, include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        return f"{exc.error_count()} error(s), first at {loc or '<root>'}: {first['msg']}"
    return str(exc)


def permit_json_schema() -> dict[str, Any]:
    """The JSON Schema of the signed payload, as published in docs/permit.schema.json."""
    schema = Permit.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://ehds-gateway.example/schemas/permit/1",
        **schema,
    }


def schema_text() -> str:
    """docs/permit.schema.json exactly (regenerate: ``python -c "from permits.model import schema_text;
    print(schema_text(), end='')" > docs/permit.schema.json``)."""
    return json.dumps(permit_json_schema(), indent=2, sort_keys=True) + "\n"


__all__ = [
    "HASH_PATTERN",
    "ID_PATTERN",
    "KID_PATTERN",
    "MAX_VALIDITY_SECONDS",
    "AuthorisedPerson",
    "CrossBorder",
    "DataGrant",
    "FederatedXGBoost",
    "Fees",
    "HolderOfPermit",
    "Issuer",
    "Operation",
    "OptOutTerms",
    "Output",
    "Permit",
    "PermitApplication",
    "PermitBody",
    "Processing",
    "Purpose",
    "Spe",
    "Strategy",
    "TimeRange",
    "parse_permit",
    "permit_json_schema",
    "schema_text",
]
