"""``PermitGuard``: the data holder's fail-closed decision for one concrete request.

Called by the gateway (HTTP) and by the Flower ClientApp before every ``train``
or ``evaluate``. Every check that fails denies with its own :class:`ReasonCode`;
an unexpected exception denies with ``internal_error``; an allow that cannot be
written to the audit log becomes a deny (``audit_unavailable``). A denial carries
only the reason code, nothing about the data or the permit's bounds.

Checks, in order (first failure wins):

1. permit signatures against the trust list (cached per token and trust-list
   generation; the only expensive step),
2. signing keys' windows / compromise, then the permit's validity window (leeway),
3. the HDAB's status list: present, fresh, permit listed, current, not revoked,
4. this data holder is named in ``data``; for a Flower deployment run, the
   observed app equals the permit's ``processing.app`` (:mod:`permits.app_pin`),
5. the requester's signed proof: key bound to the permit, addressed to this
   holder and permit version, inside its time window, nonce unused,
6. the signed operation and parameters equal what the caller is about to run,
7. operation and output allowed, feature-spec hash equal, parameters in bounds,
8. rounds: already used + requested <= ``max_rounds`` (then counted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from permits.app_pin import AppObservation, check_app
from permits.audit import AuditSink
from permits.errors import VerificationError
from permits.model import DataGrant, Operation, Permit
from permits.reasons import ReasonCode
from permits.request import AccessParams, MemoryReplayCache, ReplayStore, verify_request
from permits.statuslist import StatusListStore
from permits.verify import PermitVerifier, VerifiedPermit, token_hash

log = logging.getLogger(__name__)

_REQUIRED_OUTPUT = {"train": "model", "evaluate": "aggregate_metrics"}


@dataclass(frozen=True)
class AccessRequest:
    """One concrete request at a data holder.

    ``permit`` is the permit token (compact or JWS JSON), ``proof`` the data
    user's signed request (see :mod:`permits.request`), ``operation`` and
    ``params`` what the caller is about to execute; they must equal the signed ones.
    ``app`` is the app of a Flower deployment run as the data holder observed it
    (None where no app bundle is involved, e.g. the gateway's own HTTP routes).
    """

    permit: str
    proof: str
    operation: Operation
    params: AccessParams
    app: AppObservation | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: ReasonCode
    operation: str
    jti: str | None = None
    requester: str | None = None
    rounds_used: int = 0
    rounds_remaining: int | None = None
    permit: Permit | None = field(default=None, repr=False)
    grant: DataGrant | None = field(default=None, repr=False)
    app_digest: str | None = None


class RoundLedger(Protocol):
    def reserve(self, key: str, rounds: int, limit: int) -> int | None:
        """Atomically add ``rounds`` if the total stays <= ``limit``; the new total, or None."""
        ...

    def release(self, key: str, rounds: int) -> None: ...

    def used(self, key: str) -> int: ...


class MemoryRoundLedger:
    """Rounds used per permit in this process (use a persistent ledger across restarts)."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, rounds: int, limit: int) -> int | None:
        with self._lock:
            total = self._used.get(key, 0) + rounds
            if total > limit:
                return None
            self._used[key] = total
            return total

    def release(self, key: str, rounds: int) -> None:
        with self._lock:
            self._used[key] = max(0, self._used.get(key, 0) - rounds)

    def used(self, key: str) -> int:
        return self._used.get(key, 0)


class PermitGuard:
    def __init__(
        self,
        holder: str,
        verifier: PermitVerifier,
        status: StatusListStore,
        sink: AuditSink,
        *,
        replay: ReplayStore | None = None,
        ledger: RoundLedger | None = None,
        clock: Callable[[], float] = time.time,
        cache_size: int = 1024,
    ) -> None:
        self.holder = holder
        self.verifier = verifier
        self.status = status
        self.sink = sink
        self.replay: ReplayStore = replay if replay is not None else MemoryReplayCache()
        self.ledger: RoundLedger = ledger if ledger is not None else MemoryRoundLedger()
        self.clock = clock
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, VerifiedPermit]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.cache_hits = 0
        self.audit_failures = 0

    # -- the verified-permit cache ------------------------------------------------------
    def verified(self, token: str) -> VerifiedPermit:
        """Signature verification, cached by token hash while the trust list is unchanged."""
        key = token_hash(token)
        generation = self.verifier.trust.generation
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == generation:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return hit[1]
        verified = self.verifier.verify_signatures(token)
        with self._cache_lock:
            self._cache[key] = (generation, verified)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return verified

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # -- the decision -----------------------------------------------------------------
    def decide(self, request: AccessRequest) -> Decision:
        now = self.clock()
        jti: str | None = None
        ledger_key: str | None = None
        requester: str | None = None
        try:
            verified = self.verified(request.permit)
            self.verifier.check_current(verified, now)
            permit = verified.permit
            jti = permit.jti
            self.status.check(permit.iss.id, permit.jti, permit.version, verified.permit_hash, now)
            if permit.cross_border is not None:  # any HDAB that signed may revoke
                for co_issuer in permit.cross_border.co_issuers:
                    self.status.check_co_issuer(co_issuer, permit.jti, now)
            grant = permit.grant_for(self.holder)
            if grant is None:
                raise VerificationError(
                    ReasonCode.HOLDER_NOT_NAMED, "this data holder is not named"
                )
            if request.app is not None:
                check_app(permit, request.app)
            proof = verify_request(
                request.proof,
                allowed_kids=permit.requester_kids(),
                holder=self.holder,
                jti=permit.jti,
                permit_hash=verified.permit_hash,
                now=now,
                leeway=self.verifier.leeway,
                replay=self.replay,
            )
            requester = proof.kid
            if proof.claims.op != request.operation or proof.claims.params != request.params:
                raise VerificationError(
                    ReasonCode.REQUEST_MISMATCH, "parameters differ from the signed request"
                )
            check_bounds(permit, grant, request.operation, request.params)
            limit = permit.processing.federated_xgboost.max_rounds
            ledger_key = f"{permit.iss.id}/{permit.jti}"
            rounds = request.params.rounds if request.operation == "train" else 0
            used = self.ledger.reserve(ledger_key, rounds, limit)
            if used is None:
                raise VerificationError(ReasonCode.ROUNDS_EXCEEDED, "rounds beyond the permit")
        except VerificationError as exc:
            return self._deny(exc.reason, request, jti, ledger_key, requester)
        except Exception as exc:  # fail closed on anything unexpected
            log.warning("permit guard internal error: %s", type(exc).__name__)
            return self._deny(ReasonCode.INTERNAL_ERROR, request, jti, ledger_key, requester)
        decision = Decision(
            allowed=True,
            reason=ReasonCode.OK,
            operation=request.operation,
            jti=jti,
            requester=requester,
            rounds_used=used,
            rounds_remaining=limit - used,
            permit=permit,
            grant=grant,
            app_digest=request.app.digest if request.app is not None else None,
        )
        try:
            self._record(decision)
        except Exception as exc:
            log.warning("audit sink failed on allow, denying: %s", type(exc).__name__)
            self.ledger.release(ledger_key, rounds)
            self.audit_failures += 1
            return self._deny(ReasonCode.AUDIT_UNAVAILABLE, request, jti, ledger_key, requester)
        self.stats[ReasonCode.OK.value] += 1
        return decision

    def _deny(
        self,
        reason: ReasonCode,
        request: AccessRequest,
        jti: str | None,
        ledger_key: str | None,
        requester: str | None = None,
    ) -> Decision:
        used = self.ledger.used(ledger_key) if ledger_key else 0
        decision = Decision(
            allowed=False,
            reason=reason,
            operation=request.operation,
            jti=jti,
            requester=requester,
            rounds_used=used,
            app_digest=request.app.digest if request.app is not None else None,
        )
        self.stats[reason.value] += 1
        try:  # a denial stands even if it cannot be written; the failure is counted
            self._record(decision)
        except Exception as exc:
            self.audit_failures += 1
            log.warning("audit sink failed on deny: %s", type(exc).__name__)
        return decision

    def _record(self, decision: Decision) -> None:
        subject = {"site": self.holder}
        if decision.jti is not None:
            subject["permit"] = decision.jti
        details: dict[str, object] = {
            "reason": decision.reason.value,
            "operation": decision.operation,
            "rounds_used": decision.rounds_used,
        }
        if decision.app_digest is not None:
            details["app_digest"] = decision.app_digest
        if decision.requester is not None:  # the authorised person's key, never a name
            details["requester"] = decision.requester
        self.sink.record(
            "access.allowed" if decision.allowed else "access.denied",
            subject=subject,
            details=details,
        )


def check_bounds(
    permit: Permit, grant: DataGrant, operation: Operation, params: AccessParams
) -> None:
    """Operation, output, feature spec and parameter bounds (pure; raises the first failure)."""
    bounds = permit.processing.federated_xgboost
    if operation not in permit.processing.operations:
        raise VerificationError(ReasonCode.OPERATION_NOT_ALLOWED, "operation not permitted")
    if _REQUIRED_OUTPUT[operation] not in bounds.outputs:
        raise VerificationError(ReasonCode.OUTPUT_NOT_ALLOWED, "output not permitted")
    if params.spec_hash != grant.feature_spec_hash:
        raise VerificationError(
            ReasonCode.SPEC_HASH_MISMATCH, "feature specification differs from the permit"
        )
    if params.rows is not None and params.rows < bounds.min_rows_per_site:
        raise VerificationError(ReasonCode.TOO_FEW_ROWS, "site below the permit's minimum rows")
    if operation != "train":
        return
    if params.strategy is None or params.max_depth is None or params.min_child_weight is None:
        raise VerificationError(
            ReasonCode.REQUEST_MALFORMED, "train needs strategy, max_depth, min_child_weight"
        )
    if params.rounds < 1:
        raise VerificationError(ReasonCode.REQUEST_MALFORMED, "train needs rounds >= 1")
    if params.strategy not in bounds.strategies:
        raise VerificationError(ReasonCode.STRATEGY_NOT_ALLOWED, "strategy not permitted")
    # max_depth 0 means "unlimited" in XGBoost's lossguide policy, so it is out of bounds too
    if not 1 <= params.max_depth <= bounds.max_depth:
        raise VerificationError(ReasonCode.PARAMETER_OUT_OF_BOUNDS, "max_depth beyond the permit")
    if params.min_child_weight < bounds.min_rows_per_leaf:
        raise VerificationError(
            ReasonCode.PARAMETER_OUT_OF_BOUNDS, "min_child_weight below the disclosure floor"
        )
    if params.rounds > bounds.max_rounds:
        raise VerificationError(ReasonCode.ROUNDS_EXCEEDED, "rounds beyond the permit")


__all__ = [
    "AccessRequest",
    "Decision",
    "MemoryRoundLedger",
    "PermitGuard",
    "RoundLedger",
    "check_bounds",
]
