"""Split carving for sources that do not ship every split.

Both helpers are pure functions of their inputs and the seed (ids are sorted before shuffling), so
a re-run, a resumed run and a run with another worker count carve the same rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def stratified_carve(ids: Sequence[str], labels: Sequence[int], fraction: float, seed: int) -> set[str]:
    """The ids moved to a new split: ``round(fraction * n_c)`` per class c, at least one per class that
    has two or more samples (so every class is represented) and never a class's last sample."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the carved fraction must be in [0, 1), got {fraction}")
    by_class: dict[int, list[str]] = defaultdict(list)
    for sample_id, label in zip(ids, labels, strict=True):
        by_class[int(label)].append(sample_id)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for label in sorted(by_class):
        members = sorted(by_class[label])
        count = min(round(fraction * len(members)), len(members) - 1)
        if fraction > 0 and len(members) >= 2:
            count = max(count, 1)
        order = rng.permutation(len(members))[:count]
        chosen.update(members[i] for i in order)
    return chosen


def grouped_holdout(groups: Sequence[str], fraction: float, seed: int) -> set[str]:
    """Whole groups (speakers, voices) held out until they cover at least ``fraction`` of the samples,
    so no group is in both splits; returns the held-out group names (never all of them)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    counts: dict[str, int] = defaultdict(int)
    for group in groups:
        counts[group] += 1
    names = sorted(counts)
    if len(names) < 2:
        raise ValueError("a grouped split needs at least two groups")
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    covered = 0
    for i in rng.permutation(len(names)):
        if covered >= fraction * len(groups) or len(held) == len(names) - 1:
            break
        held.add(names[i])
        covered += counts[names[i]]
    return held
