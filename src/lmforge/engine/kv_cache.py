"""A preallocated key/value cache: one buffer per layer, written in place, never reallocated."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values for `n_layers` layers, shape (B, n_kv_heads, max_len, head_dim) each.

    All rows of a batch share one write position (prompts are left-padded), so a step
    writes the slice [pos, pos + T) of every row. `key_valid` (B, max_len) marks which
    positions hold real tokens rather than left padding.
    """

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ):
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.key_valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.max_len = max_len
        self.padded = False  # set when key_valid has any False (left padding)
        self.pos = 0  # number of positions filled

    def write(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv, T, hd) at the current position; return the filled prefix."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache full: {end} > {self.max_len} positions")
        self.k[layer][:, :, self.pos : end] = k
        self.v[layer][:, :, self.pos : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def prefill(self, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Open with a fixed prefix: per layer k, v (1, n_kv, n, head_dim), for every row."""
        n = kv[0][0].shape[2]
        for layer, (k, v) in enumerate(kv):
            self.k[layer][:, :, :n] = k.to(self.k[layer].dtype)
            self.v[layer][:, :, :n] = v.to(self.v[layer].dtype)
        self.pos = n

    def select(self, rows: torch.Tensor) -> KVCache:
        """A new cache holding rows `rows` (R,) of this one, e.g. one context per choice."""
        out = KVCache.__new__(KVCache)
        out.k = [t.index_select(0, rows) for t in self.k]
        out.v = [t.index_select(0, rows) for t in self.v]
        out.key_valid = self.key_valid.index_select(0, rows)
        out.max_len, out.pos, out.padded = self.max_len, self.pos, self.padded
        return out

    def advance(self, n: int) -> None:
        self.pos += n

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)
