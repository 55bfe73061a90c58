"""`explain(model, tokenizer, config) -> Explanation`: attributions, attention, logit lens.

What is explained, row by row:

- with a target and no contrast: each target token j, as the log-probability the model
  gives it after the prompt and target tokens 0..j-1, which are its sources;
- without a target: the same for the model's greedy continuation (up to max_new_tokens,
  an end-of-text token included when the model stops), so a later token can attribute to
  earlier generated ones as well as to the prompt;
- with a contrast: one row, log p(target | prompt) - log p(contrast | prompt) summed over
  each continuation's tokens, attributed to the prompt tokens. For single tokens this is the
  logit difference target - contrast (the softmax normaliser cancels).

`tokens` is the whole sequence (prompt then explained tokens); each row has one score per
token, None where that token is not a source of the row.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from lmforge.errors import InvalidInputError
from lmforge.explain.attribution import METHODS, Objective
from lmforge.explain.config import ExplainConfig
from lmforge.explain.inputs import check_text, fit_context, tokenize
from lmforge.explain.logit_lens import logit_lens
from lmforge.models.model import eos_ids


@dataclass
class Row:
    """One explained score and its attribution over `Explanation.tokens`."""

    label: str  # what is explained, e.g. "' Paris'" or "' Paris' − ' London'"
    score: float  # the explained value: a log-probability (or a difference of two)
    attributions: list[float | None]  # one per token; None: not a source of this row
    baseline_score: float | None = None  # the score with every source the baseline token


@dataclass
class Explanation:
    """Everything `lmforge explain` found; `to_json()` is what explain.json holds."""

    model: str
    method: str
    prompt: str
    target: str  # the given target, or the generated continuation
    generated: bool  # True when target is the model's own greedy continuation
    contrast: str | None
    tokens: list[dict[str, Any]]  # {"id", "text", "role": "prompt" | "output"}
    rows: list[Row]
    attention: list[list[list[list[float]]]]  # (layers, heads, T, T) over `tokens`
    logit_lens: dict[str, Any]  # {"layers", "tokens": (L+1, T, k) texts, "probs"}
    baseline: str = ""  # the token every removed source becomes (IG's start, occlusion)
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _unwrap(model, tokenizer):
    """(HF causal LM, tokenizer, display name) from an lmforge `Model` or a bare HF model."""
    hf = getattr(model, "hf_model", model)
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise InvalidInputError("no tokenizer given", "pass the model's tokenizer")
    name = getattr(model, "name", None) or getattr(hf.config, "_name_or_path", "") or "model"
    return hf, tokenizer, str(name)


@contextmanager
def _eager_eval(hf):
    """Eval mode and the eager attention (the only one that returns attention weights)."""
    was_training, before = hf.training, hf.config._attn_implementation
    hf.eval()
    if before != "eager":
        hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before != "eager":
            hf.set_attn_implementation(before)
        hf.train(was_training)


@torch.no_grad()
def greedy(hf, prompt_ids: list[int], max_new: int, eos: set[int]) -> list[int]:
    """The model's greedy continuation, stopping after an end-of-text token."""
    out, past = [], None
    step = torch.tensor([prompt_ids])
    for _ in range(max_new):
        res = hf(input_ids=step, past_key_values=past, use_cache=True, logits_to_keep=1)
        past, nxt = res.past_key_values, int(res.logits[0, -1].argmax())
        out.append(nxt)
        if nxt in eos:
            break
        step = torch.tensor([[nxt]])
    return out


def continuation_logprob(hf, embeds: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """sum_k log p(ids[k] | sources, ids[:k]) for a batch of source embeddings (B, T, H)."""
    table = hf.get_input_embeddings()
    b = embeds.shape[0]
    if len(ids) > 1:  # the continuation's own tokens (but its last) follow the sources
        follow = table(torch.tensor(ids[:-1])).to(embeds.dtype)  # (n-1, H)
        embeds = torch.cat([embeds, follow[None].expand(b, -1, -1)], dim=1)
    logits = hf(inputs_embeds=embeds, logits_to_keep=len(ids)).logits  # (B, n, V)
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp[:, torch.arange(len(ids)), torch.tensor(ids)].sum(-1)  # (B,)


def baseline_id(tokenizer) -> int:
    """The token whose embedding stands for "no token here": pad, else EOS, else UNK, else 0."""
    for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def objective(hf, source_ids: list[int], score, baseline: int, keep_first: bool = True):
    """`score` (B, T, H) -> (B,) over the embeddings of `source_ids`, as an `Objective`.

    `baseline`: the token id whose embedding stands for every removed source. With
    `keep_first` the first source is its own baseline, so no method ever removes it: it is
    the attention sink of most models, and interpolating it makes the score jump along the
    path (SmolLM2-135M: steps of 5 nats in 1/200 of the path, and IG's sums off by 40%).
    """
    table = hf.get_input_embeddings()
    embeds = table(torch.tensor(source_ids)).detach()  # (T, H)
    base = table(torch.tensor([baseline])).detach().expand_as(embeds).clone()
    if keep_first:
        base[0] = embeds[0]

    def attention() -> torch.Tensor:
        with torch.no_grad(), _eager_eval(hf):
            att = hf(input_ids=torch.tensor([source_ids]), output_attentions=True).attentions
        # layers x (1, heads, T, T) -> the last query row, averaged over layers and heads
        return torch.stack([a[0, :, -1, :] for a in att]).float().mean(dim=(0, 1))

    return Objective(embeds, base, score, attention)


def next_token_objective(
    hf, source_ids: list[int], token: int, baseline: int, keep_first: bool = True
) -> Objective:
    """log p(token | sources) as an `Objective` (one row of an explanation)."""

    def score(e):
        return continuation_logprob(hf, e, [token])

    return objective(hf, source_ids, score, baseline, keep_first)


def explain(model, tokenizer=None, config: ExplainConfig | None = None, **options) -> Explanation:
    """Explain `config.target` (or the greedy answer) after `config.prompt` by `model`.

    `model` is an lmforge `Model` or a `transformers` causal LM (then pass its tokenizer);
    `options` are ExplainConfig fields, for `explain(model, prompt="...")`.
    """
    start = time.perf_counter()
    config = (config or ExplainConfig.from_dict(options)).validate()
    hf, tok, name = _unwrap(model, tokenizer)
    notes: list[str] = []
    prompt = check_text(config.prompt, "prompt", notes)
    target = None if config.target is None else check_text(config.target, "target", notes)
    contrast = None if config.contrast is None else check_text(config.contrast, "contrast", notes)
    context = config.max_context or getattr(hf.config, "max_position_embeddings", None) or 2048
    method = METHODS[config.method]
    base = baseline_id(tok)

    with _eager_eval(hf):
        outputs: list[int] = []
        if target is None:  # explain the model's own greedy answer
            ids = fit_context(tok, tok.encode(prompt), config.max_new_tokens, context, notes)
            outputs = greedy(hf, ids, config.max_new_tokens, eos_ids(tok, hf))
            if contrast is not None:  # compare texts: the answer is re-read as a target
                target = tok.decode(outputs, skip_special_tokens=True)
                if not target.strip():
                    raise InvalidInputError(
                        "the model's answer is empty, so there is nothing to contrast",
                        "pass --target",
                    )
                notes.append(f"the target is the model's greedy answer {target!r}")
        if config.target is not None or contrast is not None:
            split = tokenize(tok, prompt, target, contrast, notes)
            reserve = max(len(split.target), len(split.contrast))
            ids = fit_context(tok, split.prompt, reserve, context, notes)
            outputs = split.target
        n_in, sequence = len(ids), ids + outputs

        rows = []
        if contrast is None:  # one row per explained token; its sources are all before it
            for j, out_id in enumerate(outputs):
                goal = next_token_objective(
                    hf, sequence[: n_in + j], out_id, base, config.keep_first
                )
                rows.append(_row(repr(tok.decode([out_id])), method, config, goal, sequence))
        else:  # one row: the whole target against the whole contrast, over the prompt

            def score(e):
                return continuation_logprob(hf, e, outputs) - continuation_logprob(
                    hf, e, split.contrast
                )

            label = f"{target!r} − {contrast!r}"
            rows.append(
                _row(
                    label,
                    method,
                    config,
                    objective(hf, ids, score, base, config.keep_first),
                    sequence,
                )
            )

        if config.method == "integrated_gradients":
            _check_completeness(rows, notes)

        with torch.no_grad():
            full = hf(
                input_ids=torch.tensor([sequence]),
                output_attentions=True,
                output_hidden_states=True,
            )
        # layers x (1, heads, T, T), rounded: the page and the JSON need no more
        attn = [(a[0].float() * 1e4).round().div(1e4).tolist() for a in full.attentions]
        lens = logit_lens(hf, full.hidden_states, full.logits, config.top_k)

    texts = [tok.decode([i]) for i in sequence]
    lens["tokens"] = [
        [[tok.decode([i]) for i in pos] for pos in layer] for layer in lens.pop("ids")
    ]
    lens["probs"] = [[[round(p, 4) for p in pos] for pos in layer] for layer in lens["probs"]]
    return Explanation(
        model=name,
        method=config.method,
        prompt=prompt,
        target=target if target is not None else tok.decode(outputs),
        generated=config.target is None,
        contrast=contrast,
        tokens=[
            {"id": i, "text": t, "role": "prompt" if k < n_in else "output"}
            for k, (i, t) in enumerate(zip(sequence, texts, strict=True))
        ],
        rows=rows,
        attention=attn,
        logit_lens=lens,
        baseline=tok.decode([base]),
        notes=notes,
        config=config.to_dict(),
        seconds=round(time.perf_counter() - start, 3),
    )


def _row(label: str, method, config: ExplainConfig, goal: Objective, sequence) -> Row:
    scores = method(goal, config).detach().float().tolist()
    n_tokens = len(sequence)
    with torch.no_grad():
        both = goal.score(torch.stack([goal.embeds, goal.baseline]))
    pad = [None] * (n_tokens - len(scores))
    return Row(
        label=label,
        score=float(both[0]),
        attributions=[float(s) for s in scores] + pad,
        baseline_score=float(both[1]),
    )


def _check_completeness(rows: list[Row], notes: list[str], rtol: float = 0.05) -> None:
    """IG's attributions must add up to score - baseline score; say so when they do not."""
    for row in rows:
        total = sum(a for a in row.attributions if a is not None)
        moved = row.score - row.baseline_score
        if abs(total - moved) > rtol * abs(moved) + 1e-3:
            notes.append(
                f"integrated gradients for {row.label}: attributions sum to {total:.3f} but the "
                f"score moved {moved:.3f} from the baseline; raise --steps for a closer estimate"
            )
