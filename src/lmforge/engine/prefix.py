"""Prompt- and prefix-tuned adapters in the engine: a learned key/value prefix on every cache.

Prompt tuning learns n virtual token embeddings put before every input; prefix tuning learns
n keys and values per layer. Either way the real tokens attend to n extra positions whose
keys and values never change, and start at rotary position n. So both become one thing
here: the per-layer (k, v) of those n positions, computed once when the model loads and
copied into every new cache. Decoding then runs at base-model speed, on the native engine.
"""

from __future__ import annotations

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: k, v of shape (1, n_kv, n, head_dim)


@torch.no_grad()
def virtual_prefix(peft_model) -> KV:
    """The per-layer keys and values of a prompt- or prefix-tuned `PeftModel`'s virtual tokens."""
    peft_type = str(peft_model.peft_config[peft_model.active_adapter].peft_type)
    if peft_type.endswith("PREFIX_TUNING"):
        past = peft_model.get_prompt(batch_size=1)
    elif peft_type.endswith("PROMPT_TUNING"):
        embeds = peft_model.get_prompt(batch_size=1)  # (1, n, D)
        base = peft_model.get_base_model()
        past = base(inputs_embeds=embeds.to(base.dtype), use_cache=True).past_key_values
    else:
        raise ValueError(f"{peft_type} adapters fold into weights; they have no prefix")
    if hasattr(past, "to_legacy_cache"):
        past = past.to_legacy_cache()
    elif hasattr(past, "layers"):
        past = [(layer.keys, layer.values) for layer in past.layers]
    return [(k.detach().float().contiguous(), v.detach().float().contiguous()) for k, v in past]


class PrefixDecoder:
    """A decoder whose every cache opens with a fixed key/value prefix of `prefix_len` positions.

    Wraps the native or `transformers` decoder. The prefix sits before any left padding;
    the callers (the decode loop, the scorer) start their rows at `cache.pos` and add
    `prefix_len` to the rotary positions they pass.
    """

    def __init__(self, decoder, kv: KV):
        self.inner = decoder
        self.kv = kv
        self.prefix_len = kv[0][0].shape[2]
        self.max_positions = decoder.max_positions - self.prefix_len

    def __getattr__(self, name):  # device, vocab_size, dtype, config ...
        return getattr(self.inner, name)

    def new_cache(self, batch: int, max_len: int):
        cache = self.inner.new_cache(batch, max_len + self.prefix_len)
        cache.prefill(self.kv)
        return cache
