"""Attribution methods: how much each source token's embedding contributes to one score.

Every method has the same shape, `method(objective, config) -> (T,)` tensor, and registers
in `METHODS` by name. An `Objective` is a scalar the model computes from the sources'
embeddings (the log-probability of a token, or a target-minus-contrast difference). The
baseline a method compares with, and what "removing" a token means to occlusion, is the
embedding of the pad (or EOS) token in every place. Not the all-zero embedding: the first
RMSNorm, x / rms(x + eps), jumps from 0 to full size within alpha ~ sqrt(eps) of zero, so
integrated gradients from zero would need a path resolution no step count gives (measured:
attributions off by orders of magnitude at 1024 steps on a tiny Llama).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lmforge.explain.config import ExplainConfig


@dataclass
class Objective:
    """A scalar the model computes from the sources' embeddings, to be attributed to them."""

    embeds: torch.Tensor  # (T, H) the sources as the model sees them
    baseline: torch.Tensor  # (T, H) "no token here": the pad token's embedding
    score: Callable[[torch.Tensor], torch.Tensor]  # (B, T, H) -> (B,)
    attention: Callable[[], torch.Tensor]  # () -> (T,) attention from the last source


def _grad(objective: Objective, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (B,), d score / d points (B, T, H)) at a batch of points in embedding space."""
    points = points.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = objective.score(points)
        (grads,) = torch.autograd.grad(scores.sum(), points)
    return scores.detach(), grads


def input_x_gradient(objective: Objective, config: ExplainConfig) -> torch.Tensor:
    """(x - baseline) . d score / dx: one backward pass, a first-order estimate."""
    x = objective.embeds
    _, grads = _grad(objective, x[None])
    return ((x - objective.baseline) * grads[0]).sum(-1)


def integrated_gradients(objective: Objective, config: ExplainConfig) -> torch.Tensor:
    """(x - x0) . mean gradient on the straight path x0 -> x (Sundararajan et al., 2017).

    The mean is the midpoint rule over `steps` intervals, so the attributions sum to
    score(x) - score(x0) up to the quadrature error ("completeness"; tests check it).
    """
    x, x0 = objective.embeds, objective.baseline
    edges = torch.linspace(0.0, 1.0, config.steps + 1, dtype=torch.float64)
    alphas, weights = (edges[1:] + edges[:-1]) / 2, edges.diff()
    total = torch.zeros_like(x, dtype=torch.float32)  # (T, H) weighted sum of gradients
    for a, w in zip(alphas.split(config.batch_size), weights.split(config.batch_size), strict=True):
        a = a.to(x.dtype)[:, None, None]
        _, grads = _grad(objective, x0 + a * (x - x0))  # (b, T, H)
        total += (grads.float() * w.float()[:, None, None]).sum(0)
    return ((x - x0).float() * total).sum(-1)


def attention(objective: Objective, config: ExplainConfig) -> torch.Tensor:
    """The attention the predicting position pays to each source, averaged over layers and
    heads. Not a contribution in the gradient sense: it says where the model looked."""
    return objective.attention()


def occlusion(objective: Objective, config: ExplainConfig) -> torch.Tensor:
    """score(x) - score(x with source i set to the baseline), one source at a time."""
    x, x0 = objective.embeds, objective.baseline
    n = x.shape[0]
    with torch.no_grad():
        full = objective.score(x[None])[0]
        drops = []
        for idx in torch.arange(n).split(config.batch_size):
            batch = x[None].repeat(len(idx), 1, 1)  # (b, T, H), row k hides source idx[k]
            batch[torch.arange(len(idx)), idx] = x0[idx]
            drops.append(full - objective.score(batch))
    return torch.cat(drops).float()


METHODS: dict[str, Callable[[Objective, ExplainConfig], torch.Tensor]] = {
    "integrated_gradients": integrated_gradients,
    "input_x_gradient": input_x_gradient,
    "attention": attention,
    "occlusion": occlusion,
}
