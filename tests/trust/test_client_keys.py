"""Client-authentication keys (RS384/ES384) live in trust but never become signing keys."""

from __future__ import annotations

import pytest

from trust import (
    TrustKeyError,
    alg_for,
    client_jwks,
    client_key_alg,
    generate_client_key,
    generate_jwk,
)


@pytest.mark.parametrize(("alg", "kty", "crv"), [("RS384", "RSA", None), ("ES384", "EC", "P-384")])
def test_generated_client_key_and_its_jwks(alg: str, kty: str, crv: str | None) -> None:
    key = generate_client_key(alg)
    assert key.has_private and key.get("kty") == kty and key.get("crv") == crv
    assert key.get("kid") == key.thumbprint() and key.get("alg") == alg
    [public] = client_jwks([key])["keys"]
    assert public["kid"] == key.thumbprint() and public["alg"] == alg and public["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(public)
    assert client_key_alg(key) == alg
    with pytest.raises(TrustKeyError):  # the project's signers and verifiers refuse it
        alg_for(key)


def test_other_keys_are_not_client_keys() -> None:
    with pytest.raises(TrustKeyError):
        client_key_alg(generate_jwk("ES256"))
    with pytest.raises(TrustKeyError):
        generate_client_key("RS256")
