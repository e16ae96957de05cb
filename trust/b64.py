"""Strict base64url (RFC 7515 §2): no padding, no stray bits, one encoding per byte string.

Why strict: signed bytes and Merkle leaves are compared as bytes, so a token
must have exactly one textual form. A decoder that also accepts padding, the
standard alphabet or non-zero unused low bits lets two different strings mean
the same signature (and one parser see what another refuses).
"""

from __future__ import annotations

import base64
import binascii
import re

from trust.errors import MalformedError, NotCanonicalError

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_VALUE = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode canonical unpadded base64url; anything else raises :class:`MalformedError`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedError("base64url is not ASCII") from None
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedError("malformed base64url")
    try:
        out = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedError("malformed base64url") from None
    tail = len(text) % 4  # the unused low bits of the last character must be zero
    if tail and _VALUE[text[-1]] & (0x0F if tail == 2 else 0x03):
        raise NotCanonicalError("non-canonical base64url")
    return out


__all__ = ["b64url_decode", "b64url_encode"]
