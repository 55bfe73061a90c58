"""The logit lens: what each layer would predict if the model stopped there.

Each layer's hidden state goes through the model's final norm and LM head (nostalgebraist,
2020); the top tokens and their probabilities, per layer and position, show where in the
depth of the model an answer forms.
"""

from __future__ import annotations

import torch


def final_norm(hf_model) -> torch.nn.Module | None:
    """The norm applied before the LM head (Llama/Qwen `norm`, GPT-2 `ln_f`, ...)."""
    base = getattr(hf_model, hf_model.base_model_prefix, hf_model)
    for name in ("norm", "final_layernorm", "ln_f", "final_layer_norm"):
        module = getattr(base, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


@torch.no_grad()
def logit_lens(hf_model, hidden_states, logits: torch.Tensor, top_k: int) -> dict:
    """{"layers": names, "ids": (L+1, T, k), "probs": (L+1, T, k)} as nested lists.

    `hidden_states`: the model's `output_hidden_states` for one sequence, L+1 tensors of
    (1, T, H), the embeddings first. `transformers` may hand back the last one already
    normalised; that is detected by comparing it with the model's own `logits` (1, T, V), so
    the norm is never applied twice.
    """
    head = hf_model.get_output_embeddings()
    norm = final_norm(hf_model) or torch.nn.Identity()
    last_is_normed = torch.allclose(
        head(hidden_states[-1]).float(), logits.float(), rtol=1e-3, atol=1e-4
    )
    ids, probs = [], []
    for i, h in enumerate(hidden_states):
        z = h if (i == len(hidden_states) - 1 and last_is_normed) else norm(h)
        p = torch.softmax(head(z)[0].float(), dim=-1)  # (T, V)
        top = p.topk(min(top_k, p.shape[-1]), dim=-1)
        ids.append(top.indices.tolist())
        probs.append(top.values.tolist())
    layers = ["embeddings"] + [f"layer {i}" for i in range(1, len(hidden_states))]
    return {"layers": layers, "ids": ids, "probs": probs}
