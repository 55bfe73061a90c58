"""Preference tuning (DPO): read prompt/chosen/rejected pairs, lay each out as one row, score it.

The loss of a pair is `-logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`, where `pi_*`
and `ref_*` are the summed log-probabilities of the reply's tokens under the policy (the
model with its LoRA adapter) and under the reference. The reference is the starting point
of the run: the base model (a fresh LoRA, whose B matrices are zero, is the base exactly;
it is read with the adapter disabled) or the adapter given with `--adapter`. It never
changes, so its log-probabilities are computed once, before training, without gradients,
and kept on each pair: each step then runs the policy alone, and no second copy of the
weights is ever held.

A pair is one row, not two: the prompt once, then the chosen reply, then the rejected one
(`prompt | chosen | rejected`). A 4D mask lets the rejected reply see the prompt and itself
but not the chosen reply, and its position ids restart where the prompt ends, so each
reply is computed exactly as if it followed the prompt alone, and the prompt, often the
longer part, is computed once instead of twice. The first rejected token is predicted from
the prompt's last position, not from the position before it, so every scored token names
the position whose hidden state predicts it (`sources`), and the LM head and softmax run
on those positions only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lmforge.errors import InvalidInputError
from lmforge.models.adapters import adapter_dir
from lmforge.tune.data import (
    ROLES,
    DataStats,
    _check_file,
    _prefix_of,
    _records,
    _render,
    text_field,
)
from lmforge.tune.loss import _decoder_and_head

KEYS = ("prompt", "chosen", "rejected")
_FIX = 'write one JSON object per line: {"prompt": ..., "chosen": ..., "rejected": ...}'


@dataclass
class Pair:
    """One preference pair as one row: the prompt once, then the chosen and the rejected reply."""

    input_ids: list[int]  # prompt + chosen + rejected
    prompt: int  # tokens of the prompt
    chosen: int  # tokens of the chosen reply; the rejected reply is the rest of the row
    line: int  # where the pair is in its file
    reference: tuple[float, float] | None = None  # log p_ref(chosen), log p_ref(rejected)

    @property
    def rejected(self) -> int:
        return len(self.input_ids) - self.prompt - self.chosen


# -- reading -------------------------------------------------------------------------------


def read_pairs(path: str | Path, tokenizer, max_len: int) -> tuple[list[Pair], DataStats]:
    """Tokenize every pair of a JSONL file; each prompt + reply is cut to `max_len` tokens.

    A cut keeps the start (the prompt, then as much of each reply as fits); a pair whose
    prompt alone fills `max_len` is dropped and counted.
    """
    path = Path(path)
    _check_file(path)
    if tokenizer.eos_token_id is None and not getattr(tokenizer, "chat_template", None):
        raise InvalidInputError(
            f"{path}: preference data without a chat template appends an eos token, and this "
            "tokenizer has none",
            "set tokenizer.eos_token",
        )
    pairs: list[Pair] = []
    stats = DataStats("preference", examples=0, truncated=0, dropped=0, tokens=0, supervised=0)
    for line, obj in _records(path):
        prompt, chosen, rejected = _encode_pair(obj, tokenizer, f"{path}:{line}")
        if len(prompt) >= max_len:
            stats.dropped += 1
            continue
        room = max_len - len(prompt)
        stats.truncated += len(chosen) > room or len(rejected) > room
        chosen, rejected = chosen[:room], rejected[:room]
        pairs.append(Pair([*prompt, *chosen, *rejected], len(prompt), len(chosen), line))
        stats.tokens += len(pairs[-1].input_ids)
        stats.supervised += len(chosen) + len(rejected)
    stats.examples = len(pairs)
    if not pairs:
        if stats.dropped:
            raise InvalidInputError(
                f"{path}: every prompt fills max_len={max_len} tokens, leaving no reply",
                "raise --seq-len, or shorten the prompts",
            )
        raise InvalidInputError(f"{path}: the dataset is empty", "add at least one pair")
    return pairs, stats


def _encode_pair(obj: dict, tokenizer, where: str) -> tuple[list[int], list[int], list[int]]:
    """(prompt ids, chosen reply ids, rejected reply ids) of one record."""
    missing = [key for key in KEYS if key not in obj]
    if missing:
        raise InvalidInputError(f"{where}: missing key(s) {', '.join(missing)}", _FIX)
    chosen, rejected = (text_field(obj, key, where, _FIX) for key in ("chosen", "rejected"))
    if chosen == rejected:
        raise InvalidInputError(
            f"{where}: 'chosen' and 'rejected' are the same text, so there is no preference",
            "make them differ, or remove the record",
        )
    messages = _prompt_messages(obj["prompt"], where)
    if getattr(tokenizer, "chat_template", None):
        # The prompt as user turn(s) and the generation prompt; each reply is the assistant
        # turn rendered after it, with its end-of-turn token(s), as `data` does for chat SFT.
        prompt = _render(tokenizer, messages, True, where)
        replies = []
        for text in (chosen, rejected):
            full = _render(
                tokenizer, [*messages, {"role": "assistant", "content": text}], False, where
            )
            replies.append(full[len(_prefix_of(full, prompt, len(messages), where)) :])
        return prompt, replies[0], replies[1]
    if isinstance(obj["prompt"], list):
        raise InvalidInputError(
            f"{where}: a prompt given as chat messages needs a tokenizer with a chat template",
            "set tokenizer.chat_template, or give the prompt as a string",
        )
    # Plain text: tokenize prompt + reply as a whole (as at inference) and split where the
    # two replies leave the prompt's own tokens; a token merged across the boundary goes to
    # the replies, so the shared prompt is the same for both.
    text = messages[0]["content"]
    prompt = list(tokenizer(text)["input_ids"])
    eos = tokenizer.eos_token_id
    fulls = [list(tokenizer(text + reply)["input_ids"]) for reply in (chosen, rejected)]
    fulls = [ids if ids[-1] == eos else [*ids, eos] for ids in fulls]
    start = min(_common(prompt, full) for full in fulls)
    if start == 0:
        raise InvalidInputError(
            f"{where}: the prompt merges into the replies' first tokens and keeps none of its own",
            "end the prompt with a space or newline",
        )
    return prompt[:start], fulls[0][start:], fulls[1][start:]


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _prompt_messages(prompt, where: str) -> list[dict]:
    """The prompt as chat messages: a string is one user turn."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError(
                f"{where}: 'prompt' is empty", "remove the record or fill it in"
            )
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise InvalidInputError(
            f"{where}: 'prompt' must be a string or a non-empty list of messages", _FIX
        )
    for n, message in enumerate(prompt):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InvalidInputError(
                f"{where}: prompt message {n} must be an object with a string 'content'",
                'write messages as {"role": ..., "content": "..."}',
            )
        if message.get("role") not in ROLES:
            raise InvalidInputError(
                f"{where}: prompt message {n} has unknown role {message.get('role')!r}",
                f"use one of {', '.join(ROLES)}",
            )
    return prompt


# -- batches -------------------------------------------------------------------------------


@dataclass
class PairBatch:
    """Pairs laid out one per row, right-padded, with the positions that score each reply."""

    input_ids: torch.Tensor  # (B, T) long, prompt | chosen | rejected, then pad_id
    position_ids: torch.Tensor  # (B, T) long; the rejected reply restarts after the prompt
    attention_mask: torch.Tensor  # (B, 1, T, T) bool, True = may attend
    sources: torch.Tensor  # (K,) long, index into the flattened (B * T) positions
    targets: torch.Tensor  # (K,) long, the reply token predicted at each source
    slots: torch.Tensor  # (K,) long, 2b for pair b's chosen reply, 2b + 1 for its rejected
    reference: torch.Tensor | None  # (B, 2) float64 log p_ref (chosen, rejected), once known
    tokens: int  # real (non-pad) tokens
    supervised: int  # pairs: the trainer divides the summed loss by this

    def to(self, device: torch.device | str) -> PairBatch:
        """The same batch with its tensors on `device`."""
        move = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return PairBatch(**{**vars(self), **move})


def collate(groups: list[list[Pair]], pad_id: int) -> PairBatch:
    """One row per pair (groups are flattened), with the mask described in the module doc."""
    pairs = [pair for group in groups for pair in group]
    if not pairs:
        raise ValueError("collate needs at least one pair")
    B, T = len(pairs), max(len(p.input_ids) for p in pairs)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    # Segment of each position: 0 prompt, 1 chosen, 2 rejected; each pad its own negative id,
    # so a padding row attends to itself only and softmax has no NaN.
    segment = (-1 - torch.arange(T)).repeat(B, 1)  # (B, T)
    sources, targets, slots = [], [], []
    for b, pair in enumerate(pairs):
        p, c, n = pair.prompt, pair.chosen, len(pair.input_ids)
        input_ids[b, :n] = torch.tensor(pair.input_ids)
        position_ids[b, : p + c] = torch.arange(p + c)
        position_ids[b, p + c : n] = torch.arange(p, n - c)
        segment[b, :p], segment[b, p : p + c], segment[b, p + c : n] = 0, 1, 2
        row = b * T
        # chosen token t is predicted at t - 1; rejected token p + c + i at p - 1 for i = 0
        # (the prompt's last position: the chosen reply is not its context), else at t - 1
        sources += [row + t - 1 for t in range(p, p + c)]
        sources += [row + p - 1] + [row + t - 1 for t in range(p + c + 1, n)]
        targets += pair.input_ids[p:]
        slots += [2 * b] * c + [2 * b + 1] * (n - p - c)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T) query t sees keys <= t
    same = segment[:, :, None] == segment[:, None, :]  # (B, T, T)
    sees_prompt = (segment[:, None, :] == 0) & (segment[:, :, None] >= 0)  # any reply -> prompt
    refs = [pair.reference for pair in pairs]
    return PairBatch(
        input_ids,
        position_ids,
        ((same | sees_prompt) & causal)[:, None],  # (B, 1, T, T)
        torch.tensor(sources),
        torch.tensor(targets),
        torch.tensor(slots),
        None if None in refs else torch.tensor(refs, dtype=torch.float64),
        tokens=sum(len(p.input_ids) for p in pairs),
        supervised=B,
    )


# -- the loss ------------------------------------------------------------------------------


class DPOLoss(torch.nn.Module):
    """Summed DPO loss of a batch of pairs (divide by the step's pairs); tallies the rewards."""

    def __init__(self, model, beta: float = 0.1):
        super().__init__()
        self.model = model
        self.beta = beta
        self._tally = [0.0] * 5  # pairs, margin > 0, margin, chosen reward, rejected reward

    def log_probs(self, batch: PairBatch) -> torch.Tensor:
        """(B, 2) summed log-probabilities of each pair's chosen and rejected reply."""
        from lmforge.tune.data import additive_mask

        body, head = _decoder_and_head(self.model)
        dtype = next(body.parameters()).dtype
        hidden = body(
            input_ids=batch.input_ids,
            attention_mask=additive_mask(batch.attention_mask, dtype),
            position_ids=batch.position_ids,
            use_cache=False,
        ).last_hidden_state  # (B, T, H)
        logits = head(hidden.flatten(0, 1)[batch.sources])  # (K, vocab): reply tokens only
        token_logp = -F.cross_entropy(logits.float(), batch.targets, reduction="none")  # (K,)
        B = batch.input_ids.shape[0]
        sums = torch.zeros(2 * B, dtype=token_logp.dtype, device=token_logp.device)
        return sums.index_add(0, batch.slots, token_logp).view(B, 2)

    def forward(self, batch: PairBatch) -> torch.Tensor:
        if batch.reference is None:
            raise RuntimeError("pairs have no reference log-probs: call set_reference first")
        policy = self.log_probs(batch)  # (B, 2)
        rewards = self.beta * (policy - batch.reference.to(policy))  # (B, 2) implicit rewards
        margin = rewards[:, 0] - rewards[:, 1]  # (B,)
        r, m = rewards.detach().double().cpu(), margin.detach().double().cpu()
        seen = (len(m), (m > 0).sum(), m.sum(), r[:, 0].sum(), r[:, 1].sum())
        self._tally = [a + float(b) for a, b in zip(self._tally, seen, strict=True)]
        return -F.logsigmoid(margin).sum()

    def take_metrics(self, reduce=None) -> dict[str, float]:
        """Mean reward accuracy, margin and rewards since the last call (then reset).

        `reduce` sums a float over processes (DDP); every process must call it alike.
        """
        reduce = reduce or (lambda x: x)
        totals = [reduce(x) for x in self._tally]
        self._tally = [0.0] * 5
        pairs = totals[0]
        if not pairs:
            return {}
        names = ("reward_accuracy", "reward_margin", "reward_chosen", "reward_rejected")
        return {k: round(v / pairs, 5) for k, v in zip(names, totals[1:], strict=True)}


# -- the model and its reference -----------------------------------------------------------


def starting_adapter(name: str, store):
    """The adapter artifact `--adapter` names, checked to be a LoRA that DPO can continue."""
    import json

    art = store.get(name)
    config = adapter_dir(art) / "adapter_config.json"
    if art.kind != "adapter" or not config.is_file():
        raise InvalidInputError(
            f"{name} is not an adapter", "pass --adapter NAME of a LoRA made by `lmforge tune`"
        )
    peft_type = json.loads(config.read_text()).get("peft_type")
    if peft_type != "LORA":
        raise InvalidInputError(
            f"{name} is a {str(peft_type).lower()} adapter; DPO continues LoRA/DoRA adapters",
            "pass a lora or dora adapter, or leave --adapter out to start a fresh LoRA",
        )
    return art


def wrap(model, options: dict, start=None):
    """The model with a trainable LoRA: fresh, or the weights of the `start` adapter artifact."""
    if start is None:
        from lmforge.tune.methods import wrap as wrap_method

        return wrap_method(model, "dpo", options)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir(start)), is_trainable=True)


@torch.no_grad()
def set_reference(model, pairs: list[Pair], pad_id: int, batch_size: int, fresh: bool) -> None:
    """Store each pair's reference log-probs: the model as it is now, in eval mode.

    `fresh`: the adapter is new (B = 0), so the reference is the base; it is computed with
    the adapter disabled, which gives the same numbers and skips the adapter's matmuls.
    """
    scorer = DPOLoss(model)
    was_training = model.training
    model.eval()
    off = model.disable_adapter() if fresh else contextlib.nullcontext()
    with off:
        for at in range(0, len(pairs), batch_size):
            chunk = pairs[at : at + batch_size]
            logp = scorer.log_probs(collate([chunk], pad_id)).double().cpu()
            for pair, (c, r) in zip(chunk, logp.tolist(), strict=True):
                pair.reference = (c, r)
    model.train(was_training)
