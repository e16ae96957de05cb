"""The one evaluation split: patient-level, keyed, the same wherever it is drawn.

Why: a model is only scored honestly on patients it never trained on, and a
comparison (federated vs centralized vs each site alone) is only fair on the
same patients. Each patient's side is decided by HMAC-SHA256 of its
pseudonymous key under the job's split key (by default the job id): every
site, every round, the demo's and the bench's reference models draw the same
held-out patients without exchanging a single key, all rows of one patient
fall on the same side, and another job gets another split.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import numpy as np

#: What the model card says about the split.
DESCRIPTION = "patient-level: HMAC-SHA256(split_key, patient key) < eval_fraction"
_SCALE = float(2**64)


def held_out(patient_keys: Sequence[str], split_key: str, fraction: float) -> np.ndarray:
    """A boolean mask over rows: True where the row's patient is held out for evaluation."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError("fraction must be in [0, 1)")
    secret = split_key.encode()
    draws = np.fromiter(
        (
            int.from_bytes(hmac.new(secret, k.encode(), hashlib.sha256).digest()[:8], "big")
            / _SCALE
            for k in patient_keys
        ),
        dtype=np.float64,
        count=len(patient_keys),
    )
    return draws < fraction


__all__ = ["DESCRIPTION", "held_out"]
