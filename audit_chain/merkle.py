"""RFC 9162 Merkle tree hashing, proofs and their verifiers: pure functions, no I/O.

Why these shapes:

* Leaves are hashed as ``SHA-256(0x00 || leaf)`` and interior nodes as
  ``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1). The distinct prefixes are
  what makes a second-preimage forgery (presenting an interior node as a leaf)
  fail.
* Storage keeps every *complete* subtree, keyed by ``NodeId = (level, index)``:
  the node covering leaves ``[index * 2**level, (index + 1) * 2**level)``. Such a
  node never changes once its last leaf is appended, so any proof for any past
  tree size can be answered from stored hashes.
* A proof is planned first as a list of leaf ranges (``inclusion_ranges``,
  ``consistency_ranges``), every range is decomposed into complete subtrees
  (``range_node_ids``), the whole set is read in one round trip through a
  :class:`NodeReader`, and each range is folded back into its hash. Only the
  rightmost range of a proof can be incomplete, so a proof reads O(log n)
  stored hashes; nothing is ever rebuilt from all leaves.
* ``extend`` appends leaves to a *frontier* (the O(log n) complete subtrees whose
  concatenation is the whole tree) and returns exactly the new complete nodes to
  store; the same function bulk-builds a tree.

The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 and the edge rules of the
transparency-dev/merkle test vectors: hashes are 32 bytes, a consistency proof
from size 0 is rejected, and equal sizes need an empty proof and equal roots.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from audit_chain.errors import AuditProofError, AuditRangeError, AuditStorageError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]
"""``(level, index)`` of a complete subtree; level 0 are the leaf hashes."""

LeafRange = tuple[int, int]
"""Half-open range ``[start, end)`` of leaf indexes whose subtree hash a proof needs."""


class NodeReader(Protocol):
    """Where proofs read stored complete-subtree hashes from (a database, a dict)."""

    def get_nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]: ...


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry's exact bytes."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# ---------------------------------------------------------------- planning


def range_node_ids(start: int, end: int) -> list[NodeId]:
    """Complete subtrees whose right fold is ``MTH(D[start:end])``, left to right.

    Every range a proof asks for starts at a multiple of the power of two that
    covers it, so its RFC 9162 split is the binary decomposition of its length:
    largest subtree first.
    """
    if not 0 <= start < end:
        raise AuditRangeError(f"empty or negative leaf range [{start}, {end})")
    ids: list[NodeId] = []
    pos = start
    length = end - start
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            if pos % (1 << level):
                raise AuditRangeError(f"leaf range [{start}, {end}) is not subtree-aligned")
            ids.append((level, pos >> level))
            pos += 1 << level
    return ids


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """Right fold of a range's complete subtrees: ``H(a, H(b, H(c, ...)))``."""
    if not hashes:
        raise AuditRangeError("cannot fold an empty range")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[LeafRange]:
    """Leaf ranges of ``PATH(index, D[0:size])`` (RFC 9162 §2.1.3.1), leaf to root."""
    if not 0 <= index < size:
        raise AuditRangeError(f"leaf index {index} is outside a tree of size {size}")
    out: list[LeafRange] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if m < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m = lo + k, m - k
    out.reverse()
    return out


def consistency_ranges(size1: int, size2: int) -> list[LeafRange]:
    """Leaf ranges of ``PROOF(size1, D[0:size2])`` (RFC 9162 §2.1.4.1), in proof order.

    Empty when the sizes are equal; sizes outside ``0 < size1 <= size2`` are refused.
    """
    if not 0 < size1 <= size2:
        raise AuditRangeError(f"no consistency proof from size {size1} to size {size2}")
    out: list[LeafRange] = []
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                out.append((lo, hi))
            break
        k = _largest_power_of_two_below(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out


def resolve_ranges(ranges: Sequence[LeafRange], reader: NodeReader) -> list[bytes]:
    """Read every subtree the ranges need in one call and fold each range into its hash."""
    plans = [range_node_ids(a, b) for a, b in ranges]
    wanted = {node for plan in plans for node in plan}
    found = reader.get_nodes(wanted) if wanted else {}
    missing = wanted - found.keys()
    if missing:
        level, index = min(missing)
        raise AuditStorageError(f"stored tree lacks node (level {level}, index {index})")
    return [fold_range([found[node] for node in plan]) for plan in plans]


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree of ``size`` leaves, from stored nodes."""
    return resolve_ranges(inclusion_ranges(index, size), reader)


def consistency_proof(size1: int, size2: int, reader: NodeReader) -> list[bytes]:
    """Consistency proof between tree sizes ``size1`` and ``size2``, from stored nodes."""
    return resolve_ranges(consistency_ranges(size1, size2), reader)


def root_hash(size: int, reader: NodeReader) -> bytes:
    """``MTH(D[0:size])`` from stored nodes (the empty tree's root for size 0)."""
    if size == 0:
        return EMPTY_ROOT
    return resolve_ranges([(0, size)], reader)[0]


# ---------------------------------------------------------------- building


def frontier_ids(size: int) -> list[NodeId]:
    """The complete subtrees that make up a tree of ``size`` leaves, left to right."""
    return range_node_ids(0, size) if size else []


def frontier_root(frontier: Mapping[int, bytes]) -> bytes:
    """Root of the tree whose frontier maps level -> subtree hash."""
    if not frontier:
        return EMPTY_ROOT
    return fold_range([frontier[level] for level in sorted(frontier, reverse=True)])


def extend(
    size: int, frontier: dict[int, bytes], leaf_hashes: Iterable[bytes]
) -> list[tuple[int, int, bytes]]:
    """Append leaves to a tree given by its frontier; return the new complete nodes.

    ``frontier`` (level -> hash of the complete subtree at that level) is
    updated in place. Each returned ``(level, index, hash)`` is a node to store;
    the leaf itself comes first, then the subtrees it completes.
    """
    out: list[tuple[int, int, bytes]] = []
    append = out.append
    for h in leaf_hashes:
        index, level, cur = size, 0, h
        append((0, index, cur))
        while index & 1:
            cur = node_hash(frontier.pop(level), cur)
            level += 1
            index >>= 1
            append((level, index, cur))
        frontier[level] = cur
        size += 1
    return out


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """Root of a tree built from its leaf hashes in O(n) time and O(log n) memory."""
    frontier: dict[int, bytes] = {}
    for size, h in enumerate(leaf_hashes):
        extend(size, frontier, (h,))
    return frontier_root(frontier)


class MemoryNodes:
    """A dict-backed :class:`NodeReader` plus frontier: tests, benchmarks, small tools."""

    def __init__(self) -> None:
        self.nodes: dict[NodeId, bytes] = {}
        self.frontier: dict[int, bytes] = {}
        self.size = 0

    def append(self, leaf_hashes: Iterable[bytes]) -> None:
        hashes = list(leaf_hashes)
        for level, index, h in extend(self.size, self.frontier, hashes):
            self.nodes[(level, index)] = h
        self.size += len(hashes)

    def get_nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        return {i: self.nodes[i] for i in ids if i in self.nodes}


# ---------------------------------------------------------------- verifying


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise AuditProofError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof implies (RFC 9162 §2.1.3.2), or AuditProofError."""
    if size <= 0 or not 0 <= index < size:
        raise AuditProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash("leaf hash", leaf)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AuditProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AuditProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that the leaf hash ``leaf`` is at ``index`` in the tree with ``root``.

    Raises :class:`AuditProofError`; returns None when the proof holds.
    """
    _check_hash("root", root)
    if not _equal(root_from_inclusion_proof(leaf, index, size, proof), root):
        raise AuditProofError(f"inclusion proof for index {index} does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree ``(size2, root2)`` extends ``(size1, root1)`` (RFC 9162 §2.1.4.2).

    Raises :class:`AuditProofError`; returns None when the proof holds.
    """
    if size1 < 0 or size2 < size1:
        raise AuditProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == 0:
        raise AuditProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise AuditProofError("equal sizes need an empty consistency proof")
        if not _equal(root1, root2):
            raise AuditProofError("equal sizes but different roots")
        return
    if not proof:
        raise AuditProofError("empty consistency proof between different sizes")
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise AuditProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AuditProofError("consistency proof is too short")
    if not _equal(fr, root1):
        raise AuditProofError(f"consistency proof does not lead to the root of size {size1}")
    if not _equal(sr, root2):
        raise AuditProofError(f"consistency proof does not lead to the root of size {size2}")


__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LeafRange",
    "MemoryNodes",
    "NodeId",
    "NodeReader",
    "consistency_proof",
    "consistency_ranges",
    "extend",
    "fold_range",
    "frontier_ids",
    "frontier_root",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "range_node_ids",
    "resolve_ranges",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]
