"""Classification metrics as the papers report them, computed with scikit-learn.

- ``acc``: top-1 accuracy of the argmax of the probabilities.
- ``map``: mean over classes of the one-vs-rest average precision of the softmax probabilities.
  A class with no positive sample among ``labels`` has an undefined average precision (there is no
  recall to reach), so it is left out of the mean; if no class has a positive, ``map`` is NaN.
- ``macro_f1``: unweighted mean of per-class F1 over the classes that occur in the labels or the
  predictions (scikit-learn's default label set), a class never predicted scoring 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score


def mean_average_precision(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest average precision over the classes present in ``labels``."""
    labels = np.asarray(labels)
    present = [c for c in range(probs.shape[1]) if np.any(labels == c)]
    if not present:
        return float("nan")
    return float(np.mean([average_precision_score(labels == c, probs[:, c]) for c in present]))


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``{"acc", "map", "macro_f1"}`` for ``labels`` [N] and softmax ``probs`` [N, C]."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if len(labels) == 0:
        return {"acc": float("nan"), "map": float("nan"), "macro_f1": float("nan")}
    preds = probs.argmax(axis=1)
    return {
        "acc": float(np.mean(preds == labels)),
        "map": mean_average_precision(labels, probs),
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
    }
