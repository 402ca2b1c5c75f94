"""The sampler contract shared by the trainer and every data-side method.

Per step a sampler hands the trainer a :class:`Plan` — groups of (split positions, active
modalities, whether the rows feed the fused loss) — and after the step receives
:class:`StepFeedback` (per-modality ground-truth confidence sums and losses). Between epochs it may
ask for a scoring pass over the train split and receives a
:class:`~mmrebal.evaluation.scores.ScoreResult`. The trainer and
the method never know which sampler runs; everything a sampler decides is reported as trace rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmrebal.evaluation.scores import ScoreResult


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else one line naming the option and its choices."""
    if value not in allowed:
        raise ValueError(f"sampler option {name}={value!r} is not one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Group:
    """Rows (positions in the train split) seen this step with only ``modalities`` active."""

    indices: np.ndarray
    modalities: tuple[str, ...]
    fused: bool = True  # whether these rows contribute to the fused loss


@dataclass
class Plan:
    """One optimisation step's data: the union of its groups, loaded once."""

    groups: list[Group]
    # Optional loss weights for this step ("fused" and modality names) that the method honours,
    # e.g. Remix's warm-up 1 / 0.5 / 0.5 and its gamma afterwards. None: the method's own weights.
    loss_weights: dict[str, float] | None = None
    # What every loss term is divided by. A number N: each term is the SUM over its rows divided by N
    # (DUS, Eq. 2: a modality given more rows weighs more in the loss). None: each term is the mean
    # over its own rows (the usual mini-batch loss, where a term's row count never changes its weight).
    normaliser: float | None = None

    def layout(self, modalities: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, active[B, m], fused[B])``: unique rows, which modalities each row carries, fused rows."""
        rows = np.unique(np.concatenate([g.indices for g in self.groups]).astype(np.int64))
        where = {int(r): i for i, r in enumerate(rows)}
        active = np.zeros((len(rows), len(modalities)), dtype=bool)
        fused = np.zeros(len(rows), dtype=bool)
        for g in self.groups:
            pos = np.fromiter((where[int(i)] for i in g.indices), dtype=np.int64, count=len(g.indices))
            for m in g.modalities:
                active[pos, modalities.index(m)] = True
            if g.fused:
                fused[pos] = True
        return rows, active, fused

    def shard(self, rank: int, world: int) -> Plan:
        """The part of this plan that DDP rank ``rank`` trains on: a disjoint strided slice of each group."""
        if world == 1:
            return self
        groups = [Group(g.indices[rank::world], g.modalities, g.fused) for g in self.groups]
        # DDP averages the ranks' gradients, so each rank divides its share of the sum by N / world
        normaliser = None if self.normaliser is None else self.normaliser / world
        return Plan(groups, self.loss_weights, normaliser)


@dataclass
class StepFeedback:
    """What the trainer reports after a step, per modality (only modalities that had rows)."""

    epoch: int
    step: int
    batch_size: dict[str, int]
    confidence_sum: dict[str, float]  # sum over the modality's rows of softmax(z^(j))[y]
    loss: dict[str, float]


def warmup_warnings(name: str, warmup: int, epochs: int, what: str) -> list[str]:
    """The line for a warm-up the run never leaves (``what``: what the sampler then never does)."""
    if warmup < epochs:
        return []
    return [
        f"{name}: warm-up {warmup} >= epochs {epochs}, so the run never {what} (every epoch is a Uniform "
        "warm-up epoch); pass --sampler-opt warmup=K with K < epochs"
    ]


@dataclass(frozen=True)
class SamplerSetup:
    """What the trainer fixes for every sampler (a subclass's own options come after it as keywords)."""

    num_samples: int
    labels: np.ndarray
    modalities: tuple[str, ...]
    batch_size: int
    epochs: int
    seed: int = 0


class Sampler(ABC):
    """Base class: subclasses implement :meth:`plans` and whatever feedback hooks they use, and take
    ``(setup, *, their options)``; the registry sets ``name``.

    ``rng`` is the only source of randomness so that ``state_dict`` makes resume exact.
    """

    name: str = "sampler"
    # Whether plans hold rows that carry some modalities only and skip the fused loss (DUS): such rows
    # train through the unimodal losses alone, so a method that weighs those at 0 discards them.
    unpaired_rows: bool = False
    # Whether the scoring pass runs the model in train mode (BatchNorm on batch statistics, its
    # running statistics updated) over batches of the training size, as BSS's reference measurer
    # does; else the shared eval-mode pass.
    scores_in_train_mode: bool = False

    def __init__(self, setup: SamplerSetup) -> None:
        if len(setup.modalities) < 2:
            raise ValueError("a multimodal sampler needs at least two modalities")
        self.num_samples = setup.num_samples
        self.labels = np.asarray(setup.labels)
        self.modalities = tuple(setup.modalities)
        self.batch_size = setup.batch_size
        self.epochs = setup.epochs
        self.rng = np.random.default_rng(setup.seed)
        self.step_rows: list[dict[str, Any]] = []
        self.sample_rows: list[dict[str, Any]] = []

    @abstractmethod
    def plans(self, epoch: int) -> Iterator[Plan]:
        """Yield this epoch's plans lazily, so feedback from step t can shape step t+1."""

    def epoch_steps(self, epoch: int) -> int | None:
        """Steps ``epoch`` will take, when known once its scores are in (the progress bar's total);
        None when only drawing the plans tells."""
        return None

    def needs_scoring(self, epoch: int) -> bool:
        """Whether to run a scoring pass over the train split before ``epoch`` starts."""
        return False

    def config_warnings(self) -> list[str]:
        """Lines saying where this run's length turns the sampler into another experiment (a warm-up
        or schedule the run never leaves or reaches); the trainer prints them and the report shows them."""
        return []

    def sets_unimodal_weights(self) -> bool | None:
        """For a sampler whose plans set every loss weight of every step (Remix: its loss is part of the
        method), whether some step weighs a unimodal loss above 0; None when the method's weights act."""
        return None

    def receive_scores(self, epoch: int, result: ScoreResult) -> None:
        """Scores of the pass asked for by :meth:`needs_scoring`."""

    def feedback(self, fb: StepFeedback) -> None:
        """Per-step per-modality confidences and losses."""

    def end_epoch(self, epoch: int) -> None:
        """Called after the epoch's last step (e.g. the DUS policy update)."""

    def drain_step_rows(self) -> list[dict[str, Any]]:
        """Extra columns for steps.parquet, keyed by ``step`` and ``modality``."""
        rows, self.step_rows = self.step_rows, []
        return rows

    def drain_sample_rows(self) -> list[dict[str, Any]]:
        """Rows for samples.parquet (``epoch``, ``idx``, ``modality`` + sampler columns)."""
        rows, self.sample_rows = self.sample_rows, []
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
