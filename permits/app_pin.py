"""The permit's authorised app against the app a data holder is asked to run.

A gateway that serves Flower deployment runs observes, for each run, the digest
of the app bundle the SuperNode received, the ClientApp reference it names and
the version of the gateway's own installed ClientApp (the only code it runs).
:func:`check_app` compares that observation with ``processing.app`` of a
verified permit; :class:`~permits.guard.PermitGuard` calls it before the
requester's proof is consumed, so a refused run uses no nonce and no rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from permits.errors import VerificationError
from permits.model import Permit
from permits.reasons import ReasonCode


@dataclass(frozen=True)
class AppObservation:
    """What the data holder sees of the run it is asked to serve (hashes and names only)."""

    digest: str
    clientapp: str
    clientapp_version: str


def check_app(permit: Permit, observed: AppObservation) -> None:
    """Raise the first mismatch between the permit's authorised app and the observed one."""
    pinned = permit.processing.app
    if pinned is None:
        raise VerificationError(ReasonCode.APP_NOT_PINNED, "the permit names no app")
    if observed.clientapp != pinned.clientapp:
        raise VerificationError(
            ReasonCode.APP_REFERENCE_MISMATCH, "the app names another ClientApp"
        )
    if observed.digest != pinned.digest:
        raise VerificationError(ReasonCode.APP_DIGEST_MISMATCH, "the app is not the authorised one")
    if observed.clientapp_version != pinned.clientapp_version:
        raise VerificationError(
            ReasonCode.CLIENTAPP_VERSION_MISMATCH,
            "the gateway's ClientApp is not the version the permit expects",
        )


__all__ = ["AppObservation", "check_app"]
