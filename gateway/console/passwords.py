"""Staff passwords: argon2id (memory-hard) via argon2-cffi, never stored or logged in clear.

Verifying an unknown login still runs one argon2 verification against a fixed dummy
hash, so the time a refusal takes does not tell whether the account exists.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 1024

# RFC 9106's second recommended option (64 MiB, 3 passes), argon2id.
_HASHER = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, type=Type.ID)
_DUMMY = _HASHER.hash("not-a-password-of-anyone")


class WeakPasswordError(ValueError):
    code = "STAFF_WEAK_PASSWORD"


def check_strength(password: str) -> None:
    """Length is what counts (NIST SP 800-63B): at least 12 characters, at most 1024."""
    if len(password) < MIN_LENGTH:
        raise WeakPasswordError(f"a staff password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPasswordError(f"a staff password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_strength(password)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``; ``None`` (no such account) is always False."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored if stored is not None else _DUMMY, password) and (
            stored is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def is_argon2id(stored: str) -> bool:
    return stored.startswith("$argon2id$")


__all__ = ["MIN_LENGTH", "WeakPasswordError", "check_strength", "hash_password", "verify_password"]
