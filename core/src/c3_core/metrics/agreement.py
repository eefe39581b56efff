"""Neighbourhood metrics: does the prediction survive the admitted counterfactuals?

Inputs (all torch tensors, any device):

* ``pred_orig`` — the prediction on each original: class index ``(N,)`` (single-label) or the
  positive set as a bool/{0,1} tensor ``(N, C)`` (multi-label).
* ``pred_cf`` — predictions on the K counterfactuals of each case: ``(N, K)`` or ``(N, K, C)``.
* ``admitted`` — bool ``(N, K)``: which counterfactuals passed the validity gate. Rejected
  counterfactuals are ignored everywhere.

A counterfactual *agrees* when its prediction equals the original's (multi-label: the whole
positive set is equal); otherwise it *flips*.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from c3_core.metrics.errors import UndefinedMetricError

__all__ = ["PerCaseAgreement", "agreement_matrix", "flip_rate", "neighbourhood_agreement", "per_case_agreement"]


def agreement_matrix(pred_orig: Tensor, pred_cf: Tensor, admitted: Tensor) -> tuple[Tensor, Tensor]:
    """Validate shapes and return ``(same, admitted)``, both bool ``(N, K)``.

    ``same[i, k]`` is True when counterfactual k of case i predicts what the original predicts
    (regardless of admission).
    """
    adm = admitted.bool()
    if adm.ndim != 2:
        raise ValueError(f"admitted must be (N, K), got {tuple(admitted.shape)}")
    n, k = adm.shape
    if pred_orig.ndim == 1:
        if tuple(pred_cf.shape) != (n, k) or pred_orig.shape[0] != n:
            raise ValueError(
                f"single-label: pred_orig (N,), pred_cf (N, K); got {tuple(pred_orig.shape)}, {tuple(pred_cf.shape)}"
                f" with admitted {(n, k)}"
            )
        same = pred_cf.long() == pred_orig.long()[:, None]
    elif pred_orig.ndim == 2:
        c = pred_orig.shape[1]
        if tuple(pred_cf.shape) != (n, k, c) or pred_orig.shape[0] != n:
            raise ValueError(
                f"multi-label: pred_orig (N, C), pred_cf (N, K, C); got {tuple(pred_orig.shape)}, "
                f"{tuple(pred_cf.shape)} with admitted {(n, k)}"
            )
        same = (pred_cf.bool() == pred_orig.bool()[:, None, :]).all(-1)
    else:
        raise ValueError(f"pred_orig must be (N,) or (N, C), got {tuple(pred_orig.shape)}")
    return same, adm


def neighbourhood_agreement(pred_orig: Tensor, pred_cf: Tensor, admitted: Tensor) -> float:
    """Share of all admitted counterfactuals (pooled over cases) that agree with their original.

    Cases contribute in proportion to their number of admitted counterfactuals. Raises
    :class:`UndefinedMetricError` if no counterfactual is admitted anywhere.
    """
    same, adm = agreement_matrix(pred_orig, pred_cf, admitted)
    n_adm = int(adm.sum())
    if n_adm == 0:
        raise UndefinedMetricError.because("neighbourhood agreement", "no counterfactual was admitted")
    return int((same & adm).sum()) / n_adm


def flip_rate(pred_orig: Tensor, pred_cf: Tensor, admitted: Tensor) -> float:
    """Share of cases with at least one admitted counterfactual whose prediction differs.

    Denominator: cases with at least one admitted counterfactual (cases whose whole
    neighbourhood was rejected are excluded). Raises :class:`UndefinedMetricError` if there is
    no such case.
    """
    same, adm = agreement_matrix(pred_orig, pred_cf, admitted)
    has_cf = adm.any(1)
    n_cases = int(has_cf.sum())
    if n_cases == 0:
        raise UndefinedMetricError.because("flip rate", "no case has an admitted counterfactual")
    return int((adm & ~same).any(1).sum()) / n_cases


class PerCaseAgreement(NamedTuple):
    """Per-case agreement (float64 ``(N,)``, in [0, 1]) and the bool mask of cases with no
    admitted counterfactual (whose agreement is set to 1.0 by convention, never NaN)."""

    agreement: Tensor
    empty: Tensor


def per_case_agreement(pred_orig: Tensor, pred_cf: Tensor, admitted: Tensor) -> PerCaseAgreement:
    """Per case: agreeing admitted counterfactuals / admitted counterfactuals.

    Cases with no admitted counterfactual get 1.0 (nothing contradicts the original) and are
    flagged in ``empty`` so callers can exclude them.
    """
    same, adm = agreement_matrix(pred_orig, pred_cf, admitted)
    n_adm = adm.sum(1)
    empty = n_adm == 0
    agree = (same & adm).sum(1).double() / n_adm.clamp_min(1).double()
    agree = torch.where(empty, torch.ones_like(agree), agree)
    return PerCaseAgreement(agree, empty)
