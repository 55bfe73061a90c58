"""The decode loop: prefill, then one token at a time, for one prompt or a batch of them.

Works over any `Decoder` (our native forward, or the `transformers` fallback): it needs
`new_cache(batch, max_len)`, `forward(ids, cache, positions)` -> logits (B, vocab),
`vocab_size` and `max_positions`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch

from lmforge.engine.detokenize import IncrementalDetokenizer
from lmforge.engine.params import SamplingParams
from lmforge.engine.sampling import Sampler
from lmforge.errors import InvalidInputError


class Decoder(Protocol):
    vocab_size: int
    max_positions: int
    device: torch.device

    def new_cache(self, batch: int, max_len: int): ...

    def forward(
        self,
        ids: torch.Tensor,
        cache,
        positions: torch.Tensor | None = None,
        all_logits: bool = False,
        attn_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


@dataclass
class Delta:
    """New text for one sequence of the batch after one decode step."""

    index: int
    text: str
    token_id: int | None
    finish_reason: str | None = None  # "stop" (EOS or a stop string) or "length"
    # filled only when the request asks for log-probabilities (see engine.scheduler):
    logprob: float | None = None  # log p(token_id) under the model's raw distribution
    top_logprobs: list[tuple[int, float]] | None = None  # the k most likely (id, logprob)


@dataclass
class Completion:
    """A finished generation with its measurements."""

    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    ttft_s: float = 0.0
    """Seconds from the call to the first generated token (prefill + first sample)."""
    decode_s: float = 0.0
    """Seconds spent after the first token."""
    timings: dict = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def decode_tokens_per_s(self) -> float:
        n = self.completion_tokens - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else 0.0


class StopMatcher:
    """Finds stop strings in streamed text; holds back a tail that may begin one."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Add text; return (text safe to emit, whether a stop string was found)."""
        if not self.stops:
            return text, False
        buf = self.pending + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.pending = ""
            return buf[: min(hits)], True
        hold = 0  # longest suffix of buf that is a proper prefix of some stop string
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), hold, -1):
                if buf.endswith(s[:n]):
                    hold = n
                    break
        self.pending = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class RowText:
    """One sequence's output: its detokenizer, its stop strings, and when it finishes.

    `push` takes each new token and returns the row's Delta: the text it adds, and a
    finish_reason once it hits an EOS id ("stop", the EOS itself not shown), a stop string
    ("stop", cut before it) or its `max_new`-th token ("length").
    """

    def __init__(self, tokenizer, stop: list[str], max_new: int, eos_ids=frozenset()):
        self.detok = IncrementalDetokenizer(tokenizer)
        self.stops = StopMatcher(stop)
        self.max_new = max_new
        self.eos_ids = eos_ids
        self.steps = 0

    def push(self, tok: int, index: int = 0) -> Delta:
        last = self.steps == self.max_new - 1
        self.steps += 1
        if tok in self.eos_ids:
            text, _ = self.stops.push(self.detok.flush())
            return Delta(index, text + self.stops.flush(), None, "stop")
        text, hit = self.stops.push(self.detok.add(tok))
        if hit:
            return Delta(index, text, tok, "stop")
        if last:
            tail, hit = self.stops.push(self.detok.flush())
            text += tail if hit else tail + self.stops.flush()
            return Delta(index, text, tok, "stop" if hit else "length")
        return Delta(index, text, tok)


def start_batch(decoder: Decoder, prompts: list[list[int]], room: int):
    """Left-pad `prompts` and open a cache for them plus `room` more positions.

    Returns ids (B, T), the cache (padding marked in `key_valid`) and the rotary positions
    (B, T) that make every row start at `cache.pos` (0, or the length of a prompt/prefix
    adapter's virtual prefix), or None when no row is padded.
    """
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p) :] = True
    device = decoder.device
    cache = decoder.new_cache(len(prompts), width + room)
    start = cache.pos  # a virtual prefix fills the first positions
    positions = None
    if not bool(mask.all()):
        cache.key_valid[:, start : start + width] = mask.to(device)
        cache.padded = True
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0).to(device) + start
    return ids.to(device), cache, positions


def stream_batch(
    decoder: Decoder,
    tokenizer,
    prompts: list[list[int]],
    params: SamplingParams,
    eos_ids: set[int] | frozenset[int] = frozenset(),
) -> Iterator[list[Delta]]:
    """Generate for every prompt at once; after each step yield the rows' new text.

    A row stops at an EOS id, a stop string, or `max_tokens`; its last Delta carries a
    finish_reason. Rows that finished earlier are still computed (the batch stays
    rectangular) but yield nothing.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InvalidInputError("empty prompt", "give at least one token of prompt text")
    params.validate()
    B = len(prompts)
    width = max(len(p) for p in prompts)
    if width >= decoder.max_positions:
        raise InvalidInputError(
            f"prompt of {width} tokens does not fit the model's context of {decoder.max_positions}",
            "shorten the prompt",
        )
    max_new = min(params.max_tokens, decoder.max_positions - width)
    device = decoder.device
    ids, cache, positions = start_batch(decoder, prompts, max_new)
    padded = positions is not None
    lengths = torch.tensor([len(p) for p in prompts], device=device) + cache.pos  # + any prefix

    sampler = Sampler(params, B, decoder.vocab_size, device)
    # padding must not count as seen: fill it with each row's own last prompt token
    sampler.observe(
        ids
        if not padded
        else torch.where(cache.key_valid[:, cache.pos : cache.pos + width], ids, ids[:, -1:])
    )
    rows = [RowText(tokenizer, params.stop, max_new, eos_ids) for _ in range(B)]
    done = [False] * B

    logits = decoder.forward(ids, cache, positions)  # (B, vocab)
    for step in range(max_new):
        next_tokens = sampler(logits)  # (B,)
        deltas = []
        for row, tok in enumerate(next_tokens.tolist()):
            if not done[row]:
                deltas.append(rows[row].push(tok, row))
                done[row] = deltas[-1].finish_reason is not None
        yield deltas
        if all(done):
            return
        sampler.observe(next_tokens[:, None])
        step_pos = (lengths + step)[:, None] if padded else None  # (B, 1)
        logits = decoder.forward(next_tokens[:, None], cache, step_pos)


def generate_batch(
    decoder: Decoder,
    tokenizer,
    prompts: list[list[int]],
    params: SamplingParams,
    eos_ids: set[int] | frozenset[int] = frozenset(),
) -> list[Completion]:
    """Run `stream_batch` to the end and collect one Completion per prompt."""
    start = time.perf_counter()
    texts = [[] for _ in prompts]
    tokens: list[list[int]] = [[] for _ in prompts]
    reasons = ["length"] * len(prompts)
    first = [0.0] * len(prompts)
    last = [0.0] * len(prompts)
    for deltas in stream_batch(decoder, tokenizer, prompts, params, eos_ids):
        now = time.perf_counter()
        for d in deltas:
            texts[d.index].append(d.text)
            if d.token_id is not None:
                if not tokens[d.index]:
                    first[d.index] = now
                tokens[d.index].append(d.token_id)
            last[d.index] = now
            if d.finish_reason:
                reasons[d.index] = d.finish_reason
    return [
        Completion(
            text="".join(texts[i]),
            token_ids=tokens[i],
            finish_reason=reasons[i],
            prompt_tokens=len(prompts[i]),
            ttft_s=(first[i] or last[i]) - start,
            decode_s=max(last[i] - (first[i] or last[i]), 0.0),
        )
        for i in range(len(prompts))
    ]
