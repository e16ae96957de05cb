"""Permit-side use of :mod:`trust` JWS: HDAB keys by trust list, refusals as reason codes.

The JWS rules themselves (strict parsing, header policy, pinned algorithms,
declared key uses, every signature checked) live in :mod:`trust.jws`. This
module only binds them to the :class:`~permits.trust_list.TrustList` and turns
each :class:`trust.TrustError` into the guard's typed :class:`ReasonCode`, so a
decision names the check that failed (``alg_none``, ``embedded_key``,
``signature_invalid``, ``key_use_not_allowed``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from jwcrypto import jwk

import trust
from permits.errors import VerificationError
from permits.reasons import ReasonCode
from permits.trust_list import TrustedKey, TrustList
from trust import KeyUse

REASONS: dict[str, ReasonCode] = {
    "TRUST_ALG_NONE": ReasonCode.ALG_NONE,
    "TRUST_ALG_SYMMETRIC": ReasonCode.ALG_SYMMETRIC,
    "TRUST_ALG_NOT_ALLOWED": ReasonCode.ALG_NOT_ALLOWED,
    "TRUST_ALG_MISMATCH": ReasonCode.ALG_MISMATCH,
    "TRUST_EMBEDDED_KEY": ReasonCode.EMBEDDED_KEY,
    "TRUST_CRIT": ReasonCode.CRIT_UNSUPPORTED,
    "TRUST_TYP_MISMATCH": ReasonCode.TYPE_MISMATCH,
    "TRUST_UNPROTECTED_HEADER": ReasonCode.UNPROTECTED_HEADER,
    "TRUST_KID_MISSING": ReasonCode.KID_UNKNOWN,
    "TRUST_UNKNOWN_KEY": ReasonCode.KID_UNKNOWN,
    "TRUST_KEY_USE": ReasonCode.KEY_USE_NOT_ALLOWED,
    "TRUST_BAD_SIGNATURE": ReasonCode.SIGNATURE_INVALID,
}
"""trust error code -> reason; anything else (encoding, shape) is ``token_malformed``."""


def as_verification_error(exc: trust.TrustError) -> VerificationError:
    if isinstance(exc, VerificationError):
        return exc
    return VerificationError(REASONS.get(exc.code, ReasonCode.TOKEN_MALFORMED), str(exc))


@contextmanager
def reasons() -> Iterator[None]:
    """Re-raise :mod:`trust` refusals inside the block as :class:`VerificationError`."""
    try:
        yield
    except VerificationError:
        raise
    except trust.TrustError as exc:
        raise as_verification_error(exc) from None


def hdab_lookup(trust_list: TrustList) -> Callable[[trust.JwsSignature], trust.PublicKey]:
    """Key lookup over the trust list; an unknown ``kid`` is ``kid_unknown``."""

    def lookup(sig: trust.JwsSignature) -> trust.PublicKey:
        entry = trust_list.get(sig.kid or "")
        if entry is None:
            raise VerificationError(ReasonCode.KID_UNKNOWN, "kid not in the trust list")
        return entry.public

    return lookup


def verify_hdab_token(
    token: str | bytes, trust_list: TrustList, *, typ: str, use: KeyUse
) -> tuple[trust.Jws, tuple[TrustedKey, ...]]:
    """Parse and verify every signature of an HDAB-signed token; return the signers."""
    with reasons():
        parsed = trust.parse_jws(token)
        signed = trust.verify_jws(parsed, typ=typ, use=use, lookup=hdab_lookup(trust_list))
    signers = tuple(trust_list.get(key.kid) for _, key in signed)
    return parsed, tuple(s for s in signers if s is not None)


def hdab_signing_keys(
    keys: Iterable[jwk.JWK | trust.SigningKey], use: KeyUse
) -> list[trust.SigningKey]:
    """Signing keys from jwcrypto JWKs (the HDAB's configuration) declared for ``use``."""
    try:
        return [trust.signing_key(k, uses={use}) for k in keys]
    except trust.TrustError as exc:
        raise VerificationError(ReasonCode.INTERNAL_ERROR, f"unusable signing key: {exc}") from None


def sign_compact(payload: bytes, key: jwk.JWK | trust.SigningKey, typ: str, use: KeyUse) -> str:
    (signer,) = hdab_signing_keys([key], use)
    return trust.sign_compact(payload, signer, typ, use=use)


def sign_general(
    payload: bytes, keys: Sequence[jwk.JWK | trust.SigningKey], typ: str, use: KeyUse
) -> str:
    return trust.sign_general(payload, hdab_signing_keys(keys, use), typ, use=use)


__all__ = [
    "REASONS",
    "as_verification_error",
    "hdab_lookup",
    "hdab_signing_keys",
    "reasons",
    "sign_compact",
    "sign_general",
    "verify_hdab_token",
]
