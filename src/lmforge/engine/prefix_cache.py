"""Prompt caching: keys and values of recent prompts, reused by later prompts that open the
same way (a shared system prompt, a conversation's earlier turns, a few-shot preamble).

Attention is causal, so the keys and values at a position depend only on the tokens up to
it: a new prompt whose first m tokens equal a stored prompt's takes those positions from the
store and prefills only the rest. The engine prefills in chunks that end at multiples of
`PREFILL_CHUNK` (64) positions (engine/native.py), and this store keeps and restores whole
chunks only: a prompt's opening up to its last chunk boundary is stored, and a hit restores
up to the last boundary within the common prefix, so the chunks prefilled after a hit are
the very computations (the same queries over the same keys) a fresh prefill runs, and the
logits are the same bits with the cache as without it. (Token-exact reuse, as llama.cpp's
server does, prefills the rest as one block whose attention rounds otherwise: at int8 that
changed greedy answers. vLLM matches whole blocks too.) A hit thus reuses up to 63 tokens
fewer than the common prefix, and a prompt is stored from 64 tokens and served from 65 (at
least one prompt token is always computed, for its logits). Entries are prompt openings in least-recently-used order, bounded in bytes; a lookup takes
the longest common prefix over them.

A LoRA adapter changes keys and values, so an entry only serves prompts of the same adapter.
Entries keep their adapter object alive, so `id(adapter)` cannot be reused while they exist.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch

from lmforge.engine.kv_cache import SlotCache
from lmforge.engine.native import PREFILL_CHUNK


class PrefixCache:
    """Up to `max_bytes` of prompt keys and values, per adapter, least recently used out first."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.chunk = PREFILL_CHUNK  # entries and hits end at multiples of this many positions
        self.bytes = 0
        self.hits = 0  # prompt tokens taken from the cache, in total
        # (adapter id, prompt tokens) -> (adapter, kv (n_layers, 2, n_kv, T, head_dim))
        self._entries: OrderedDict[tuple[int, tuple[int, ...]], tuple[object, torch.Tensor]] = (
            OrderedDict()
        )

    def _whole(self, start: int, n: int) -> int:
        """How many of n tokens from position `start` lie before the last chunk boundary."""
        return max((start + n) // self.chunk * self.chunk - start, 0)

    def restore(self, cache: SlotCache, row: int, prompt: list[int], adapter=None) -> int:
        """Copy the longest stored prefix of `prompt`, cut at a chunk boundary, into `row`
        (just opened, holding only a prompt adapter's prefix) and advance the row past it;
        the tokens restored."""
        best, best_len, tokens = None, 0, tuple(prompt)
        for key in self._entries:
            if key[0] == id(adapter):
                n = len(os.path.commonprefix([key[1], tokens]))
                if n > best_len:
                    best, best_len = key, n
        start = cache.lengths[row]
        n = self._whole(start, min(best_len, len(prompt) - 1))
        if n <= 0:
            return 0
        self._entries.move_to_end(best)
        kv = self._entries[best][1]
        for layer in range(len(cache.k)):
            cache.k[layer][row, :, start : start + n] = kv[layer, 0, :, :n]
            cache.v[layer][row, :, start : start + n] = kv[layer, 1, :, :n]
        cache.lengths[row] = start + n
        cache._offsets = None
        self.hits += n
        return n

    def store(self, cache: SlotCache, row: int, prompt: list[int], adapter=None) -> None:
        """Keep the keys and values of `prompt`'s whole chunks, just prefilled into `row`."""
        start = cache.prefix_len
        n = self._whole(start, len(prompt))
        if n <= 0:
            return
        key = (id(adapter), tuple(prompt[:n]))
        for known in self._entries:  # a stored prompt that extends this one holds it already
            if known[0] == key[0] and len(known[1]) >= n and known[1][:n] == key[1]:
                self._entries.move_to_end(known)
                return
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
