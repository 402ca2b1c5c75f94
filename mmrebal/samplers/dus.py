"""DUS — Data-aware Unimodal Sampling (Rebalanced Multimodal Learning with Data-aware Unimodal Sampling).

Each step every modality j gets its own number of rows a^(j). :class:`UnimodalBatchSampler` holds what
the DUS family shares: per-modality shuffled index streams, the cumulative discrepancy of Eq. (3),
plan assembly (rows drawn for every modality form the paired, fused group; the rest feed only their
modality's unimodal loss, as the paper's limitations section describes) and the step traces.
:class:`DUSSampler` is the RL variant: a small policy network maps the cumulative scores to
proportions a~, Eq. (4) turns them into sizes, Eq. (5) rewards the proportions of the non-dominant
modalities and REINFORCE (Eq. 6) updates the policy, once per epoch as in Algorithm 1.

An epoch is ``ceil(N / batch_size)`` steps (option ``steps_per_epoch``). DUS and DUS-DS split a
budget N_B over the modalities (Eq. 4); by default N_B = m x ``batch_size`` (``budget="modality"``),
so Algorithm 1's initial action N_B / m is exactly the baseline's batch per modality and each modality
sees about N rows per epoch on average, as under the uniform baseline (the paper's Figure 1 moves
audio below and video above 64 from 64 each). ``budget="shared"`` splits one baseline batch instead
(N_B = ``batch_size``): each modality then sees about N / m rows per epoch.

The loss follows Eq. (2): each term is the SUM over the rows sampled for it, divided by the constant
N_B / m (the plan's ``normaliser``), so a modality given more rows weighs more in the objective and
the initial action reproduces the baseline's mean loss exactly (``loss="sum"``). ``loss="mean"``
makes every term a mean over its own rows; the allocation then only changes each term's gradient
noise, never its weight.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterator
from functools import reduce
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrebal.evaluation.discrepancy import SCORE_KINDS, CumulativeScore, step_discrepancy
from mmrebal.samplers import SAMPLERS
from mmrebal.samplers.base import Group, Plan, Sampler, SamplerSetup, StepFeedback, check_choice


def allocate(total: int, proportions: np.ndarray) -> np.ndarray:
    """Eq. (4): a^(j) = round(N_B * a~^(j)), repaired so the sizes sum to ``total`` and each is >= 1.

    Rounding is half-up. The repair moves single rows where rounding erred most: surplus rows leave
    the modality rounded up the furthest (never below 1), missing rows go to the one rounded down
    the furthest.
    """
    p = np.asarray(proportions, dtype=np.float64)
    if total < len(p):
        raise ValueError(f"batch size {total} is smaller than the {len(p)} modalities; raise batch_size")
    exact = total * p / p.sum()
    sizes = np.maximum(np.floor(exact + 0.5).astype(np.int64), 1)
    while sizes.sum() > total:
        err = np.where(sizes > 1, sizes - exact, -np.inf)
        sizes[int(np.argmax(err))] -= 1
    while sizes.sum() < total:
        sizes[int(np.argmax(exact - sizes))] += 1
    return sizes


def reward(cum_scores: np.ndarray, proportions: np.ndarray) -> float:
    """Eq. (5): r = (1/m) sum_j 1(s^(j) != max_k s^(k)) log a~^(j)."""
    s = np.asarray(cum_scores, dtype=np.float64)
    a = np.asarray(proportions, dtype=np.float64)
    not_dominant = s != s.max()
    return float(np.sum(np.log(a[not_dominant])) / len(s))


class IndexStream:
    """An endless shuffled pass over ``range(n)``; reshuffles when exhausted, no row twice in one draw."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.order = np.empty(0, dtype=np.int64)
        self.pos = 0

    def take(self, k: int, rng: np.random.Generator) -> np.ndarray:
        out = self.order[self.pos : self.pos + k]
        self.pos += len(out)
        if len(out) < k:
            fresh = rng.permutation(self.n)
            seen = np.isin(fresh, out)
            self.order = np.concatenate([fresh[~seen], fresh[seen]])
            self.pos = k - len(out)
            out = np.concatenate([out, self.order[: self.pos]])
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.copy(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order = np.asarray(state["order"], dtype=np.int64).copy()
        self.pos = int(state["pos"])


class UnimodalBatchSampler(Sampler):
    """Per-modality batch sizes drawn from per-modality streams; subclasses decide :attr:`sizes`.

    Options: ``score`` (sum | mean: s_t per Eq. 3's input), ``cs_reset`` (run | epoch: whether
    Eq. 3 averages over the whole run, as the paper's single t = 1 start implies, or restarts each
    epoch), ``cumulative`` (False: decisions use the latest s_t instead of s^_t, the "w/o CS"
    ablation), ``streams`` (shared | independent), ``steps_per_epoch``, ``loss`` (sum: Eq. 2, each
    loss term the sum over its rows / :attr:`nominal` | mean: each term a mean over its own rows).

    ``streams``: the paper samples a^(j) rows "for the j-th modality from the shuffled dataset" and
    trains the Baseline's fused loss on the paired rows. ``shared`` (default) reads that as one
    shuffled stream whose prefix of length a^(j) goes to modality j, so min_j a^(j) rows per step
    are paired. ``independent`` gives each modality its own stream; the paired part is then about
    prod_j a^(j) / N^(m-1) rows (~0.3 for 32 + 32 of 3,000), the fused loss sees almost nothing, and
    on AV-MNIST (6 epochs, 3 seeds) DUS/OGM-GE fell to 35% test accuracy against 97% with ``shared``.
    """

    unpaired_rows = True

    def __init__(
        self,
        setup: SamplerSetup,
        *,
        score: str = "sum",
        cs_reset: str = "run",
        cumulative: bool = True,
        streams: str = "shared",
        steps_per_epoch: int | None = None,
        loss: str = "sum",
    ) -> None:
        super().__init__(setup)
        if self.batch_size > self.num_samples:
            raise ValueError(
                f"batch size {self.batch_size} exceeds the {self.num_samples} training samples"
            )
        self.loss_kind = check_choice("loss", loss, ("sum", "mean"))
        self.score_kind = check_choice("score", score, SCORE_KINDS)
        self.cs_reset = check_choice("cs_reset", cs_reset, ("run", "epoch"))
        self.cumulative = bool(cumulative)
        self.streams_kind = check_choice("streams", streams, ("shared", "independent"))
        self.steps_per_epoch = int(steps_per_epoch or math.ceil(self.num_samples / self.batch_size))
        self.cum = CumulativeScore(self.modalities)
        self.latest = {m: 0.0 for m in self.modalities}
        n_streams = len(self.modalities) if self.streams_kind == "independent" else 1
        self.streams = [IndexStream(self.num_samples) for _ in range(n_streams)]
        self.sizes = self.initial_sizes()
        # trace columns of plans drawn but not yet fed back (the trainer's loader may run ahead)
        self.pending: deque[dict[str, dict[str, Any]]] = deque()

    @property
    def nominal(self) -> float:
        """Eq. (2)'s loss normaliser, the rows per modality of the initial action: the baseline batch."""
        return float(self.batch_size)

    def initial_sizes(self) -> dict[str, int]:
        return {m: self.batch_size for m in self.modalities}

    # -- what subclasses override -------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Hook before an epoch's first plan."""

    def after_feedback(self, fb: StepFeedback) -> None:
        """Hook after Eq. (3) absorbed a step's scores."""

    def trace_extras(self, modality: str) -> dict[str, Any]:
        """Sampler-specific step-trace columns for ``modality``."""
        return {}

    # -- shared machinery --------------------------------------------------------------------
    def scores(self) -> np.ndarray:
        """The discrepancy vector decisions use: s^ (Eq. 3), or the latest s_t when ``cumulative=False``."""
        source = self.cum.value if self.cumulative else self.latest
        return np.array([source[m] for m in self.modalities], dtype=np.float64)

    def plans(self, epoch: int) -> Iterator[Plan]:
        self.begin_epoch(epoch)  # sees the previous epoch's s^ even when cs_reset=epoch
        if self.cs_reset == "epoch":
            self.cum.reset()
        self.pending.clear()
        for _ in range(self.steps_per_epoch):
            self.pending.append(self.describe())
            yield self.compose(self.sizes)

    def epoch_steps(self, epoch: int) -> int:
        return self.steps_per_epoch

    def describe(self) -> dict[str, dict[str, Any]]:
        """Trace columns of the plan about to be drawn: its sizes and the decision behind them."""
        return {
            m: {"batch_size_planned": int(self.sizes[m]), **self.trace_extras(m)} for m in self.modalities
        }

    def compose(self, sizes: dict[str, int]) -> Plan:
        """Draw each modality's rows; rows drawn for every modality form the fused group."""
        if self.streams_kind == "shared":
            head = self.streams[0].take(max(sizes.values()), self.rng)
            draws = {m: head[: sizes[m]] for m in self.modalities}
        else:
            draws = {
                m: s.take(sizes[m], self.rng) for m, s in zip(self.modalities, self.streams, strict=True)
            }
        paired = reduce(np.intersect1d, draws.values())
        groups = [Group(paired, self.modalities, fused=True)] if len(paired) else []
        for m in self.modalities:
            rest = draws[m][~np.isin(draws[m], paired)]
            if len(rest):
                groups.append(Group(rest, (m,), fused=False))
        return Plan(groups, normaliser=self.nominal if self.loss_kind == "sum" else None)

    def feedback(self, fb: StepFeedback) -> None:
        described = self.pending.popleft() if self.pending else self.describe()
        step_scores = {
            m: step_discrepancy(fb.confidence_sum[m], fb.batch_size[m], self.score_kind)
            for m in self.modalities
            if fb.batch_size.get(m, 0) > 0
        }
        self.latest.update(step_scores)
        self.cum.update(step_scores)
        self.after_feedback(fb)
        for m in self.modalities:
            self.step_rows.append(
                {"step": fb.step, "modality": m, **described[m], "cum_score": self.cum.value[m]}
            )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            cum=self.cum.state_dict(),
            latest=dict(self.latest),
            streams=[s.state_dict() for s in self.streams],
            sizes=dict(self.sizes),
            pending=list(self.pending),
        )
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.cum.load_state_dict(state["cum"])
        self.latest = dict(state["latest"])
        for stream, s in zip(self.streams, state["streams"], strict=True):
            stream.load_state_dict(s)
        self.sizes = {m: int(v) for m, v in state["sizes"].items()}
        self.pending = deque(copy.deepcopy(state["pending"]))


class ProportionalBatchSampler(UnimodalBatchSampler):
    """DUS and DUS-DS: sizes split a budget N_B by proportions a~ (Eq. 4).

    ``budget``: ``modality`` (default) N_B = m x ``batch_size``, so the initial action N_B / m is the
    baseline's batch per modality and, averaged over modalities, every modality sees as many rows
    per epoch as under the baseline; ``shared`` N_B = ``batch_size``, one baseline batch split between
    the modalities (about N / m rows per modality per epoch). ``update``: ``epoch`` (Algorithm 1: new
    proportions after each epoch) or ``step`` (after every step).
    """

    def __init__(self, *args: Any, budget: str = "modality", update: str = "epoch", **kwargs: Any) -> None:
        self.budget = check_choice("budget", budget, ("modality", "shared"))
        self.update = check_choice("update", update, ("epoch", "step"))
        super().__init__(*args, **kwargs)
        largest = self.total_batch - (len(self.modalities) - 1)  # one modality's rows at most
        if largest > self.num_samples:
            raise ValueError(
                f"a DUS step can draw {largest} rows but the train split has {self.num_samples}; "
                "lower batch_size or use budget=shared"
            )

    @property
    def total_batch(self) -> int:
        """N_B of Eq. (4)."""
        return self.batch_size * len(self.modalities) if self.budget == "modality" else self.batch_size

    @property
    def nominal(self) -> float:
        return self.total_batch / len(self.modalities)

    def initial_sizes(self) -> dict[str, int]:
        """Algorithm 1's initial action N_B / m per modality (Eq. 4 with equal proportions)."""
        return self.allocate_sizes(np.ones(len(self.modalities)))

    def config_warnings(self) -> list[str]:
        if self.update != "epoch" or self.epochs > 1:
            return []
        return [
            f"{self.name}: one epoch with update=epoch, so the sizes never leave the initial N_B/m "
            "(the run is Uniform batches); train more epochs or pass --sampler-opt update=step"
        ]

    def allocate_sizes(self, proportions: np.ndarray) -> dict[str, int]:
        """Eq. (4) over this sampler's modalities."""
        return dict(zip(self.modalities, allocate(self.total_batch, proportions).tolist(), strict=True))


class Policy(nn.Module):
    """psi_w: state [m] -> Linear(m, hidden) -> Tanh -> Linear(hidden, m), then a stochastic head.

    ``gaussian``: logits u ~ N(mu(s), diag(sigma^2)) with a learnable log-sigma, a~ = softmax(u);
    ``dirichlet``: a~ ~ Dir(softplus(mu(s)) + 1e-3). Both give log pi(a | s) for REINFORCE; the
    sample itself is drawn from the sampler's numpy generator so resume is exact.
    """

    def __init__(self, m: int, hidden: int, kind: str, init_std: float) -> None:
        super().__init__()
        self.kind = kind
        self.body = nn.Sequential(nn.Linear(m, hidden), nn.Tanh(), nn.Linear(hidden, m))
        if kind == "gaussian":
            self.log_std = nn.Parameter(torch.full((m,), math.log(init_std)))

    def act(self, state: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, torch.Tensor]:
        """Sample proportions a~ and return them with log pi(sample | state) (differentiable)."""
        out = self.body(torch.as_tensor(state, dtype=torch.float32))
        if self.kind == "gaussian":
            dist = torch.distributions.Normal(out, self.log_std.exp())
            u = out.detach() + self.log_std.detach().exp() * torch.as_tensor(
                rng.standard_normal(len(state)), dtype=torch.float32
            )
            return torch.softmax(u, 0).double().numpy(), dist.log_prob(u).sum()
        conc = nn.functional.softplus(out) + 1e-3
        a = np.clip(rng.dirichlet(conc.detach().double().numpy()), 1e-6, None)
        a = a / a.sum()
        return a, torch.distributions.Dirichlet(conc).log_prob(torch.as_tensor(a, dtype=torch.float32))


@SAMPLERS.register("dus")
class DUSSampler(ProportionalBatchSampler):
    """DUS with the REINFORCE-trained sampling policy (Algorithm 1).

    Options (besides :class:`ProportionalBatchSampler`'s): ``policy`` (gaussian | dirichlet),
    ``hidden`` (32), ``policy_std`` (0.5, initial sigma of the gaussian head), ``policy_lr``
    (1e-4, Adam), ``update`` (epoch | step: Algorithm 1 updates once per epoch), ``state_norm``
    (batch: s^ / N_B when score=sum, as is when score=mean | total: s^ / sum_k s^(k) | none).
    The first epoch uses the initial action N_B/m per modality.
    """

    def __init__(
        self,
        *args: Any,
        policy: str = "gaussian",
        hidden: int = 32,
        policy_std: float = 0.5,
        policy_lr: float = 1e-4,
        state_norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.state_norm = check_choice("state_norm", state_norm, ("batch", "total", "none"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.rng.integers(2**31)))  # policy init follows the sampler seed
            self.policy = Policy(
                len(self.modalities),
                int(hidden),
                check_choice("policy", policy, ("gaussian", "dirichlet")),
                float(policy_std),
            )
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=float(policy_lr))
        self.proportions = np.full(len(self.modalities), 1.0 / len(self.modalities))
        self.last_reward = math.nan
        self.last_log_prob = math.nan

    def state(self) -> np.ndarray:
        """The policy's input: the discrepancy vector, normalised per ``state_norm``."""
        s = self.scores()
        if self.state_norm == "batch":
            return s / self.total_batch if self.score_kind == "sum" else s
        if self.state_norm == "total":
            return s / s.sum() if s.sum() > 0 else np.full(len(s), 1.0 / len(s))
        return s

    def policy_step(self) -> None:
        """Receive state, act, get the Eq. (5) reward, REINFORCE (Eq. 6); the action sets the next sizes."""
        if not self.cum.ready:
            return
        proportions, log_prob = self.policy.act(self.state(), self.rng)
        r = reward(self.scores(), proportions)
        self.optimizer.zero_grad()
        (-r * log_prob).backward()
        self.optimizer.step()
        self.proportions = proportions
        self.sizes = self.allocate_sizes(proportions)
        self.last_reward, self.last_log_prob = r, float(log_prob.detach())

    def after_feedback(self, fb: StepFeedback) -> None:
        if self.update == "step":
            self.policy_step()

    def end_epoch(self, epoch: int) -> None:
        if self.update == "epoch":
            self.policy_step()

    def trace_extras(self, modality: str) -> dict[str, Any]:
        j = self.modalities.index(modality)
        return {
            "policy_prob": float(self.proportions[j]),
            "reward": self.last_reward,
            "log_prob": self.last_log_prob,
        }

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            copy.deepcopy(
                {
                    "policy": self.policy.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "proportions": self.proportions.copy(),
                    "last": (self.last_reward, self.last_log_prob),
                }
            )
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(copy.deepcopy(state["policy"]))
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.proportions = np.asarray(state["proportions"], dtype=np.float64).copy()
        self.last_reward, self.last_log_prob = state["last"]
