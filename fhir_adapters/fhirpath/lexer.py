"""FHIRPath tokenizer.

A hand-written scanner over the expression string: FHIRPath expressions in
ViewDefinitions are short, so clarity beats a generated lexer. Every error
carries the character offset so a ViewDefinition author can find the mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from fhir_adapters.errors import FhirPathSyntaxError


class Tok(Enum):
    """Token kinds."""

    IDENT = "ident"  # plain or `delimited` identifier (keywords are idents too)
    STRING = "string"
    NUMBER = "number"
    DATETIME = "datetime"  # @2020-01-01, @2020-01-01T10:00
    TIME = "time"  # @T10:00
    CONST = "const"  # %name or %`name` or %'name'
    SPECIAL = "special"  # $this, $index, $total
    OP = "op"
    EOF = "eof"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its decoded text and where it started."""

    kind: Tok
    text: str
    pos: int
    delimited: bool = False  # identifier written with backticks (never a keyword)


_OPS2 = ("<=", ">=", "!=", "!~")
_OPS1 = ".,()[]{}+-*/&|<>=~"

_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DATETIME = re.compile(
    r"@(\d{4}(-\d{2}(-\d{2})?)?)"
    r"(T(\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?(Z|[+-]\d{2}:\d{2})?)?"
)
_TIME = re.compile(r"@T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?")

_ESCAPES = {
    "'": "'",
    '"': '"',
    "`": "`",
    "\\": "\\",
    "/": "/",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _read_quoted(src: str, start: int, quote: str) -> tuple[str, int]:
    """Decode a quoted string/identifier starting at ``start`` (on the quote)."""
    out: list[str] = []
    i = start + 1
    n = len(src)
    while i < n:
        c = src[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            e = src[i + 1]
            if e == "u":
                hexdigits = src[i + 2 : i + 6]
                if len(hexdigits) != 4 or not all(h in "0123456789abcdefABCDEF" for h in hexdigits):
                    raise FhirPathSyntaxError(f"bad unicode escape at offset {i}")
                out.append(chr(int(hexdigits, 16)))
                i += 6
                continue
            if e not in _ESCAPES:
                raise FhirPathSyntaxError(f"bad escape '\\{e}' at offset {i}")
            out.append(_ESCAPES[e])
            i += 2
            continue
        out.append(c)
        i += 1
    raise FhirPathSyntaxError(f"unterminated {quote}-quoted text starting at offset {start}")


def tokenize(src: str) -> list[Token]:
    """Split ``src`` into tokens, ending with one ``EOF`` token."""
    if not isinstance(src, str):
        raise FhirPathSyntaxError("FHIRPath expression must be a string")
    toks: list[Token] = []
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise FhirPathSyntaxError(f"unterminated comment at offset {i}")
            i = j + 2
            continue
        if c == "'":
            text, j = _read_quoted(src, i, "'")
            toks.append(Token(Tok.STRING, text, i))
            i = j
            continue
        if c == "`":
            text, j = _read_quoted(src, i, "`")
            toks.append(Token(Tok.IDENT, text, i, delimited=True))
            i = j
            continue
        if "0" <= c <= "9":
            m = _NUMBER.match(src, i)
            assert m is not None
            toks.append(Token(Tok.NUMBER, m.group(0), i))
            i = m.end()
            continue
        if c.isascii() and (c.isalpha() or c == "_"):
            m = _IDENT.match(src, i)
            assert m is not None
            toks.append(Token(Tok.IDENT, m.group(0), i))
            i = m.end()
            continue
        if c == "@":
            m = _TIME.match(src, i)
            if m is not None:
                toks.append(Token(Tok.TIME, m.group(0)[2:], i))
                i = m.end()
                continue
            m = _DATETIME.match(src, i)
            if m is None:
                raise FhirPathSyntaxError(f"bad date/time literal at offset {i}")
            toks.append(Token(Tok.DATETIME, m.group(0)[1:], i))
            i = m.end()
            continue
        if c == "%":
            if i + 1 < n and src[i + 1] in "`'":
                text, j = _read_quoted(src, i + 1, src[i + 1])
            else:
                m = _IDENT.match(src, i + 1)
                if m is None:
                    raise FhirPathSyntaxError(f"bad external constant at offset {i}")
                text, j = m.group(0), m.end()
            toks.append(Token(Tok.CONST, text, i))
            i = j
            continue
        if c == "$":
            m = _IDENT.match(src, i + 1)
            if m is None or m.group(0) not in ("this", "index", "total"):
                raise FhirPathSyntaxError(f"unknown special variable at offset {i}")
            toks.append(Token(Tok.SPECIAL, m.group(0), i))
            i = m.end()
            continue
        two = src[i : i + 2]
        if two in _OPS2:
            toks.append(Token(Tok.OP, two, i))
            i += 2
            continue
        if c in _OPS1:
            toks.append(Token(Tok.OP, c, i))
            i += 1
            continue
        raise FhirPathSyntaxError(f"unexpected character {c!r} at offset {i}")
    toks.append(Token(Tok.EOF, "", n))
    return toks
