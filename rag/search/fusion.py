"""Hybrid scores: dense and BM25 scores each put on one scale per query, then mixed.

Robust z-scores (median and MAD) were chosen over plain z-scores and reciprocal-rank fusion
by cross-validation on SciFact train (bench/results/tune-fusion-cv.log); the losers were
removed rather than kept selectable.
"""

from __future__ import annotations

import numpy as np

from rag.config import Config


def fuse(dense: np.ndarray, lexical: np.ndarray, in_pool: np.ndarray, config: Config) -> np.ndarray:
    """Fused scores. Normalisation takes its centre and spread from the first
    `config.candidates` of each retriever (`in_pool`) whatever k is, so a deeper search ranks
    its top alike."""
    return ((1 - config.lexical_weight) * robust_zscore(dense, in_pool)
            + config.lexical_weight * robust_zscore(lexical, in_pool))


def robust_zscore(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Iglewicz and Hoaglin's modified z-score: distance from the median in units of the
    median absolute deviation (scaled to a normal's standard deviation), so the one passage
    that stands far out, such as the only one holding a rare query word, is not shrunk by its
    own contribution to the spread. When most values are equal (the MAD is 0), the mean
    absolute deviation stands in, as in the usual definition."""
    reference_values = values[reference] if reference.any() else values
    centre = np.median(reference_values)
    deviations = np.abs(reference_values - centre)
    spread = 1.4826 * np.median(deviations)
    if spread <= 1e-9:
        spread = 1.2533 * deviations.mean()
    return (values - centre) / spread if spread > 1e-9 else np.zeros_like(values)

