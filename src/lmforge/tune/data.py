"""Training data for `lmforge tune`: read chat / instruction / text files, mask, pack, collate.

Every example becomes `input_ids` and `labels` of the same length, in the Hugging Face
convention: `labels[t] == input_ids[t]` where the loss applies and `IGNORE` elsewhere; the
model's loss shifts by one itself. What is supervised depends on the format:

- chat (`{"messages": [...]}`): the assistant turns only, content plus the end-of-turn
  token(s) the template writes after it, never the `<|im_start|>assistant\\n` header;
- instruction (`{"prompt": ..., "completion": ...}`): the completion and an appended eos;
- text (a `.txt` file of blank-line-separated paragraphs, or `{"text": ...}`): every token.

The first token of every example is never supervised, so once examples are packed into one
row, the last position of one example is never trained to predict the start of the next.

Chat spans are found with the tokenizer's own template rather than by searching for marker
strings: rendering `messages[:i]` with the generation prompt gives where assistant turn `i`
starts, rendering `messages[:i + 1]` gives where it ends. Any template works as long as it
renders a conversation's beginning the same way in a longer conversation; where it does not
(e.g. templates that rewrite earlier turns), reading stops with the file and line.

Packing puts several short examples in one row (greedy first-fit, order-preserving). To keep
them apart, `collate` builds a 4D block-diagonal causal mask `(B, 1, T, T)` and position ids
that restart at 0 for each example. A 4D mask, because HF's eager and sdpa attention only
honour packed-sequence boundaries through an explicit 4D mask on CPU: a 2D padding mask
cannot express them, and the `position_ids`-only "varlen" path needs flash-attention on a
GPU. `additive_mask` turns the bool mask into the float mask that transformers passes
through to attention unchanged.

Bad input stops before any training with one line, `file:line: what is wrong — what to do`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jinja2 import TemplateError

from lmforge.errors import InvalidInputError, NotFoundError
from lmforge.io import read_jsonl, read_text

IGNORE = -100  # label of a token with no loss (PyTorch's cross_entropy ignore_index)
FORMATS = ("chat", "instruction", "text")
ROLES = ("system", "user", "assistant")
_KEYS = {"chat": ("messages",), "instruction": ("prompt", "completion"), "text": ("text",)}
_FIX_FORMAT = (
    'write one JSON object per line: {"messages": [...]}, {"prompt": ..., "completion": ...} '
    'or {"text": ...}, one format per file'
)


@dataclass
class Example:
    """One tokenized example: ids and labels of the same length (IGNORE where no loss)."""

    input_ids: list[int]
    labels: list[int]  # labels[t] == input_ids[t] where supervised; the loss shifts


@dataclass
class DataStats:
    """What `read_examples` kept and cut; `examples + dropped` is the number of records read."""

    format: str  # "chat" | "instruction" | "text"
    examples: int  # kept
    truncated: int  # kept examples that were cut to max_len
    dropped: int  # examples with no supervised token left after truncation
    tokens: int  # total tokens kept
    supervised: int  # tokens with a label


@dataclass
class Batch:
    """One training batch: each row is a group of packed examples, right-padded."""

    input_ids: torch.Tensor  # (B, T) long, right-padded with pad_id
    labels: torch.Tensor  # (B, T) long, IGNORE on padding and unsupervised tokens
    position_ids: torch.Tensor  # (B, T) long, restart at 0 for each packed example
    attention_mask: torch.Tensor  # (B, 1, T, T) bool, True = may attend (causal, same example)
    tokens: int  # real (non-pad) tokens
    supervised: int  # labels != IGNORE
    # per row, the (start, end) span of each example and of the trailing padding: what the
    # packed attention of `tune.attention` attends within, instead of the dense 4D mask
    segments: list[list[tuple[int, int]]] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with its tensors on `device`."""
        return Batch(
            self.input_ids.to(device),
            self.labels.to(device),
            self.position_ids.to(device),
            self.attention_mask.to(device),
            self.tokens,
            self.supervised,
            self.segments,
        )


# -- reading -------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """The format of a data file: text for .txt; for JSONL, named by the first record's keys."""
    path = Path(path)
    _check_file(path)
    if path.suffix == ".txt":
        return "text"
    for line, obj in _records(path):
        return _classify(obj, f"{path}:{line}")
    raise InvalidInputError(f"{path}: the dataset is empty", "add at least one example")


def read_examples(
    path: str | Path, tokenizer, max_len: int, format: str = "auto"
) -> tuple[list[Example], DataStats]:
    """Tokenize and mask every record of a data file, cutting each to `max_len` tokens."""
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise InvalidInputError(
            f"unknown data format {format!r}", f"use one of auto, {', '.join(FORMATS)}"
        )
    if max_len < 2:
        raise InvalidInputError(f"max_len must be at least 2, got {max_len}", "raise max_len")
    fmt = detect_format(path) if format == "auto" else format
    _check_file(path)
    if path.suffix == ".txt" and fmt != "text":
        raise InvalidInputError(
            f"{path}: a .txt file holds plain text, not {fmt} data",
            "give JSONL data a .jsonl name, or read this file as format text",
        )
    _check_tokenizer(tokenizer, fmt, path)
    encode = {"chat": _encode_chat, "instruction": _encode_instruction, "text": _encode_text}[fmt]

    examples: list[Example] = []
    stats = DataStats(fmt, examples=0, truncated=0, dropped=0, tokens=0, supervised=0)
    for line, obj in _records(path):
        where = f"{path}:{line}"
        got = _classify(obj, where)
        if got != fmt:
            raise InvalidInputError(
                f"{where}: a record of format {got!r} in a file of {fmt!r} data",
                "keep one format per file",
            )
        ids, labels = encode(obj, tokenizer, where)
        labels[0] = IGNORE  # never learn an example's first token (packing safety)
        cut = len(ids) > max_len
        ids, labels = ids[:max_len], labels[:max_len]
        supervised = sum(label != IGNORE for label in labels)
        if supervised == 0:
            stats.dropped += 1
            continue
        examples.append(Example(ids, labels))
        stats.truncated += cut
        stats.tokens += len(ids)
        stats.supervised += supervised
    stats.examples = len(examples)
    if not examples:
        if stats.dropped:
            raise InvalidInputError(
                f"{path}: no usable examples: all {stats.dropped} lost every supervised token "
                f"when cut to max_len={max_len}",
                "raise max_len, or shorten the prompts",
            )
        raise InvalidInputError(f"{path}: the dataset is empty", "add at least one example")
    return examples, stats


def _check_file(path: Path) -> None:
    """Stop on a missing path or a folder."""
    if not path.exists():
        raise NotFoundError(f"{path}: no such file", "check the path to the training data")
    if not path.is_file():
        raise InvalidInputError(f"{path}: not a file", "pass a .jsonl or .txt data file")


def _check_tokenizer(tokenizer, fmt: str, path: Path) -> None:
    """Stop early if the tokenizer lacks what the format needs (a chat template, an eos)."""
    if fmt == "chat" and not getattr(tokenizer, "chat_template", None):
        raise InvalidInputError(
            f"{path}: chat data needs a tokenizer with a chat template, and this one has none",
            "set tokenizer.chat_template, or convert the data to prompt/completion",
        )
    if fmt != "chat" and tokenizer.eos_token_id is None:
        raise InvalidInputError(
            f"{path}: {fmt} data appends an eos token, and this tokenizer has none",
            "set tokenizer.eos_token",
        )


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every non-blank line (JSONL) or paragraph (.txt)."""
    if path.suffix != ".txt":
        yield from read_jsonl(path, _FIX_FORMAT)
        return
    # paragraphs separated by blank lines; a record's line is its first
    start, para = 0, []
    for number, line in enumerate([*read_text(path).splitlines(), ""], start=1):
        if line.strip():
            start = start if para else number
            para.append(line)
        elif para:
            yield start, {"text": "\n".join(para)}
            para = []


def _classify(obj: dict, where: str) -> str:
    """The format whose keys the record has (other keys, e.g. an id, are left alone)."""
    found = [fmt for fmt, keys in _KEYS.items() if any(key in obj for key in keys)]
    if len(found) == 1:
        return found[0]
    what = "keys of several formats" if found else "none of the keys messages, prompt, text"
    raise InvalidInputError(f"{where}: the record has {what}: {sorted(obj)}", _FIX_FORMAT)


def text_field(obj: dict, key: str, where: str, fix: str = _FIX_FORMAT) -> str:
    """obj[key], checked to be a non-empty string; errors name `where` and suggest `fix`."""
    if key not in obj:
        raise InvalidInputError(f"{where}: missing key {key!r}", fix)
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{where}: {key!r} must be a string, got {type(value).__name__}", fix
        )
    if not value.strip():
        raise InvalidInputError(f"{where}: {key!r} is empty", "remove the record or fill it in")
    return value


# -- the three formats: each returns (input_ids, labels) before truncation ----------------


def _encode(tokenizer, text: str) -> list[int]:
    """Token ids of plain text, with the special tokens the tokenizer adds itself (e.g. bos)."""
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def _with_eos(ids: list[int], eos: int) -> list[int]:
    """ids ending in eos (appended unless the tokenizer already added it)."""
    return ids if ids and ids[-1] == eos else [*ids, eos]


def _encode_text(obj: dict, tokenizer, where: str) -> tuple[list[int], list[int]]:
    """Loss on every token but the first; eos appended."""
    ids = _with_eos(_encode(tokenizer, text_field(obj, "text", where)), tokenizer.eos_token_id)
    return ids, [IGNORE, *ids[1:]]


def _encode_instruction(obj: dict, tokenizer, where: str) -> tuple[list[int], list[int]]:
    """Loss on the completion's tokens and the appended eos, not on the prompt's."""
    prompt = text_field(obj, "prompt", where)
    completion = text_field(obj, "completion", where)
    # Tokenize the whole text once (as at inference) and split where it leaves the prompt's
    # own tokenization: a token merged across the boundary goes to the completion.
    prompt_ids = _encode(tokenizer, prompt)
    ids = _with_eos(_encode(tokenizer, prompt + completion), tokenizer.eos_token_id)
    start = 0
    while start < min(len(prompt_ids), len(ids)) and prompt_ids[start] == ids[start]:
        start += 1
    return ids, [IGNORE] * start + ids[start:]


def _encode_chat(obj: dict, tokenizer, where: str) -> tuple[list[int], list[int]]:
    """Loss on the assistant turns (content + end-of-turn tokens), located by rendering prefixes."""
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(f"{where}: 'messages' must be a non-empty list", _FIX_FORMAT)
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InvalidInputError(
                f"{where}: message {n} must be an object with a string 'content'",
                'write messages as {"role": ..., "content": "..."}',
            )
        if message.get("role") not in ROLES:
            raise InvalidInputError(
                f"{where}: message {n} has unknown role {message.get('role')!r}",
                f"use one of {', '.join(ROLES)}",
            )
    turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if not turns:
        raise InvalidInputError(
            f"{where}: a chat with no assistant turn (the loss is on assistant replies)",
            "add the assistant's reply, or drop the record",
        )
    ids = _render(tokenizer, messages, False, where)
    labels = [IGNORE] * len(ids)
    for i in turns:
        start = len(_prefix_of(ids, _render(tokenizer, messages[:i], True, where), i, where))
        end = len(_prefix_of(ids, _render(tokenizer, messages[: i + 1], False, where), i, where))
        labels[start:end] = ids[start:end]
    return ids, labels


def _render(tokenizer, messages: list[dict], generation_prompt: bool, where: str) -> list[int]:
    """Token ids of messages rendered by the tokenizer's chat template."""
    try:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=True
        )
    except (TemplateError, ValueError) as err:
        raise InvalidInputError(
            f"{where}: the chat template rejects this conversation: {err}",
            "check the roles and their order against what the model's template allows",
        ) from None
    return list(out["input_ids"])


def _prefix_of(full: list[int], part: list[int], turn: int, where: str) -> list[int]:
    """`part`, checked to be where `full` begins (else assistant turns cannot be located)."""
    if full[: len(part)] != part:
        raise InvalidInputError(
            f"{where}: the chat template renders the conversation up to message {turn} "
            "differently from the start of the whole conversation, so the assistant turn "
            "cannot be located",
            "use a template that keeps earlier turns unchanged, or convert the data to "
            "prompt/completion records",
        )
    return part


# -- split, pack, collate ------------------------------------------------------------------


def split(
    examples: list[Example], eval_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """(train, held-out), a random split fixed by `seed`; each keeps the original order."""
    if not 0 <= eval_fraction < 1:
        raise InvalidInputError(
            f"eval_fraction must be in [0, 1), got {eval_fraction}", "use e.g. 0.1"
        )
    n = len(examples)
    n_eval = 0 if eval_fraction == 0 or n < 2 else min(n - 1, max(1, round(n * eval_fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    train = [ex for i, ex in enumerate(examples) if i not in held]
    held_out = [ex for i, ex in enumerate(examples) if i in held]
    return train, held_out


def pack(examples: list[Example], seq_len: int) -> list[list[Example]]:
    """Greedy first-fit into groups of at most `seq_len` tokens, in order; longer ones alone."""
    if seq_len < 1:
        raise InvalidInputError(f"seq_len must be at least 1, got {seq_len}", "raise seq_len")
    groups: list[list[Example]] = []
    room = _Room(len(examples))
    for ex in examples:
        n = len(ex.input_ids)
        g = room.first_fit(n) if n <= seq_len else None
        if g is None:  # open a new group (an over-long example fills one on its own)
            g = len(groups)
            groups.append([])
            room.set(g, max(seq_len - n, 0))
        else:
            room.set(g, room.get(g) - n)
        groups[g].append(ex)
    return groups


class _Room:
    """Free space per group in a max segment tree: the first group with room in O(log n)."""

    def __init__(self, capacity: int):
        self.size = 1
        while self.size < max(capacity, 1):
            self.size *= 2
        self.tree = [-1] * (2 * self.size)  # -1: no group there yet

    def get(self, group: int) -> int:
        """The free space of `group`."""
        return self.tree[self.size + group]

    def set(self, group: int, free: int) -> None:
        """Record `group`'s free space and update the maxima above it."""
        i = self.size + group
        self.tree[i] = free
        while i > 1:
            i //= 2
            self.tree[i] = max(self.tree[2 * i], self.tree[2 * i + 1])

    def first_fit(self, n: int) -> int | None:
        """The lowest-numbered group with at least `n` free, or None."""
        if self.tree[1] < n:
            return None
        i = 1
        while i < self.size:
            i = 2 * i if self.tree[2 * i] >= n else 2 * i + 1
        return i - self.size


def collate(groups: list[list[Example]], pad_id: int) -> Batch:
    """One row per group (its examples back to back), right-padded, with a block-diagonal mask."""
    if not groups or not all(groups):
        raise ValueError("collate needs at least one group, and no empty group")
    lengths = [sum(len(ex.input_ids) for ex in group) for group in groups]
    B, T = len(groups), max(lengths)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    # Which example each position belongs to; every padding position is its own "example"
    # (a distinct negative id), so a padding row attends to itself only and softmax has no NaN.
    segment = (-1 - torch.arange(T)).repeat(B, 1)  # (B, T)
    spans: list[list[tuple[int, int]]] = []
    for b, group in enumerate(groups):
        start = 0
        spans.append([])
        for j, ex in enumerate(group):
            end = start + len(ex.input_ids)
            spans[-1].append((start, end))
            input_ids[b, start:end] = torch.tensor(ex.input_ids)
            labels[b, start:end] = torch.tensor(ex.labels)
            position_ids[b, start:end] = torch.arange(end - start)
            segment[b, start:end] = j
            start = end
        if start < T:
            spans[-1].append((start, T))
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T) query t sees keys <= t
    same = segment[:, :, None] == segment[:, None, :]  # (B, T, T)
    mask = (same & causal)[:, None]  # (B, 1, T, T)
    return Batch(
        input_ids,
        labels,
        position_ids,
        mask,
        tokens=sum(lengths),
        supervised=int((labels != IGNORE).sum()),
        segments=spans,
    )


def additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The bool mask as an additive float mask: 0 where allowed, dtype's minimum elsewhere.

    Give it to a HF model as `attention_mask=` together with `position_ids=`; transformers
    uses a 4D mask as given (no causal mask of its own is added), so packed examples stay
    apart with eager and sdpa attention alike. `dtype` should be the model's compute dtype.
    """
    blocked = torch.finfo(dtype).min
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, blocked)
