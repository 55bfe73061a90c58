"""The one sampler: applies `SamplingParams` to logits (B, vocab) and picks next tokens."""

from __future__ import annotations

import torch

from lmforge.engine.params import SamplingParams


class Sampler:
    """Turns logits (B, vocab) into next tokens (B,), one row per sequence."""

    def __init__(
        self, params: SamplingParams, batch: int, vocab: int, device: torch.device | str = "cpu"
    ):
        self.params = params
        self.generator = torch.Generator(device=device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()
        penalise = params.repetition_penalty != 1.0
        # (B, vocab) which tokens each row has seen, for the repetition penalty
        self.seen = torch.zeros(batch, vocab, dtype=torch.bool, device=device) if penalise else None

    def observe(self, tokens: torch.Tensor) -> None:
        """Record tokens (B, T) as seen (prompt, then each generated token)."""
        if self.seen is not None:
            tokens = tokens.clamp(0, self.seen.shape[1] - 1)
            self.seen.scatter_(1, tokens, True)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.params
        if self.seen is not None:
            r = p.repetition_penalty
            penalised = torch.where(logits > 0, logits / r, logits * r)
            logits = torch.where(self.seen[:, : logits.shape[1]], penalised, logits)
        if p.greedy:
            return logits.argmax(dim=-1)
        # shifted so the largest is 0 first: a tiny temperature then sends the others to
        # -inf (exp 0) instead of every logit to +-inf (a NaN softmax)
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / p.temperature
        if p.top_k and p.top_k < logits.shape[-1]:
            kth = torch.topk(logits, p.top_k, dim=-1).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            # drop a token when the mass before it already reaches top_p (the first always stays)
            drop = (cum - sorted_logits.softmax(dim=-1)) >= p.top_p
            drop[:, 0] = False  # even when top_p rounds to 0 in float32 (5e-324 does)
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
