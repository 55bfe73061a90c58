"""Prompt caching: keys and values of recent prompts, reused by later prompts that open the
same way (a shared system prompt, a conversation's earlier turns, a few-shot preamble).

Attention is causal, so the keys and values at a position depend only on the tokens up to
it: a new prompt whose first m tokens equal a stored prompt's takes those m positions from
the store and prefills only the rest. Entries are whole prompts in least-recently-used order,
bounded in bytes; a lookup takes the longest common prefix over them (token-exact, as
llama.cpp's server reuses a slot's prompt; vLLM hashes fixed blocks instead, which only
matches whole blocks). At least one prompt token is always computed, for its logits.

A LoRA adapter changes keys and values, so an entry only serves prompts of the same adapter.
Entries keep their adapter object alive, so `id(adapter)` cannot be reused while they exist.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch

from lmforge.engine.kv_cache import SlotCache


class PrefixCache:
    """Up to `max_bytes` of prompt keys and values, per adapter, least recently used out first."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0  # prompt tokens taken from the cache, in total
        # (adapter id, prompt tokens) -> (adapter, kv (n_layers, 2, n_kv, T, head_dim))
        self._entries: OrderedDict[tuple[int, tuple[int, ...]], tuple[object, torch.Tensor]] = (
            OrderedDict()
        )

    def restore(self, cache: SlotCache, row: int, prompt: list[int], adapter=None) -> int:
        """Copy the longest stored prefix of `prompt` into `row` (just opened, holding only a
        prompt adapter's prefix) and advance the row past it; the tokens restored."""
        best, best_len, tokens = None, 0, tuple(prompt)
        for key in self._entries:
            if key[0] == id(adapter):
                n = len(os.path.commonprefix([key[1], tokens]))
                if n > best_len:
                    best, best_len = key, n
        n = min(best_len, len(prompt) - 1)
        if n <= 0:
            return 0
        self._entries.move_to_end(best)
        kv = self._entries[best][1]
        start = cache.lengths[row]
        for layer in range(len(cache.k)):
            cache.k[layer][row, :, start : start + n] = kv[layer, 0, :, :n]
            cache.v[layer][row, :, start : start + n] = kv[layer, 1, :, :n]
        cache.lengths[row] = start + n
        cache._offsets = None
        self.hits += n
        return n

    def store(self, cache: SlotCache, row: int, prompt: list[int], adapter=None) -> None:
        """Keep the keys and values of `prompt`, just prefilled into `row`."""
        key = (id(adapter), tuple(prompt))
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        start, n = cache.prefix_len, len(prompt)
        per_token = 2 * sum(t[0, :, 0].numel() * t.element_size() for t in cache.k)
        if n * per_token > self.max_bytes // 2:  # one long prompt would flush everything
            return
        for known in list(self._entries):  # a stored prompt this one extends is redundant
            if known[0] == key[0] and len(known[1]) < n and key[1][: len(known[1])] == known[1]:
                self._drop(known)
        kv = torch.stack(
            [
                torch.stack([k[row, :, start : start + n], v[row, :, start : start + n]])
                for k, v in zip(cache.k, cache.v, strict=True)
            ]
        )  # (n_layers, 2, n_kv, T, head_dim), a copy
        self._entries[key] = (adapter, kv)
        self.bytes += kv.numel() * kv.element_size()
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key) -> None:
        _, kv = self._entries.pop(key)
        self.bytes -= kv.numel() * kv.element_size()

    def __len__(self) -> int:
        return len(self._entries)
