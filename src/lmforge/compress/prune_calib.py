"""Calibration for pruning: a few rows of text, and what pruning measures on them.

Every statistic here comes from forward passes of the dense model over the same rows,
with hooks that read a module's input or output and keep a running sum:

- `input_norms`: the L2 norm of each input feature of a linear over all tokens, ||X_j||
  (Wanda's activation term);
- `head_importance`: how large each attention head's share of `o_proj`'s output is;
- `layer_importance`: 1 - cos(h_in, h_out) across each decoder block (ShortGPT's "block
  influence"): a block that barely turns the hidden state does little.

One pass over the dense model, not Wanda's layer-by-layer pass that feeds each block the
already-pruned blocks' output: simpler, and the same statistics for every method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import cached_property

import torch
import torch.nn.functional as F

from lmforge.errors import InvalidInputError
from lmforge.quickstart import FACTS, sentence

BATCH = 4  # calibration rows per forward pass


def default_texts() -> list[str]:
    """Project-written calibration text: the quickstart manual's questions and answers."""
    return [f"{fact.train_question} {sentence(fact)}" for fact in FACTS]


def block_linears(model) -> dict[str, torch.nn.Linear]:
    """The linear layers inside the decoder blocks, by module path (no embeddings, no lm_head)."""
    return {
        path: module
        for path, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{path}"
    }


class Calibration:
    """Calibration rows for one tokenizer, tokenized on first use; `tick` after each batch."""

    def __init__(
        self,
        tokenizer,
        source: str | None,
        samples: int,
        seq_len: int,
        tick: Callable[[], None] | None = None,
    ):
        self.tokenizer, self.source = tokenizer, source
        self.samples, self.seq_len = samples, seq_len
        self.tick = tick or (lambda: None)

    @cached_property
    def rows(self) -> torch.Tensor:
        """(N, T) token ids: the texts end to end, cut into at most `samples` rows of `seq_len`."""
        tok = self.tokenizer
        if self.source is None:
            eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
            pieces = [tok.encode(text) + eos for text in default_texts()]
        else:
            from lmforge.tune.data import read_examples

            examples, _ = read_examples(self.source, tok, self.seq_len)
            pieces = [e.input_ids for e in examples]
        stream = [t for piece in pieces for t in piece]
        if len(stream) < 2:
            raise InvalidInputError(
                f"the calibration text holds {len(stream)} token(s)", "pass a longer --calib file"
            )
        n = min(self.samples, len(stream) // self.seq_len)
        if n == 0:  # shorter than one row: one short row
            return torch.tensor([stream])
        return torch.tensor(stream[: n * self.seq_len]).view(n, self.seq_len)

    @property
    def batches(self) -> int:
        return -(-len(self.rows) // BATCH)

    @torch.no_grad()
    def run(self, model) -> None:
        """Forward every batch of rows through `model`'s decoder, for the hooks to read.

        The LM head is skipped: no statistic needs the logits, and on a small model with a
        large vocabulary it is a fifth of the work (SmolLM2-135M: 49152 x 576).
        """
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
        for at in range(0, len(self.rows), BATCH):
            decoder(input_ids=self.rows[at : at + BATCH], use_cache=False)  # (B, T) ids
            self.tick()

    def input_norms(self, model, names: list[str]) -> dict[str, torch.Tensor]:
        """||X_j||_2 over all calibration tokens for each input feature j of each named linear."""
        modules = dict(model.named_modules())
        sums = {name: torch.zeros(modules[name].in_features) for name in names}

        def hook(name):
            def read(_module, args):
                x = args[0].detach().float()  # (B, T, in)
                sums[name] += x.pow(2).reshape(-1, x.shape[-1]).sum(0)

            return read

        with _hooks([modules[n].register_forward_pre_hook(hook(n)) for n in names]):
            self.run(model)
        return {name: s.sqrt() for name, s in sums.items()}  # name -> (in,)

    def head_importance(self, model) -> torch.Tensor:
        """(layers, heads): mean L2 norm of each query head's term of `o_proj`'s output.

        o_proj(x) = sum_h W_o[:, h] @ x_h, so the term of head h is exactly what removing
        head h (its query rows and o_proj columns) takes away from the block's output.
        """
        cfg = model.config
        layers = model.model.layers
        heads = cfg.num_attention_heads
        sums = torch.zeros(len(layers), heads)
        count = [0]

        def hook(i, o_proj):
            def read(_module, args):
                x = args[0].detach().float()  # (B, T, heads * head_dim)
                x = x.reshape(-1, heads, x.shape[-1] // heads)  # (N, heads, hd)
                w = o_proj.weight.detach().float()  # (hidden, heads * hd)
                w = w.view(w.shape[0], heads, -1)  # (hidden, heads, hd)
                terms = torch.einsum("nhd,ohd->nho", x, w)  # (N, heads, hidden)
                sums[i] += terms.norm(dim=-1).sum(0)
                if i == 0:
                    count[0] += x.shape[0]

            return read

        handles = [
            layer.self_attn.o_proj.register_forward_pre_hook(hook(i, layer.self_attn.o_proj))
            for i, layer in enumerate(layers)
        ]
        with _hooks(handles):
            self.run(model)
        return sums / max(count[0], 1)

    def layer_importance(self, model) -> torch.Tensor:
        """(layers,): mean 1 - cos(input, output) of each decoder block over all tokens."""
        layers = model.model.layers
        sums = torch.zeros(len(layers))
        count = [0]

        def hook(i):
            def read(_module, args, kwargs, output):
                h_in = args[0] if args else kwargs["hidden_states"]  # (B, T, hidden)
                h_out = output[0] if isinstance(output, tuple) else output
                cos = F.cosine_similarity(h_in.float(), h_out.float(), dim=-1)  # (B, T)
                sums[i] += (1 - cos).sum()
                if i == 0:
                    count[0] += cos.numel()

            return read

        handles = [
            layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)
        ]
        with _hooks(handles):
            self.run(model)
        return sums / max(count[0], 1)

    @torch.no_grad()
    def loss(self, model) -> float:
        """Mean next-token cross-entropy of `model` over the calibration rows."""
        total, tokens = 0.0, 0
        for at in range(0, len(self.rows), BATCH):
            ids = self.rows[at : at + BATCH]  # (B, T)
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            target = ids[:, 1:]
            total += float(F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum"))
            tokens += target.numel()
        return total / max(tokens, 1)


@contextlib.contextmanager
def _hooks(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
