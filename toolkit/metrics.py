"""How closely an artifact's logits agree with a reference's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    positions: int
    max_abs: float  # largest logit difference
    top1: float  # share of positions whose argmax matches
    kl_mean: float  # mean KL(reference || candidate), nats
    kl_max: float

    def summary(self) -> str:
        return (f"top-1 {self.top1:.1%} over {self.positions} positions, KL mean {self.kl_mean:.2e} "
                f"max {self.kl_max:.2e}, max |Δlogit| {self.max_abs:.2e}")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@dataclass(frozen=True)
class PositionAgreement:
    kl: np.ndarray  # [positions] KL(reference || candidate), nats
    top1: np.ndarray  # [positions] whether the argmaxes match
    max_abs: np.ndarray  # [positions] largest logit difference

    def summary(self) -> Agreement:
        return Agreement(positions=len(self.kl), max_abs=float(self.max_abs.max()), top1=float(self.top1.mean()),
                         kl_mean=float(self.kl.mean()), kl_max=float(self.kl.max()))


def per_position(reference: np.ndarray, candidate: np.ndarray) -> PositionAgreement:
    """Compare logits [..., vocab] position by position; leading axes are flattened into positions."""
    if reference.shape != candidate.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {candidate.shape}")
    ref = reference.reshape(-1, reference.shape[-1])  # [positions, vocab]
    cand = candidate.reshape(-1, candidate.shape[-1])
    log_p, log_q = _log_softmax(ref), _log_softmax(cand)
    return PositionAgreement(
        kl=(np.exp(log_p) * (log_p - log_q)).sum(-1),  # [positions]
        top1=ref.argmax(-1) == cand.argmax(-1),
        max_abs=np.abs(ref.astype(np.float64) - cand).max(-1),
    )


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """Compare logits [..., vocab]; leading axes are flattened into positions."""
    return per_position(reference, candidate).summary()
