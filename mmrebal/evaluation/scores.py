"""What a scoring pass yields and the sampler-independent scores read from it.

:class:`ScoreResult` is the output of the batched no-grad pass (``mmrebal.evaluation.scoring``);
samplers receive it (Remix, BSS, SMV), ``mmrebal score`` writes it out. ``kl_to_uniform`` (how far
a prediction is from knowing nothing, Remix's assignment score) and ``prediction_similarity`` (how
much the modalities agree, BSS's score) are measured in ``predictions.parquet`` for every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np


@dataclass
class ScoreResult:
    """A no-grad evaluation pass over the train split, in split-position order.

    Built by hand in your own loop, it is checked on construction (arrays or CPU tensors are
    accepted and kept as numpy arrays), and :meth:`check` tells a sampler's missing scope in one line.
    """

    labels: np.ndarray  # [N]
    probs: dict[str, np.ndarray]  # scope ("fused" or modality) -> [N, C] softmax probabilities
    losses: dict[str, np.ndarray]  # scope -> [N] per-sample cross-entropy

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.labels.ndim != 1:
            raise ValueError(f"ScoreResult.labels must be [N], got shape {self.labels.shape}")
        n = len(self.labels)
        for field_name, rank, shape in (("probs", 2, "[N, C]"), ("losses", 1, "[N]")):
            value = getattr(self, field_name)
            if not isinstance(value, dict):
                raise ValueError(
                    f"ScoreResult.{field_name} must be a dict scope -> {shape} array (scopes: 'fused' and "
                    f"each modality), got {type(value).__name__}"
                )
            arrays = {str(k): np.asarray(v) for k, v in value.items()}
            for scope, array in arrays.items():
                if array.ndim != rank or len(array) != n:
                    raise ValueError(
                        f"ScoreResult.{field_name}[{scope!r}] must be {shape} with N = {n} (len(labels)), "
                        f"got shape {array.shape}"
                    )
            setattr(self, field_name, arrays)
        if set(self.probs) != set(self.losses):
            raise ValueError(
                f"ScoreResult.probs has scopes {sorted(self.probs)} but losses has {sorted(self.losses)}; "
                "give both the same scopes"
            )

    def check(self, modalities: Sequence[str], num_samples: int, who: str) -> None:
        """One line naming what ``who`` (a sampler) needs and this result lacks."""
        missing = [s for s in ("fused", *modalities) if s not in self.probs]
        if missing:
            raise ValueError(
                f"{who}: ScoreResult lacks scope(s) {', '.join(map(repr, missing))}; it needs 'fused' and "
                f"every modality ({', '.join(modalities)}) in probs and losses"
            )
        if len(self.labels) != num_samples:
            raise ValueError(
                f"{who}: ScoreResult scores {len(self.labels)} samples, the train split has {num_samples}; "
                "score the whole train split in split order"
            )


def kl_to_uniform(probs: np.ndarray) -> np.ndarray:
    """Per row KL(p || uniform) in bits = log2 C - H2(p) (0 log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    plogp = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return np.log2(p.shape[1]) + plogp.sum(axis=1)


def prediction_similarity(probs: dict[str, np.ndarray], modalities: Sequence[str]) -> np.ndarray:
    """Per sample cosine similarity of the unimodal softmax vectors, averaged over modality pairs."""
    sims = []
    for a, b in combinations(modalities, 2):
        pa, pb = np.asarray(probs[a], dtype=np.float64), np.asarray(probs[b], dtype=np.float64)
        norm = np.maximum(np.linalg.norm(pa, axis=1) * np.linalg.norm(pb, axis=1), 1e-8)
        sims.append((pa * pb).sum(axis=1) / norm)
    return np.mean(sims, axis=0)
