"""The training losses, as modules so that DDP sees every forward pass it must synchronise.

Causal LM loss is computed on the supervised positions only: the decoder runs over the whole
packed batch, but the LM head (49k x 576 on the default model, a fifth of its weights) and
the softmax run only where a label is set. Chat data supervises the assistant turns alone,
so this skips most of the head's work; the HF `Trainer` computes logits everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmforge.tune.data import IGNORE, Batch, additive_mask


def _decoder_and_head(model):
    """(decoder body, LM head) of a causal LM, seen through a `PeftModel` if there is one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.get_output_embeddings()


class CausalLMLoss(torch.nn.Module):
    """Summed token cross-entropy of a batch (divide by the step's supervised tokens)."""

    def __init__(self, model, virtual_tokens: bool = False, packed: bool = False):
        super().__init__()
        self.model = model
        self.virtual_tokens = virtual_tokens  # prompt/prefix tuning: peft owns the forward
        self.packed = packed  # the model runs under `attention.using_packed_attention`

    def forward(self, batch: Batch) -> torch.Tensor:
        labels = batch.labels[:, 1:]
        keep = labels != IGNORE
        if self.virtual_tokens:
            # one example per row: a 2D padding mask, which peft extends over its virtual tokens
            mask = batch.attention_mask[:, 0, :, 0]  # (B, T): the tokens that see the first one
            logits = self.model(input_ids=batch.input_ids, attention_mask=mask.long()).logits
            logits = logits[:, -batch.input_ids.shape[1] :][:, :-1][keep]
        else:
            logits = supervised_logits(self.model, batch, self.packed)
        return F.cross_entropy(logits.float(), labels[keep], reduction="sum")


def supervised_logits(model, batch: Batch, packed: bool = False) -> torch.Tensor:
    """(K, vocab) next-token logits at the K positions whose next token has a label.

    Row-major order, the same as `batch.labels[:, 1:][keep]`. `packed`: the model runs
    under `attention.using_packed_attention` (spans), else under the dense 4D mask.
    """
    keep = batch.labels[:, 1:] != IGNORE
    body, head = _decoder_and_head(model)
    if packed:  # attention span by span (see tune.attention)
        hidden = body(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            segments=batch.segments,
        ).last_hidden_state
    else:
        dtype = next(body.parameters()).dtype
        hidden = body(
            input_ids=batch.input_ids,
            attention_mask=additive_mask(batch.attention_mask, dtype),
            position_ids=batch.position_ids,
        ).last_hidden_state
    return head(hidden[:, :-1][keep])  # (K, vocab): supervised positions only
