"""Log-likelihood scoring: the heart of multiple-choice evaluation.

For each request (a context and its continuations) we want log p(continuation | context).
The context is run once and its KV cache is reused for every continuation: contexts of a
batch are prefilled together (left-padded); then the continuation tokens of the whole batch,
with prefixes shared between choices computed once, run as one packed sequence under a
tree attention mask (each token sees its own context and its own earlier tokens), so no
padding is computed there. Only the positions that predict continuation tokens go through
the LM head. Results do not depend on batch size or
request order beyond float rounding: batches are formed from length-sorted requests and
every row sees exactly its own tokens (padding is masked out of attention).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lmforge.errors import InvalidInputError


@dataclass
class ScoredBatch:
    """What a progress callback gets after each batch: request indices, scores, seconds taken."""

    indices: list[int]
    scores: list[list[ContinuationScore]]
    seconds: float


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
    """Scores continuations with a decoder (native or `transformers`) and its tokenizer.

    A batch holds at most `batch_size` requests and, unless one request alone is larger,
    at most `max_tokens` tree nodes (attention over a packed batch is quadratic in it).
    """

    def __init__(
        self,
        decoder,
        tokenizer,
        batch_size: int = 16,
        start_ids: Sequence[int] = (),
        max_tokens: int = 1024,
    ):
        if batch_size < 1 or max_tokens < 1:
            raise InvalidInputError(
                f"invalid batch_size={batch_size} or max_tokens={max_tokens}",
                "use values >= 1",
            )
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        # An empty context still needs one token to predict from (BOS or EOS, as lm-eval does).
        self.start_ids = list(start_ids) or [tokenizer.bos_token_id or tokenizer.eos_token_id or 0]

    def score(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        progress: Callable[[ScoredBatch], None] | None = None,
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
        progress: Callable[[ScoredBatch], None] | None = None,
    ) -> list[list[ContinuationScore]]:
        """Like `score`, on token ids: [(context_ids, [continuation_ids, ...]), ...]."""
        max_pos = self.decoder.max_positions
        for ctx, conts in requests:
            if not ctx:
                raise InvalidInputError("empty context ids", "give at least one context token")
            longest = len(ctx) + max((len(c) for c in conts), default=0)
            if longest > max_pos:
                raise InvalidInputError(
                    f"a request of {longest} tokens exceeds the model's context of {max_pos}",
                    "shorten the prompt or use fewer few-shot examples",
                )
        # sorted by tokens: requests that share a prompt prefix land in the same tree
        order = sorted(range(len(requests)), key=lambda i: requests[i][0])
        results: list[list[ContinuationScore]] = [[] for _ in requests]
        trees: list[tuple[list[int], _Tree]] = []
        for i in order:
            if trees:
                batch, tree = trees[-1]
                if (
                    len(batch) < self.batch_size
                    and tree.size + tree.new_nodes(*requests[i]) <= self.max_tokens
                ):
                    batch.append(i)
                    tree.add(*requests[i])
                    continue
            trees.append(([i], _Tree()))
            trees[-1][1].add(*requests[i])
        for batch, tree in trees:
            t0 = time.perf_counter()
            scored = self._score_tree(tree)
            for idx, scores in zip(batch, scored, strict=True):
                results[idx] = scores
            if progress:
                progress(ScoredBatch(batch, scored, time.perf_counter() - t0))
        return results

    @torch.inference_mode()
    def _score_tree(self, tree: _Tree) -> list[list[ContinuationScore]]:
        dec, device = self.decoder, self.decoder.device
        cache = dec.new_cache(1, tree.size)
        start = cache.pos  # a prompt/prefix adapter's virtual prefix, seen by every node
        mask = tree.mask().to(device)  # (1, 1, T, T)
        if start:
            mask = torch.cat([mask.new_ones(*mask.shape[:-1], start), mask], dim=-1)
        at = sorted({n for path in tree.paths for nodes in path for n in nodes})
        logits = dec.forward(
            torch.tensor([tree.tokens], device=device),
            cache,
            torch.tensor([tree.depth], device=device) + start,
            attn_mask=mask,
            logits_at=torch.tensor(at, device=device),
        )[0]  # (K, vocab), row j for node at[j]
        row_of = {n: j for j, n in enumerate(at)}
        norm, best = logits.logsumexp(-1), logits.argmax(-1)
        out = []
        for conts, paths in zip(tree.continuations, tree.paths, strict=True):
            scores = []
            for c, nodes in zip(conts, paths, strict=True):
                rows = torch.tensor([row_of[n] for n in nodes], device=device)
                target = torch.tensor(c, device=device)
                lp = float((logits[rows, target] - norm[rows]).sum())
                greedy = bool((best[rows] == target).all())
                scores.append(ContinuationScore(lp, len(c), greedy))
            out.append(scores)
        return out


class _Tree:
    """Requests as a prefix tree: one node per distinct token prefix, parents first."""

    def __init__(self) -> None:
        self.child: dict[tuple[int, int], int] = {}  # (parent node or -1, token) -> node
        self.tokens: list[int] = []
        self.depth: list[int] = []  # the rotary position of each node
        self.parent: list[int] = []
        self.continuations: list[list[list[int]]] = []
        self.paths: list[list[list[int]]] = []  # per continuation, the nodes predicting it

    @property
    def size(self) -> int:
        return len(self.tokens)

    def _walk(self, tokens: list[int], node: int, dry: dict | None = None) -> int:
        """Follow the path of `tokens` from `node`, growing the tree; return its end node.

        With `dry`, new nodes go into that dict instead (ids below -1), leaving the tree as is.
        """
        for t in tokens:
            nxt = self.child.get((node, t))
            if nxt is None and dry is not None:
                nxt = dry.setdefault((node, t), -2 - len(dry))
            elif nxt is None:
                nxt = self.child[(node, t)] = len(self.tokens)
                self.tokens.append(t)
                self.depth.append(self.depth[node] + 1 if node >= 0 else 0)
                self.parent.append(node)
            node = nxt
        return node

    def new_nodes(self, ctx: list[int], conts: list[list[int]]) -> int:
        """How many nodes adding this request would create."""
        dry: dict = {}
        end = self._walk(ctx, -1, dry)
        for c in conts:
            self._walk(c[:-1], end, dry)
        return len(dry)

    def add(self, ctx: list[int], conts: list[list[int]]) -> None:
        end = self._walk(ctx, -1)
        paths = []
        for c in conts:
            path = [end]
            for t in c[:-1]:
                path.append(self._walk([t], path[-1]))
            paths.append(path)
        self.continuations.append(conts)
        self.paths.append(paths)

    def mask(self) -> torch.Tensor:
        """(1, 1, N, N) boolean: node i may attend to node j if j is i or an ancestor of i."""
        N = self.size
        mask = torch.zeros(N, N, dtype=torch.bool)
        for n, p in enumerate(self.parent):
            if p >= 0:
                mask[n] = mask[p]
            mask[n, n] = True
        return mask[None, None]
