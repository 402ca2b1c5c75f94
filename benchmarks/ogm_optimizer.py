"""How much of OGM-GE's gradient coefficient k reaches the weight update, per optimiser.

OGM scales the dominant encoder's gradients by k = 1 - tanh(alpha * rho) before the step. SGD turns
that into an update k times smaller; Adam divides each coordinate by its own running gradient
magnitude, so a coefficient that changes slowly cancels out. This replays one stream of real
gradients (a small CNN trained on random spectrograms) into two copies of each optimiser, one fed
g and one fed k * g, from the same weights, and prints update-norm ratios measured in one run.

    .venv/bin/python benchmarks/ogm_optimizer.py
"""

from __future__ import annotations

import copy

import torch
from torch import nn

STEPS, K = 60, 0.9


def gradient_stream(steps: int) -> list[list[torch.Tensor]]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 6))  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)
    grads = []
    for _ in range(steps):
        x, y = torch.randn(32, 1, 32, 24), torch.randint(0, 6, (32,))
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        opt.step()
    return grads


def update_ratio(make_opt, grads: list[list[torch.Tensor]]) -> float:
    """Mean over the last half of the steps of ||update(k g)|| / ||update(g)|| from equal weights."""
    shapes = [g.shape for g in grads[0]]
    base = [torch.zeros(s, requires_grad=True) for s in shapes]
    scaled = [copy.deepcopy(p) for p in base]
    opt_base, opt_scaled = make_opt(base), make_opt(scaled)
    ratios = []
    for step, g in enumerate(grads):
        before = [p.detach().clone() for p in base]
        for p, gi in zip(base, g, strict=True):
            p.grad = gi.clone()
        for p, gi in zip(scaled, g, strict=True):
            p.grad = K * gi
        opt_base.step()
        opt_scaled.step()
        d_base = torch.cat([(p.detach() - b).flatten() for p, b in zip(base, before, strict=True)])
        d_scaled = torch.cat([(p.detach() - b).flatten() for p, b in zip(scaled, before, strict=True)])
        for p, q in zip(scaled, base, strict=True):  # same weights again before the next step
            p.data.copy_(q.data)
        if step >= len(grads) // 2:
            ratios.append(float(d_scaled.norm() / d_base.norm()))
    return sum(ratios) / len(ratios)


def main() -> None:
    grads = gradient_stream(STEPS)
    optimisers = {
        "SGD 1e-3, momentum 0.9 (OGM-GE reference)": lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
        "Adam 1e-3 (cpu preset)": lambda p: torch.optim.Adam(p, lr=1e-3),
        "AdamW 1e-3": lambda p: torch.optim.AdamW(p, lr=1e-3),
    }
    print(f"k = {K}: update-norm ratio ||update(k g)|| / ||update(g)|| (k itself if k reaches the update)")
    print("| optimiser | ratio |")
    print("|---|---:|")
    for name, make in optimisers.items():
        print(f"| {name} | {update_ratio(make, grads):.3f} |")


if __name__ == "__main__":
    main()
