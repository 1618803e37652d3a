"""Uncertainty measures over option distributions, and conformal prediction (LAC, APS) as LLM-Uncertainty-Bench does it.

Pure numpy functions. ``probs`` has shape [N, K] (K = 6 options) and rows sum to 1; labels are
option indices [N]. Higher entropy = more uncertain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS = 1e-12
CONFORMAL_METHODS = ("lac", "aps")


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats over the last axis: [..., K] -> [...]. Uniform over 6 gives ln 6."""
    p = np.asarray(probs, dtype=np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.clip(p, EPS, None)), 0.0), axis=-1)


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy divided by ln K, in [0, 1]: [..., K] -> [...]."""
    p = np.asarray(probs)
    return entropy(p) / math.log(p.shape[-1])


def max_probability(probs: np.ndarray) -> np.ndarray:
    """[..., K] -> [...]: the top option's probability."""
    return np.max(np.asarray(probs, dtype=np.float64), axis=-1)


def margin(probs: np.ndarray) -> np.ndarray:
    """[..., K] -> [...]: top-1 minus top-2 probability (small = uncertain)."""
    top2 = np.sort(np.asarray(probs, dtype=np.float64), axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def share_by_margin(margins: np.ndarray, hits: np.ndarray, groups: int = 4) -> list[float]:
    """Share of ``hits`` [N] (bool) within ``groups`` equal-sized groups of items ordered by ``margins`` [N],
    the least confident group first; fewer groups when there are fewer items."""
    order = np.argsort(np.asarray(margins, dtype=np.float64), kind="stable")
    hits = np.asarray(hits, dtype=bool)
    return [float(hits[chunk].mean()) for chunk in np.array_split(order, min(groups, len(order))) if len(chunk)]


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) in nats over the last axis; zero where p is zero. [..., K], [..., K] -> [...]."""
    p = np.asarray(p, dtype=np.float64)
    q = np.clip(np.asarray(q, dtype=np.float64), EPS, None)
    return np.sum(np.where(p > 0, p * (np.log(np.clip(p, EPS, None)) - np.log(q)), 0.0), axis=-1)


# --- conformal prediction -------------------------------------------------------------------


def lac_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LAC non-conformity score 1 - p(true): [N, K], [N] -> [N]."""
    probs = np.asarray(probs, dtype=np.float64)
    return 1.0 - probs[np.arange(len(probs)), np.asarray(labels)]


def aps_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """APS score: cumulative probability of options sorted by p, down to and including the true one. [N, K], [N] -> [N]."""
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)
    rank_of_true = np.argmax(order == np.asarray(labels)[:, None], axis=1)
    return cumulative[np.arange(len(probs)), rank_of_true]


def calibrate_threshold(scores: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))/n quantile of calibration scores, "higher" interpolation."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        raise ValueError("conformal calibration needs at least one calibration item")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    level = min(1.0, math.ceil((n + 1) * (1 - alpha)) / n)
    return float(np.quantile(scores, level, method="higher"))


def _non_empty(sets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """An empty set becomes the top-1 option."""
    empty = ~sets.any(axis=1)
    sets[empty, np.argmax(probs[empty], axis=1)] = True
    return sets


def lac_sets(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean [N, K]: options with p >= 1 - threshold."""
    probs = np.asarray(probs, dtype=np.float64)
    return _non_empty(probs >= 1.0 - threshold, probs)


def aps_sets(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean [N, K]: top options while the cumulative probability stays <= threshold."""
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, axis=1, kind="stable")
    keep_sorted = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1) <= threshold
    sets = np.zeros_like(keep_sorted)
    np.put_along_axis(sets, order, keep_sorted, axis=1)
    return _non_empty(sets, probs)


_SCORES = {"lac": lac_scores, "aps": aps_scores}
_SETS = {"lac": lac_sets, "aps": aps_sets}


@dataclass(frozen=True)
class ConformalResult:
    """Conformal prediction on a test split, calibrated on another."""

    method: str
    alpha: float
    threshold: float
    set_size: float  # mean number of options per set
    coverage: float  # share of sets holding the true option
    accuracy: float  # top-1 accuracy on the test split
    uacc: float  # accuracy * sqrt(K) / set_size
    sets: tuple[tuple[int, ...], ...]  # option indices per test item


def prediction_sets(probs: np.ndarray, threshold: float, method: str) -> np.ndarray:
    if method not in _SETS:
        raise ValueError(f"unknown conformal method {method!r}; choose one of {CONFORMAL_METHODS}")
    return _SETS[method](probs, threshold)


def conformal_prediction(
    cal_probs: np.ndarray,
    cal_labels: np.ndarray,
    test_probs: np.ndarray,
    test_labels: np.ndarray,
    method: str = "lac",
    alpha: float = 0.1,
    threshold: float | None = None,
) -> ConformalResult:
    """Calibrate on (cal_probs, cal_labels) unless ``threshold`` is given, then build and score test sets."""
    if method not in _SCORES:
        raise ValueError(f"unknown conformal method {method!r}; choose one of {CONFORMAL_METHODS}")
    test_probs = np.asarray(test_probs, dtype=np.float64)
    test_labels = np.asarray(test_labels)
    if threshold is None:
        threshold = calibrate_threshold(_SCORES[method](cal_probs, cal_labels), alpha)
    sets = prediction_sets(test_probs, threshold, method)
    set_size = float(sets.sum(axis=1).mean())
    coverage = float(sets[np.arange(len(sets)), test_labels].mean())
    accuracy = float((np.argmax(test_probs, axis=1) == test_labels).mean())
    return ConformalResult(
        method=method,
        alpha=alpha,
        threshold=float(threshold),
        set_size=set_size,
        coverage=coverage,
        accuracy=accuracy,
        uacc=accuracy * math.sqrt(test_probs.shape[1]) / set_size,
        sets=tuple(tuple(int(i) for i in np.flatnonzero(row)) for row in sets),
    )
