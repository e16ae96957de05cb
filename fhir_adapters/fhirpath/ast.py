"""FHIRPath abstract syntax tree: small immutable nodes the compiler pattern-matches on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Node:
    """Base class of AST nodes."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A literal; ``values`` is the collection it denotes (``{}`` is empty)."""

    values: tuple[Any, ...]
    type_name: str | None = None  # FHIRPath system type, when known (Date, DateTime, Time, ...)


@dataclass(frozen=True, slots=True)
class Ident(Node):
    """An identifier at the head of a path: a member of the focus (or a type name)."""

    name: str


@dataclass(frozen=True, slots=True)
class Member(Node):
    """``target.name``: navigation to a child element."""

    target: Node
    name: str


@dataclass(frozen=True, slots=True)
class Call(Node):
    """``target.name(args)``, or ``name(args)`` on the focus when ``target`` is None."""

    target: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Special(Node):
    """``$this``, ``$index`` or ``$total``."""

    name: str


@dataclass(frozen=True, slots=True)
class Const(Node):
    """``%name``: an environment variable or ViewDefinition constant."""

    name: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    """``target[index]``."""

    target: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Unary(Node):
    """Polarity: ``-x`` or ``+x``."""

    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """An infix operator (arithmetic, comparison, equality, logic, union, membership)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class TypeOp(Node):
    """``x is T`` / ``x as T``."""

    op: str
    operand: Node
    type_name: str


@dataclass(frozen=True, slots=True)
class TypeSpec(Node):
    """A bare type specifier, as argument of ``ofType``/``is``/``as``."""

    name: str
