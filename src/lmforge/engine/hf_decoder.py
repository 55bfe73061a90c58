"""The fallback decoder: any `transformers` causal LM, through its own forward and cache.

Used for architectures the native path does not cover; it runs the same decode loop
(sampling, stop strings, streaming, batching) at `transformers` speed.
"""

from __future__ import annotations

import torch


class _HFCache:
    def __init__(self, batch: int, max_len: int, device, dtype: torch.dtype = torch.float32):
        from transformers import DynamicCache

        self.dtype = dtype
        self.dynamic = DynamicCache()
        self.key_valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.max_len = max_len
        self.pos = 0
        self.padded = False

    def prefill(self, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Open with a fixed prefix: per layer k, v (1, n_kv, n, head_dim), for every row."""
        batch = self.key_valid.shape[0]
        dtype = self.dtype
        for layer, (k, v) in enumerate(kv):
            k, v = k.to(dtype).expand(batch, -1, -1, -1), v.to(dtype).expand(batch, -1, -1, -1)
            self.dynamic.update(k.contiguous(), v.contiguous(), layer)
        self.pos = kv[0][0].shape[2]

    def select(self, rows: torch.Tensor) -> _HFCache:
        """Keep rows `rows` (R,) of the batch (in place; returns self)."""
        self.dynamic.batch_select_indices(rows)
        self.key_valid = self.key_valid.index_select(0, rows)
        return self


class HFDecoder:
    """Decoder protocol over `model(...)` with a `DynamicCache`."""

    def __init__(self, hf_model, dtype: str = "fp32"):
        if dtype not in ("fp32", "bf16"):
            raise ValueError(
                f"dtype {dtype!r} needs the native engine, which does not support "
                f"model_type {hf_model.config.model_type!r}; use fp32 or bf16"
            )
        self.model = hf_model.to(torch.float32 if dtype == "fp32" else torch.bfloat16).eval()
        self.dtype = dtype
        self.vocab_size = hf_model.config.vocab_size
        self.max_positions = getattr(hf_model.config, "max_position_embeddings", 2048)
        self.device = next(hf_model.parameters()).device

    def new_cache(self, batch: int, max_len: int) -> _HFCache:
        return _HFCache(batch, max_len, self.device, next(self.model.parameters()).dtype)

    @torch.inference_mode()
    def forward(
        self,
        ids: torch.Tensor,
        cache: _HFCache,
        positions: torch.Tensor | None = None,
        all_logits: bool = False,
        attn_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, vocab) for the last position, or (B, T, vocab) if all_logits.

        `attn_mask` (B, 1, T, pos + T), boolean, replaces the causal/padding mask;
        `logits_at` (K,) picks the positions that get logits: (B, K, vocab).
        """
        B, T = ids.shape
        end = cache.pos + T
        if positions is None:
            positions = torch.arange(cache.pos, end, device=ids.device).expand(B, T)
        if attn_mask is None:
            mask = cache.key_valid[:, :end].long()
        else:  # a 4D mask goes to attention as is: additive, so every implementation reads it
            dtype = next(self.model.parameters()).dtype
            mask = torch.zeros(attn_mask.shape, dtype=dtype, device=ids.device)
            mask.masked_fill_(~attn_mask, torch.finfo(dtype).min)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache.dynamic,
            use_cache=True,
            logits_to_keep=logits_at if logits_at is not None else 0 if all_logits else 1,
        )
        cache.pos = end
        if logits_at is not None or all_logits:
            return out.logits.float()
        return out.logits[:, -1].float()
