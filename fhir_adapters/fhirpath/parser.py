"""FHIRPath parser: tokens to AST by precedence climbing.

Precedence, highest first (FHIRPath N1 §"Operator precedence"):
``.`` ``[]`` > unary ``+ -`` > ``* / div mod`` > ``+ - &`` > ``is as`` > ``|``
> ``< > <= >=`` > ``= ~ != !~`` > ``in contains`` > ``and`` > ``xor or`` > ``implies``.
"""

from __future__ import annotations

from decimal import Decimal

from fhir_adapters.errors import FhirPathSyntaxError
from fhir_adapters.fhirpath.ast import (
    Binary,
    Call,
    Const,
    Ident,
    Index,
    Literal,
    Member,
    Node,
    Special,
    TypeOp,
    TypeSpec,
    Unary,
)
from fhir_adapters.fhirpath.lexer import Tok, Token, tokenize
from fhir_adapters.fhirpath.values import Quantity, Temporal

# binding power of infix operators (higher binds tighter)
_INFIX: dict[str, int] = {
    "implies": 1,
    "or": 2,
    "xor": 2,
    "and": 3,
    "in": 4,
    "contains": 4,
    "=": 5,
    "~": 5,
    "!=": 5,
    "!~": 5,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "|": 7,
    "is": 8,
    "as": 8,
    "+": 9,
    "-": 9,
    "&": 9,
    "*": 10,
    "/": 10,
    "div": 10,
    "mod": 10,
}
_WORD_OPS = frozenset(k for k in _INFIX if k.isalpha())

_TIME_UNITS = frozenset(
    {
        "year",
        "years",
        "month",
        "months",
        "week",
        "weeks",
        "day",
        "days",
        "hour",
        "hours",
        "minute",
        "minutes",
        "second",
        "seconds",
        "millisecond",
        "milliseconds",
    }
)
# functions whose (first) argument is a type specifier, not an expression
_TYPE_ARG_FUNCTIONS = frozenset({"ofType", "is", "as", "getReferenceKey"})


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

    # -- token helpers
    def peek(self) -> Token:
        return self.toks[self.i]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def at_op(self, text: str) -> bool:
        t = self.toks[self.i]
        return t.kind is Tok.OP and t.text == text

    def expect_op(self, text: str) -> Token:
        t = self.next()
        if t.kind is not Tok.OP or t.text != text:
            raise FhirPathSyntaxError(f"expected {text!r} at offset {t.pos}")
        return t

    # -- grammar
    def parse(self) -> Node:
        if self.peek().kind is Tok.EOF:
            raise FhirPathSyntaxError("empty FHIRPath expression")
        node = self.expression(0)
        t = self.peek()
        if t.kind is not Tok.EOF:
            raise FhirPathSyntaxError(f"unexpected {t.text!r} at offset {t.pos}")
        return node

    def infix_op(self) -> str | None:
        t = self.peek()
        if t.kind is Tok.OP and t.text in _INFIX:
            return t.text
        if t.kind is Tok.IDENT and not t.delimited and t.text in _WORD_OPS:
            return t.text
        return None

    def expression(self, min_bp: int) -> Node:
        left = self.unary()
        while True:
            op = self.infix_op()
            if op is None:
                return left
            bp = _INFIX[op]
            if bp <= min_bp:
                return left
            self.next()
            if op in ("is", "as"):
                left = TypeOp(op, left, self.type_specifier())
                continue
            right = self.expression(bp)
            left = Binary(op, left, right)

    def unary(self) -> Node:
        if self.at_op("-") or self.at_op("+"):
            op = self.next().text
            operand = self.unary()
            if op == "+":
                return operand
            if isinstance(operand, Literal) and len(operand.values) == 1:
                v = operand.values[0]
                if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
                    return Literal((-v,), operand.type_name)
            return Unary(op, operand)
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at_op("."):
                self.next()
                node = self.invocation(node)
            elif self.at_op("["):
                self.next()
                idx = self.expression(0)
                self.expect_op("]")
                node = Index(node, idx)
            else:
                return node

    def identifier(self) -> Token:
        t = self.next()
        if t.kind is not Tok.IDENT:
            raise FhirPathSyntaxError(f"expected an identifier at offset {t.pos}")
        return t

    def invocation(self, target: Node | None) -> Node:
        t = self.peek()
        if t.kind is Tok.SPECIAL:
            self.next()
            if target is not None and t.text == "this":
                return target
            return Special(t.text)
        name = self.identifier()
        if self.at_op("("):
            return Call(target, name.text, self.arguments(name.text))
        if target is None:
            return Ident(name.text)
        return Member(target, name.text)

    def arguments(self, fname: str) -> tuple[Node, ...]:
        self.expect_op("(")
        args: list[Node] = []
        if self.at_op(")"):
            self.next()
            return ()
        while True:
            if fname in _TYPE_ARG_FUNCTIONS and not args:
                args.append(self.type_argument())
            else:
                args.append(self.expression(0))
            if self.at_op(","):
                self.next()
                continue
            self.expect_op(")")
            return tuple(args)

    def type_argument(self) -> Node:
        # A type specifier is a (possibly qualified) identifier; anything else is an expression.
        save = self.i
        t = self.peek()
        if t.kind is Tok.IDENT:
            name = self.qualified_name()
            if self.at_op(")") or self.at_op(","):
                return TypeSpec(name)
        self.i = save
        return self.expression(0)

    def qualified_name(self) -> str:
        parts = [self.identifier().text]
        while self.at_op("."):
            self.next()
            parts.append(self.identifier().text)
        return ".".join(parts)

    def type_specifier(self) -> str:
        return self.qualified_name()

    def term(self) -> Node:
        t = self.peek()
        k = t.kind
        if k is Tok.OP:
            if t.text == "(":
                self.next()
                node = self.expression(0)
                self.expect_op(")")
                return node
            if t.text == "{":
                self.next()
                self.expect_op("}")
                return Literal(())
            raise FhirPathSyntaxError(f"unexpected {t.text!r} at offset {t.pos}")
        if k is Tok.STRING:
            self.next()
            return Literal((t.text,), "String")
        if k is Tok.NUMBER:
            self.next()
            return self.number(t)
        if k is Tok.DATETIME:
            self.next()
            kind = "DateTime" if "T" in t.text else "Date"
            try:
                value = Temporal.parse(t.text, kind)
            except ValueError as exc:
                raise FhirPathSyntaxError(f"bad date/time literal at offset {t.pos}") from exc
            return Literal((value,), kind)
        if k is Tok.TIME:
            self.next()
            try:
                value = Temporal.parse(t.text, "Time")
            except ValueError as exc:
                raise FhirPathSyntaxError(f"bad time literal at offset {t.pos}") from exc
            return Literal((value,), "Time")
        if k is Tok.CONST:
            self.next()
            return Const(t.text)
        if k is Tok.SPECIAL:
            return self.invocation(None)
        if k is Tok.IDENT:
            if not t.delimited and t.text in ("true", "false"):
                self.next()
                return Literal((t.text == "true",), "Boolean")
            return self.invocation(None)
        raise FhirPathSyntaxError(f"unexpected end of expression at offset {t.pos}")

    def number(self, t: Token) -> Node:
        value: int | float = float(t.text) if "." in t.text else int(t.text)
        nxt = self.peek()
        if nxt.kind is Tok.STRING:
            self.next()
            return Literal((Quantity(value, nxt.text),), "Quantity")
        if nxt.kind is Tok.IDENT and not nxt.delimited and nxt.text in _TIME_UNITS:
            self.next()
            return Literal((Quantity(value, nxt.text),), "Quantity")
        return Literal((value,), "Decimal" if isinstance(value, float) else "Integer")


def parse(src: str) -> Node:
    """Parse one FHIRPath expression; raises ``FhirPathSyntaxError`` with an offset."""
    return _Parser(src).parse()
