"""Structured pruning surgery: drop KV head groups, MLP channels or whole decoder layers.

Each function takes a Llama-family model and what to keep, and returns a new model of the
same class built from a smaller config, holding the kept slices of the old weights (loaded
with `strict=True`, so a shape or name that does not fit fails here, not at load time).
The result is a plain config that `AutoModelForCausalLM.from_pretrained` reads as it is:

- heads: Llama configs hold one `num_attention_heads` / `num_key_value_heads` for every
  layer, so every layer keeps the same number of KV groups (each layer chooses which). A
  KV group is one key/value head and the query heads that share it (GQA); dropping whole
  groups keeps the grouping intact. `head_dim` is written explicitly, since
  hidden_size // num_attention_heads no longer gives it.
- channels: every layer keeps the same number of intermediate channels (one
  `intermediate_size`): rows of gate_proj and up_proj, columns of down_proj.
- layers: the kept blocks are renumbered 0..L'-1 (`layer_types`, where a config has one,
  is cut the same way).
"""

from __future__ import annotations

import copy

import torch

_ATTN = "model.layers.{i}.self_attn."
_MLP = "model.layers.{i}.mlp."


def rebuild(model, changes: dict, state: dict[str, torch.Tensor]):
    """A fresh model of `model`'s class with `changes` applied to its config, holding `state`."""
    from transformers.initialization import no_init_weights

    config = copy.deepcopy(model.config)
    for key, value in changes.items():
        setattr(config, key, value)
    with no_init_weights():  # every weight is overwritten below: skip the random init
        new = type(model)(config)
    new.tie_weights()  # skipping the init also skips tying lm_head to the embeddings
    new.load_state_dict(state, strict=True)
    return new.eval()


def _rows(units: list[int], size: int) -> torch.Tensor:
    """Indices of the rows of `units`, each `size` rows long: [u * size, (u + 1) * size)."""
    return torch.cat([torch.arange(u * size, (u + 1) * size) for u in units])


def drop_heads(model, keep: list[list[int]]):
    """Keep the KV groups `keep[i]` of layer i (the same count in every layer)."""
    cfg = model.config
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    rep = heads // kv  # query heads per KV group
    state = dict(model.state_dict())
    for i, groups in enumerate(keep):
        kv_rows = _rows(groups, hd)  # (len(groups) * hd,)
        q_rows = _rows([g * rep + r for g in groups for r in range(rep)], hd)
        p = _ATTN.format(i=i)
        for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
            for part in ("weight", "bias"):
                if f"{p}{name}.{part}" in state:
                    state[f"{p}{name}.{part}"] = state[f"{p}{name}.{part}"][rows]
        state[f"{p}o_proj.weight"] = state[f"{p}o_proj.weight"][:, q_rows]  # (hidden, q width)
    n = len(keep[0])
    changes = {"num_attention_heads": n * rep, "num_key_value_heads": n, "head_dim": hd}
    return rebuild(model, changes, state)


def drop_channels(model, keep: list[torch.Tensor]):
    """Keep the intermediate channels `keep[i]` of layer i's MLP (the same count everywhere)."""
    state = dict(model.state_dict())
    for i, idx in enumerate(keep):
        p = _MLP.format(i=i)
        for name in ("gate_proj", "up_proj"):
            for part in ("weight", "bias"):
                if f"{p}{name}.{part}" in state:
                    state[f"{p}{name}.{part}"] = state[f"{p}{name}.{part}"][idx]
        state[f"{p}down_proj.weight"] = state[f"{p}down_proj.weight"][:, idx]  # (hidden, kept)
    return rebuild(model, {"intermediate_size": len(keep[0])}, state)


def drop_layers(model, keep: list[int]):
    """Keep the decoder layers `keep` (in order), renumbered from 0."""
    new_index = {old: new for new, old in enumerate(keep)}
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("model.layers."):
            old = int(key.split(".")[2])
            if old not in new_index:
                continue
            key = f"model.layers.{new_index[old]}.{key.split('.', 3)[3]}"
        state[key] = value
    changes: dict = {"num_hidden_layers": len(keep)}
    layer_types = getattr(model.config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == model.config.num_hidden_layers:
        changes["layer_types"] = [layer_types[i] for i in keep]
    return rebuild(model, changes, state)
