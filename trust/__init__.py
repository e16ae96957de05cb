"""The bottom trust layer: keys, JWS, canonical JSON, identifiers and the error base.

Every package may import ``trust``; ``trust`` imports nothing of ours. It holds
what all organisations must agree on byte for byte, once:

* keys (:mod:`trust.keys`): Ed25519/ES256 JWKs, RFC 7638 ``kid``, the
  algorithm pinned per key, and a declared :class:`KeyUse` per key that every
  verifier requires (``permit``, ``status``, ``audit``, ``request``, ``witness``);
* JWS (:mod:`trust.jws`): compact and general JSON serialization, strict
  headers, every signature checked on its own;
* strict base64url (:mod:`trust.b64`) and canonical JSON per RFC 8785 with the
  one spec hash permits pin (:mod:`trust.canonical`);
* identifiers, codes, hashes (:mod:`trust.identifiers`);
* :class:`TrustError`, the base every package's error base subclasses.

    from trust import KeyUse, SigningKey, sign_compact, verify_compact

    key = SigningKey.generate(uses={KeyUse.AUDIT})
    token = sign_compact(b"{}", key, "ehds-x+jws", use=KeyUse.AUDIT)
    verify_compact(token, typ="ehds-x+jws", use=KeyUse.AUDIT, lookup=lambda sig: key.public)
"""

from trust.b64 import b64url_decode, b64url_encode
from trust.canonical import (
    canonical_hash,
    canonical_json,
    parse_canonical,
    sha256_tag,
    spec_hash,
    strict_json,
)
from trust.client_keys import (
    CLIENT_KEY_ALGS,
    client_jwks,
    client_key_alg,
    generate_client_key,
)
from trust.errors import (
    AlgorithmError,
    HeaderError,
    IdentifierError,
    KeyUseError,
    MalformedError,
    NotCanonicalError,
    SignatureError,
    TrustError,
    TrustKeyError,
    UnknownKeyError,
)
from trust.identifiers import (
    CODE_PATTERN,
    HASH_PATTERN,
    IDENTIFIER_PATTERN,
    KID_PATTERN,
    is_code,
    is_hash,
    is_identifier,
    is_kid,
    require_identifier,
)
from trust.jws import (
    Jws,
    JwsSignature,
    add_signature,
    check_header,
    parse_compact,
    parse_jws,
    sign_compact,
    sign_general,
    verify_compact,
    verify_jws,
    verify_signature,
)
from trust.keys import (
    ALGORITHMS,
    ALL_USES,
    ALLOWED_ALGS,
    PRIVATE_MEMBERS,
    KeyUse,
    PublicKey,
    SigningKey,
    alg_for,
    generate_jwk,
    load_jwk,
    parse_uses,
    public_jwk,
    public_members,
    signing_key,
    thumbprint,
)

__all__ = [
    "ALGORITHMS",
    "ALLOWED_ALGS",
    "ALL_USES",
    "CLIENT_KEY_ALGS",
    "CODE_PATTERN",
    "HASH_PATTERN",
    "IDENTIFIER_PATTERN",
    "KID_PATTERN",
    "PRIVATE_MEMBERS",
    "AlgorithmError",
    "HeaderError",
    "IdentifierError",
    "Jws",
    "JwsSignature",
    "KeyUse",
    "KeyUseError",
    "MalformedError",
    "NotCanonicalError",
    "PublicKey",
    "SignatureError",
    "SigningKey",
    "TrustError",
    "TrustKeyError",
    "UnknownKeyError",
    "add_signature",
    "alg_for",
    "b64url_decode",
    "b64url_encode",
    "canonical_hash",
    "canonical_json",
    "check_header",
    "client_jwks",
    "client_key_alg",
    "generate_client_key",
    "generate_jwk",
    "is_code",
    "is_hash",
    "is_identifier",
    "is_kid",
    "load_jwk",
    "parse_canonical",
    "parse_compact",
    "parse_jws",
    "parse_uses",
    "public_jwk",
    "public_members",
    "require_identifier",
    "sha256_tag",
    "sign_compact",
    "sign_general",
    "signing_key",
    "spec_hash",
    "strict_json",
    "thumbprint",
    "verify_compact",
    "verify_jws",
    "verify_signature",
]
