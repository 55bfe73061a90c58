"""Log-likelihood scoring: the heart of multiple-choice evaluation.

For each request (a context and its continuations) we want log p(continuation | context).
The context is run once and its KV cache is reused for every continuation: contexts of a
batch are prefilled together (left-padded), then each cache row is copied once per
continuation and all continuations run as one right-padded batch. Only the positions that
predict continuation tokens go through the LM head. Results do not depend on batch size or
request order beyond float rounding: batches are formed from length-sorted requests and
every row sees exactly its own tokens (padding is masked out of attention).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lmforge.engine.generate import start_batch
from lmforge.errors import InvalidInputError


@dataclass
class ContinuationScore:
    """log p(continuation | context), its token count, and whether greedy decoding yields it."""

    logprob: float
    tokens: int
    greedy: bool


def split_encode(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation, split where the whole text tokenizes.

    Trailing spaces of the context move to the continuation (" Paris" is one token in most
    BPE vocabularies, "Paris" after "is " is not). The continuation ids are those of
    encode(context + continuation) past the context's ids, as lm-evaluation-harness does.
    """
    stripped = context.rstrip(" ")
    continuation = context[len(stripped) :] + continuation
    ctx = tokenizer.encode(stripped, add_special_tokens=False)
    whole = tokenizer.encode(stripped + continuation, add_special_tokens=False)
    cont = whole[len(ctx) :]
    if whole[: len(ctx)] != ctx:  # the boundary merged differently: encode apart
        cont = tokenizer.encode(continuation, add_special_tokens=False)
    if not cont:
        raise InvalidInputError(
            f"empty continuation after context {context[-40:]!r}", "give non-empty choices"
        )
    return ctx, cont


class Scorer:
    """Scores continuations with a decoder (native or `transformers`) and its tokenizer."""

    def __init__(self, decoder, tokenizer, batch_size: int = 16, start_ids: Sequence[int] = ()):
        if batch_size < 1:
            raise InvalidInputError(f"invalid batch_size={batch_size}", "use a batch size >= 1")
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # An empty context still needs one token to predict from (BOS or EOS, as lm-eval does).
        self.start_ids = list(start_ids) or [tokenizer.bos_token_id or tokenizer.eos_token_id or 0]

    def score(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        progress: Callable[[int], None] | None = None,
    ) -> list[list[ContinuationScore]]:
        """For each (context, continuations) the score of every continuation, in input order."""
        encoded = []
        for context, conts in requests:
            pairs = [split_encode(self.tokenizer, context, c) for c in conts]
            ctx = pairs[0][0] if pairs else []  # the same for every continuation of a request
            encoded.append((ctx or self.start_ids, [p[1] for p in pairs]))
        return self.score_ids(encoded, progress)

    def score_ids(
        self,
        requests: Sequence[tuple[list[int], list[list[int]]]],
        progress: Callable[[int], None] | None = None,
    ) -> list[list[ContinuationScore]]:
        """Like `score`, on token ids: [(context_ids, [continuation_ids, ...]), ...]."""
        max_pos = self.decoder.max_positions
        for ctx, conts in requests:
            longest = len(ctx) + max((len(c) for c in conts), default=0)
            if longest > max_pos:
                raise InvalidInputError(
                    f"a request of {longest} tokens exceeds the model's context of {max_pos}",
                    "shorten the prompt or use fewer few-shot examples",
                )
        # longest contexts first: similar lengths share a batch, so little padding
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
        results: list[list[ContinuationScore]] = [[] for _ in requests]
        for start in range(0, len(order), self.batch_size):
            batch = [order[i] for i in range(start, min(start + self.batch_size, len(order)))]
            for idx, scores in zip(
                batch, self._score_batch([requests[i] for i in batch]), strict=True
            ):
                results[idx] = scores
            if progress:
                progress(len(batch))
        return results

    @torch.inference_mode()
    def _score_batch(
        self, requests: list[tuple[list[int], list[list[int]]]]
    ) -> list[list[ContinuationScore]]:
        dec, device = self.decoder, self.decoder.device
        cont_width = max((len(c) for _, conts in requests for c in conts), default=1)
        ids, cache, positions = start_batch(dec, [ctx for ctx, _ in requests], cont_width)
        last = dec.forward(ids, cache, positions).log_softmax(-1)  # (B, vocab)

        # one row per continuation, each starting from its request's context cache
        rows, conts, ctx_len = [], [], []
        for row, (ctx, cs) in enumerate(requests):
            for c in cs:
                rows.append(row)
                conts.append(c)
                ctx_len.append(len(ctx))
        if not conts:
            return [[] for _ in requests]
        R = len(conts)
        row_index = torch.tensor(rows, device=device)  # (R,) the request of each continuation
        cache = cache.select(row_index)
        # feed every continuation token but the last (each predicts the next one)
        feed = torch.zeros(R, max(cont_width - 1, 1), dtype=torch.long)
        for r, c in enumerate(conts):
            feed[r, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
        first = torch.tensor([c[0] for c in conts], device=device)
        first_lp = last[row_index, first]  # (R,)
        first_greedy = last.argmax(-1)[row_index] == first
        if cont_width > 1:
            pos = torch.tensor(ctx_len)[:, None] + torch.arange(feed.shape[1])[None]  # (R, Lc)
            logp = dec.forward(feed.to(device), cache, pos.to(device), all_logits=True).log_softmax(
                -1
            )
        out: list[list[ContinuationScore]] = [[] for _ in requests]
        for r, c in enumerate(conts):
            lp, greedy = float(first_lp[r]), bool(first_greedy[r])
            if len(c) > 1:
                target = torch.tensor(c[1:], device=device)
                steps = logp[r, : len(c) - 1]  # (len(c) - 1, vocab)
                lp += float(steps.gather(1, target[:, None]).sum())
                greedy = greedy and bool((steps.argmax(-1) == target).all())
            out[rows[r]].append(ContinuationScore(lp, len(c), greedy))
        return out
