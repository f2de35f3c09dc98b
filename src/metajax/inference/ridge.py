"""Closed-form ridge probes (float64 numpy): the task split, the fit with its penalty chosen by
cross-validation over tasks, and the scores (R², mean squared error).

Features are standardized on the fit rows (a constant feature is left at 0); the penalty is
``alpha * n`` (n fit rows) for ``alpha`` on a fixed grid, chosen by k-fold cross-validation whose
folds never split a task's rows (``groups``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

ALPHAS = tuple(10.0 ** np.arange(-6.0, 3.0))  # penalty per fit row, on standardized features
FOLDS = 5


def split_tasks(num_tasks: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random half of ``range(num_tasks)`` to fit on and the other half to score on
    (disjoint, sorted; the fit half has the extra task of an odd count)."""
    if num_tasks < 4:
        raise ValueError(f"probing needs at least 4 held-out tasks, got {num_tasks}")
    order = np.random.default_rng(seed).permutation(num_tasks)
    half = (num_tasks + 1) // 2
    return np.sort(order[:half]), np.sort(order[half:])


class RidgeProbe(NamedTuple):
    """A fitted linear probe ``y = (x - x_mean) / x_scale @ weights + y_mean``."""

    x_mean: np.ndarray  # [F]
    x_scale: np.ndarray  # [F]
    y_mean: np.ndarray  # [P]
    weights: np.ndarray  # [F, P]
    alpha: float  # the chosen penalty per fit row


def _solve(x: np.ndarray, y: np.ndarray, alphas) -> list[np.ndarray]:
    """Ridge weights of centered ``x [n, F]``, ``y [n, P]`` for each penalty per row in alphas."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    uty = u.T @ y
    n = x.shape[0]
    return [vt.T @ ((s / (s**2 + a * n))[:, None] * uty) for a in alphas]


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-8 * (1.0 + np.abs(mean)), scale, np.inf)


def _fit(x: np.ndarray, y: np.ndarray, alphas) -> list[RidgeProbe]:
    x_mean, x_scale = _standardize(x)
    y_mean = y.mean(axis=0)
    weights = _solve((x - x_mean) / x_scale, y - y_mean, alphas)
    pairs = zip(weights, alphas, strict=True)
    return [RidgeProbe(x_mean, x_scale, y_mean, w, float(a)) for w, a in pairs]


def predict(probe: RidgeProbe, x: np.ndarray) -> np.ndarray:
    """The probe's prediction [n, P] for features ``x [n, F]``."""
    return (x - probe.x_mean) / probe.x_scale @ probe.weights + probe.y_mean


def fit_ridge(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    alphas=ALPHAS,
    folds: int = FOLDS,
) -> RidgeProbe:
    """The ridge probe of ``y [n, P]`` on ``x [n, F]``, its penalty chosen by k-fold
    cross-validation (folds by ``groups [n]``, e.g. the task of each row; default: each row)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    groups = np.arange(x.shape[0]) if groups is None else np.asarray(groups)
    unique = np.unique(groups)
    folds = min(folds, unique.size)
    if len(alphas) > 1 and folds >= 2:
        fold = np.searchsorted(unique, groups) % folds  # a task's rows share a fold
        errors = np.zeros(len(alphas))
        for f in range(folds):
            train, test = fold != f, fold == f
            for i, probe in enumerate(_fit(x[train], y[train], alphas)):
                errors[i] += np.sum((predict(probe, x[test]) - y[test]) ** 2)
        alphas = (alphas[int(np.argmin(errors))],)
    return _fit(x, y, alphas[:1])[0]


def r2_score(y: np.ndarray, prediction: np.ndarray) -> float:
    """1 - SSE / SST over all target dimensions (dimensions weighted by their variance);
    NaN when the target does not vary (SST ~ 0)."""
    y, prediction = np.asarray(y, np.float64), np.asarray(prediction, np.float64)
    total = np.sum((y - y.mean(axis=0)) ** 2)
    if y.shape[0] < 2 or total <= 1e-12 * max(1.0, np.sum(y**2)):
        return float("nan")
    return float(1.0 - np.sum((y - prediction) ** 2) / total)


def mse(y: np.ndarray, prediction: np.ndarray) -> float:
    """Mean over rows of the squared error summed over target dimensions (as the posterior's
    ``expected_sq_error``)."""
    if y.shape[0] == 0:
        return float("nan")
    return float(np.mean(np.sum((np.asarray(y) - np.asarray(prediction)) ** 2, axis=-1)))
