"""The method contract: a model-side method owns a whole optimisation step.

``train_step`` does forward, backward and ``optimizer.step()`` itself because methods differ exactly
there: OGM-GE edits gradients between backward and step, MLA alternates one step per modality. The
trainer only builds the batch, ``active[B, m]`` and ``fused[B]`` from the sampler's plan, and reads
the returned :class:`StepResult` (per-modality confidence sums are the OGM/DUS discrepancy scores).
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mmrebal.models.model import Batch, ModelOutput, MultimodalModel


@dataclass
class ModalityStats:
    batch_size: int  # rows where the modality was active
    confidence_sum: float  # sum over those rows of softmax(unimodal logits)[y]
    loss: float  # mean unimodal cross-entropy over those rows
    # the confidence sum over the paired rows only (rows carrying every modality), where a method
    # asked for it (OGM-GE's ratio under partial batches); None otherwise
    paired_confidence_sum: float | None = None


@dataclass
class StepResult:
    loss: float  # the total loss that was back-propagated (NaN/inf: the step was skipped)
    modality: dict[str, ModalityStats]  # only modalities that had rows this step
    extra: dict[str, float] = field(default_factory=dict)  # method diagnostics, e.g. OGM-GE k and rho


@dataclass
class StepContext:
    """What a step needs besides data. ``autocast`` is a context manager, or a zero-argument factory of
    one (``functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16)``); MLA enters it once per
    modality, so use :meth:`amp` to get it."""

    epoch: int
    step: int
    loss_weights: dict[str, float] | None = None
    autocast: AbstractContextManager | Callable[[], AbstractContextManager] = contextlib.nullcontext
    normaliser: float | None = None  # the plan's: loss terms are sums / normaliser (None: means)

    def amp(self) -> AbstractContextManager:
        if isinstance(self.autocast, AbstractContextManager):
            return self.autocast  # type: ignore[return-value]
        return self.autocast()  # type: ignore[operator]

    def scale(self, rows: int) -> float:
        """Factor turning a term's mean over ``rows`` into the plan's reduction: sum / normaliser
        (rows / normaliser), or 1 for a mean. ``rows`` comes from a host mask, so no GPU sync."""
        return 1.0 if self.normaliser is None else rows / self.normaliser


@dataclass(frozen=True)
class TrainStep:
    """Everything one ``train_step`` gets: the model (in its DDP wrapper when there is one), the batch on
    its device, which modalities each row carries (``active`` bool [B, m]) and which rows feed the
    fused loss (``fused`` bool [B]), the optimiser and the context. The masks are kept on the host,
    so selecting rows never synchronises a GPU."""

    model: nn.Module
    batch: Batch
    active: torch.Tensor
    fused: torch.Tensor
    optimizer: torch.optim.Optimizer
    ctx: StepContext

    def __post_init__(self) -> None:
        object.__setattr__(self, "active", self.active.cpu())
        object.__setattr__(self, "fused", self.fused.cpu())

    @property
    def labels(self) -> torch.Tensor:
        return self.batch["label"]


class ModulationWindow:
    """Mixin for a method that modulates only in epochs ``starts <= epoch <= ends`` (None: to the end)."""

    name = "method"
    starts: int = 0
    ends: int | None = None

    def modulating(self, epoch: int) -> bool:
        return self.starts <= epoch and (self.ends is None or epoch <= int(self.ends))

    def config_warnings(self, epochs: int, optimizer: str) -> list[str]:
        if self.starts < epochs:
            return []
        return [
            f"{self.name}: modulation_starts {self.starts} >= epochs {epochs}, "
            "so the run is the fused-loss baseline"
        ]


def unwrap(model: nn.Module) -> MultimodalModel:
    """The :class:`MultimodalModel` inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


def row_index(mask: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Indices of ``mask``'s rows on ``device`` (None: every row). Worked out on the CPU, so boolean
    masks never force a GPU synchronisation."""
    mask = mask.cpu()
    if bool(mask.all()):
        return None
    return mask.nonzero().squeeze(1).to(device, non_blocking=True)


def take(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    return x if rows is None else x.index_select(0, rows)


def ce_and_confidence(
    logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over ``rows`` and the sum of softmax(logits)[y] there (the OGM score)."""
    z, y = take(logits, rows).float(), take(labels, rows)
    return F.cross_entropy(z, y), confidence_sum(z, y, None)


def confidence_sum(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """sum over ``rows`` of softmax(logits)[y], without grad (the OGM / DUS discrepancy score)."""
    with torch.no_grad():
        z, y = take(logits, rows).float(), take(labels, rows)
        return z.softmax(dim=1).gather(1, y.unsqueeze(1)).sum()


class Pending(NamedTuple):
    """One modality's step statistics, still on the device."""

    rows: int
    ce: torch.Tensor  # mean CE over the rows
    confidence: torch.Tensor  # sum of softmax(z)[y] over the rows
    paired_confidence: torch.Tensor | None = None  # the same sum over the paired rows only


PendingStats = dict[str, Pending]


def to_host(total: torch.Tensor, pending: PendingStats) -> tuple[float, dict[str, ModalityStats]]:
    """The loss and per-modality stats as floats, in one device-to-host transfer."""
    tensors = [total.detach()]
    for p in pending.values():
        tensors += [p.ce.detach(), p.confidence]
        if p.paired_confidence is not None:
            tensors.append(p.paired_confidence)
    values = iter(torch.stack([t.float() for t in tensors]).tolist())
    loss = next(values)
    stats = {}
    for m, p in pending.items():
        ce, confidence = next(values), next(values)
        paired = next(values) if p.paired_confidence is not None else None
        stats[m] = ModalityStats(p.rows, confidence, ce, paired)
    return loss, stats


def step_if_finite(loss: float, optimizer: torch.optim.Optimizer) -> None:
    """Step only on a finite loss, so a NaN never reaches the weights (the trainer then stops)."""
    if math.isfinite(loss):
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)


class Method(ABC):
    """Base class; subclasses take their options as keyword arguments (``--method-opt KEY=VALUE``)."""

    name = "method"
    # Whether a plan's ``loss_weights`` replace this method's own, key by key (the weighted losses);
    # MLA and ``unimodal`` train each modality with its plain CE whatever a sampler sets.
    honours_loss_weights = False

    def __init__(self, modalities: Sequence[str]) -> None:
        if len(modalities) < 2:
            raise ValueError("a multimodal method needs at least two modalities")
        self.modalities = list(modalities)

    @abstractmethod
    def train_step(self, step: TrainStep) -> StepResult:
        """One optimisation step on ``step.batch``; ``step.active`` bool [B, m], ``step.fused`` bool [B]."""

    def begin_epoch(
        self, epoch: int, model: nn.Module, train_subset: Callable[[float], Iterator[Batch]]
    ) -> None:
        """Before the epoch's first step (PMR: class-mean prototypes). ``train_subset(fraction)`` yields,
        on the device, this rank's share of a random ``fraction`` of the train split, seeded by the run's
        seed and the epoch (a resumed run reads the same rows). The default reads nothing."""

    def predict(self, model: nn.Module, batch: Batch) -> ModelOutput:
        """Evaluation output (no grad and eval mode are the caller's job)."""
        return model(batch)

    def config_warnings(self, epochs: int, optimizer: str) -> list[str]:
        """Lines saying where the run's length or optimiser defeats the method (see Sampler's)."""
        return []

    def trains_unimodal_rows(self) -> bool:
        """Whether a row that carries one modality without the fused loss trains anything (MLA and
        ``unimodal`` learn each modality on its own rows; a weighted loss only with a unimodal weight)."""
        return True

    def ran_with(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The options this method ran with, from its signature's ``defaults``; a subclass that fixes
        an inherited option (``fused`` trains with no unimodal loss) says so here."""
        return defaults

    def losses_are_finite(self, result: StepResult) -> bool:
        return math.isfinite(result.loss) and all(math.isfinite(s.loss) for s in result.modality.values())

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} keeps no state but the checkpoint has {', '.join(state)}")
