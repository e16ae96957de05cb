"""Client-authentication keys (SMART Backend Services): generate one, publish its JWKS.

SMART App Launch 2.2.0 requires servers to accept RS384 and ES384 client
assertions, and most accept nothing else, so those are the two made here:
RSA 3072 for RS384, EC P-384 for ES384. ``kid`` is the RFC 7638 thumbprint,
the same value :class:`~fhir_adapters.sources.smart_auth.SmartBackendAuth`
puts in its assertion header, so the JWKS a hospital registers with its FHIR
server matches what the gateway signs with.

These keys only *authenticate this gateway to a FHIR server*; they are not
signing keys of the project. They are kept apart from :mod:`trust.keys` on
purpose: its ``ALGORITHMS`` (EdDSA, ES256) stay the only ones any verifier of
permits, audit entries or requests accepts, so an RSA key can never sign one.
"""

from __future__ import annotations

from typing import Any

from jwcrypto import jwk

from trust.errors import TrustKeyError

#: SMART App Launch 2.2.0: servers must support these two for ``private_key_jwt``.
CLIENT_KEY_ALGS = ("RS384", "ES384")
RSA_BITS = 3072


def generate_client_key(alg: str) -> jwk.JWK:
    """A new private key for ``alg`` (RS384 or ES384) with ``kid`` and ``alg`` set."""
    if alg == "RS384":
        key = jwk.JWK.generate(kty="RSA", size=RSA_BITS)
    elif alg == "ES384":
        key = jwk.JWK.generate(kty="EC", crv="P-384")
    else:
        raise TrustKeyError(f"client keys are RS384 or ES384, not {alg[:16]!r}")
    data = key.export_private(as_dict=True)
    data.update(kid=key.thumbprint(), alg=alg)
    return jwk.JWK(**data)


def client_key_alg(key: jwk.JWK) -> str:
    """RS384 for RSA, ES384 for EC P-384 (public or private); anything else is refused."""
    kty, crv = key.get("kty"), key.get("crv")
    if kty == "RSA":
        return "RS384"
    if kty == "EC" and crv == "P-384":
        return "ES384"
    raise TrustKeyError(f"not a client key (RSA or EC P-384): {kty}/{crv}")


def client_jwks(keys: list[jwk.JWK]) -> dict[str, Any]:
    """The public JWKS to register with the FHIR server's authorization service."""
    out: list[dict[str, Any]] = []
    for key in keys:
        public: dict[str, Any] = dict(key.export_public(as_dict=True))
        public.update(kid=key.thumbprint(), alg=client_key_alg(key), use="sig", key_ops=["verify"])
        out.append(public)
    return {"keys": out}


__all__ = ["CLIENT_KEY_ALGS", "client_jwks", "client_key_alg", "generate_client_key"]
