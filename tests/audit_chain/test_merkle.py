"""RFC 9162 hashing and proofs: the shared transparency-dev vectors, a reference
implementation cross-check, the O(log n) read bound and the second-preimage rule."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_chain import merkle
from audit_chain.errors import AuditProofError
from tests.conftest import shared_path


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _vector_files(kind: str) -> list[Path]:
    return sorted(shared_path("merkle-vectors", kind).rglob("*.json"))


def test_vector_counts() -> None:
    assert len(_vector_files("inclusion")) == 98
    assert len(_vector_files("consistency")) == 98


def _inclusion_ok(v: dict[str, object]) -> bool:
    try:
        merkle.verify_inclusion(
            _b64(str(v["leafHash"])),
            int(str(v["leafIdx"])),
            int(str(v["treeSize"])),
            [_b64(p) for p in v["proof"] or []],  # type: ignore[attr-defined]
            _b64(str(v["root"])),
        )
    except AuditProofError:
        return False
    return True


def _consistency_ok(v: dict[str, object]) -> bool:
    try:
        merkle.verify_consistency(
            int(str(v["size1"])),
            int(str(v["size2"])),
            [_b64(p) for p in v["proof"] or []],  # type: ignore[attr-defined]
            _b64(str(v["root1"])),
            _b64(str(v["root2"])),
        )
    except AuditProofError:
        return False
    return True


def test_all_inclusion_vectors() -> None:
    failures = []
    for path in _vector_files("inclusion"):
        v = json.loads(path.read_text())
        if _inclusion_ok(v) == bool(v["wantErr"]):
            failures.append(str(path.relative_to(path.parents[2])))
    assert not failures, failures


def test_all_consistency_vectors() -> None:
    failures = []
    for path in _vector_files("consistency"):
        v = json.loads(path.read_text())
        if _consistency_ok(v) == bool(v["wantErr"]):
            failures.append(str(path.relative_to(path.parents[2])))
    assert not failures, failures


def _reference_tree() -> dict[str, object]:
    return json.loads(shared_path("merkle-vectors", "rfc6962_reference_tree.json").read_text())


def test_reference_roots_from_leaves_and_from_stored_nodes() -> None:
    ref = _reference_tree()
    leaves = [bytes.fromhex(h) for h in ref["leaf_inputs_hex"]]  # type: ignore[union-attr]
    roots: dict[str, str] = ref["root_hashes_by_tree_size_hex"]  # type: ignore[assignment]
    assert len(roots) == 9
    store = merkle.MemoryNodes()
    store.append(merkle.leaf_hash(d) for d in leaves)
    for size_text, root_hex in roots.items():
        size = int(size_text)
        want = bytes.fromhex(root_hex)
        assert merkle.root_from_leaf_hashes(merkle.leaf_hash(d) for d in leaves[:size]) == want
        assert merkle.root_hash(size, store) == want
    levels: list[list[str]] = ref["node_hashes_by_level_hex"]  # type: ignore[assignment]
    for level, hashes in enumerate(levels):
        for index, h in enumerate(hashes):
            assert store.nodes[(level, index)] == bytes.fromhex(h)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH written straight from the definition (recursive, slow)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return merkle.leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return merkle.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], b), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


class CountingReader:
    def __init__(self, store: merkle.MemoryNodes) -> None:
        self.store = store
        self.reads = 0
        self.calls = 0

    def get_nodes(self, ids: Collection[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        self.calls += 1
        self.reads += len(ids)
        return self.store.get_nodes(ids)


def test_proofs_match_the_rfc_definition_and_verify() -> None:
    leaves = [f"entry-{i}".encode() for i in range(40)]
    store = merkle.MemoryNodes()
    store.append(merkle.leaf_hash(d) for d in leaves)
    for n in range(1, 41):
        root = _mth(leaves[:n])
        assert merkle.root_hash(n, store) == root
        for m in range(n):
            proof = merkle.inclusion_proof(m, n, store)
            assert proof == _path(m, leaves[:n])
            merkle.verify_inclusion(merkle.leaf_hash(leaves[m]), m, n, proof, root)
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, n, store)
            assert proof == _subproof(m, leaves[:n], True)
            merkle.verify_consistency(m, n, proof, _mth(leaves[:m]), root)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 3000), data=st.data())
def test_proofs_read_logarithmically_many_nodes(n: int, data: st.DataObject) -> None:
    store = merkle.MemoryNodes()
    store.append(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n))
    m = data.draw(st.integers(0, n - 1))
    bound = 2 * n.bit_length() + 2
    reader = CountingReader(store)
    proof = merkle.inclusion_proof(m, n, reader)
    assert reader.calls == 1 and reader.reads <= bound
    assert len(proof) <= (n - 1).bit_length()  # ceil(log2 n) hashes
    size1 = data.draw(st.integers(1, n))
    reader = CountingReader(store)
    cproof = merkle.consistency_proof(size1, n, reader)
    assert reader.calls == (1 if size1 < n else 0) and reader.reads <= bound
    merkle.verify_consistency(
        size1, n, cproof, merkle.root_hash(size1, store), merkle.root_hash(n, store)
    )


def test_second_preimage_interior_node_as_leaf_fails() -> None:
    """An attacker presents the concatenated children of an interior node as a 'leaf'.

    Without domain separation H(l || r) of the 'leaf' would equal the node and the
    forged proof (the real proof minus its first step) would verify.
    """
    leaves = [b"a", b"b", b"c", b"d"]
    store = merkle.MemoryNodes()
    store.append(merkle.leaf_hash(d) for d in leaves)
    root = merkle.root_hash(4, store)
    left, right = store.nodes[(0, 0)], store.nodes[(0, 1)]
    forged_leaf = left + right  # the bytes under interior node (1, 0), sans prefix
    forged_proof = [store.nodes[(1, 1)]]
    # As a two-leaf tree: the forged 'leaf' hashes with 0x00, never equals node (1, 0)
    assert merkle.leaf_hash(forged_leaf) != store.nodes[(1, 0)]
    with pytest.raises(AuditProofError):
        merkle.verify_inclusion(merkle.leaf_hash(forged_leaf), 0, 2, forged_proof, root)
    with pytest.raises(AuditProofError):  # even with the node prefix smuggled into the data
        merkle.verify_inclusion(merkle.leaf_hash(b"\x01" + forged_leaf), 0, 2, forged_proof, root)

    # Without domain separation the same forgery verifies: this is what the prefixes stop
    def plain(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    naive_ab = plain(plain(b"a") + plain(b"b"))
    naive_cd = plain(plain(b"c") + plain(b"d"))
    naive_root = plain(naive_ab + naive_cd)
    forged = plain(b"a") + plain(b"b")  # 'leaf' data = the children of node ab
    assert plain(plain(forged) + naive_cd) == naive_root
    # ...while the honest proof for leaf 0 holds
    merkle.verify_inclusion(merkle.leaf_hash(b"a"), 0, 4, merkle.inclusion_proof(0, 4, store), root)


def test_verifiers_reject_bad_hash_lengths_and_sizes() -> None:
    h = merkle.leaf_hash(b"x")
    with pytest.raises(AuditProofError):
        merkle.verify_inclusion(h[:31], 0, 1, [], h)
    with pytest.raises(AuditProofError):
        merkle.verify_inclusion(h, 1, 1, [], h)
    with pytest.raises(AuditProofError):
        merkle.verify_consistency(0, 0, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
    with pytest.raises(AuditProofError):
        merkle.verify_consistency(1, 2, [h[:5]], h, h)


def test_bulk_extend_equals_incremental() -> None:
    hashes = [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(1000)]
    one = merkle.MemoryNodes()
    one.append(hashes)
    inc = merkle.MemoryNodes()
    for i in range(0, 1000, 7):
        inc.append(hashes[i : i + 7])
    assert one.nodes == inc.nodes
    assert len(one.nodes) == 2 * 1000 - bin(1000).count("1")
