"""From the user's text to token ids: checks for binary or mis-encoded text, the prompt /
target boundary, and the cut to the model's context. Every problem is one clear line."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from lmforge.errors import InvalidInputError

_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def check_text(value: str | bytes | None, what: str, notes: list[str]) -> str:
    """`value` as clean text, or InvalidInputError for empty, binary or mis-encoded input.

    Bytes must be UTF-8. A str with lone surrogates is what Python makes of invalid UTF-8 in
    command-line arguments (surrogateescape), so it gets the same message.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidInputError(
                f"{what} is not UTF-8 text (byte 0x{value[e.start]:02x} at offset {e.start})",
                "pass UTF-8 text; convert the file first, e.g. `iconv -f latin1 -t utf-8`",
            ) from None
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be text, not {type(value).__name__}", "pass a string")
    if not value.strip():
        raise InvalidInputError(f"{what} is empty", f"pass some text as the {what}")
    for i, ch in enumerate(value):
        if "\ud800" <= ch <= "\udfff":
            raise InvalidInputError(
                f"{what} is not valid UTF-8 (an undecodable byte at character {i}; "
                "mixed or wrong encoding?)",
                "pass UTF-8 text; convert it first, e.g. `iconv -f latin1 -t utf-8`",
            )
        if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS:
            raise InvalidInputError(
                f"{what} looks like binary data (control character {ch!r} at character {i})",
                "pass plain text, not the contents of a binary file",
            )
    if "\ufffd" in value:
        notes.append(
            f"the {what} contains U+FFFD replacement characters: it was decoded with errors "
            "before it reached lmforge"
        )
    return value


@dataclass
class Tokens:
    """Token ids of the prompt and of each continuation, and what had to be adjusted."""

    prompt: list[int]
    target: list[int] = field(default_factory=list)
    contrast: list[int] = field(default_factory=list)


def split_joint(tokenizer, prompt: str, continuation: str, what: str, notes: list[str]):
    """(prompt ids, continuation ids) from tokenizing prompt + continuation as one text.

    Tokenizing them apart would give ids the model never sees together (a BPE merges across
    the join: "is " + "Paris" is "is" + " Paris"). The boundary is the first token that ends
    after the prompt; a token that straddles the join belongs to the continuation, and a
    note says which prompt characters went with it.
    """
    text = prompt + continuation
    try:
        enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    except (NotImplementedError, ValueError, TypeError):  # a slow tokenizer: no offsets
        return _split_by_prefix(tokenizer, prompt, text, what)
    ids, offsets, special = enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]
    while ids and special[-1]:  # an EOS a tokenizer appends is not part of the continuation
        ids, offsets, special = ids[:-1], offsets[:-1], special[:-1]
    cut = len(prompt)
    boundary = next(
        (
            i
            for i, ((_, end), s) in enumerate(zip(offsets, special, strict=True))
            if not s and end > cut
        ),
        len(ids),
    )
    if boundary == len(ids):
        raise InvalidInputError(
            f"the {what} adds no token to the prompt", f"pass a non-empty {what}"
        )
    start = offsets[boundary][0]
    if start < cut:
        notes.append(
            f"the prompt's last characters {prompt[start:]!r} and the {what} tokenize together "
            f"({text[start : offsets[boundary][1]]!r} is one token); that token is explained as "
            f"part of the {what}"
        )
    if boundary == 0 or all(special[:boundary]):
        raise InvalidInputError(
            f"the prompt has no token of its own: it merges with the {what} into one token",
            f"end the prompt at a word boundary and start the {what} with the space",
        )
    return list(ids[:boundary]), list(ids[boundary:])


def _split_by_prefix(tokenizer, prompt: str, text: str, what: str):
    prompt_ids, ids = tokenizer.encode(prompt), tokenizer.encode(text)
    if ids[: len(prompt_ids)] != prompt_ids or len(ids) == len(prompt_ids):
        raise InvalidInputError(
            f"the prompt's tokens change when the {what} is appended (the tokenizer merges "
            "across the join) and this tokenizer gives no character offsets to find the boundary",
            f"end the prompt at a word boundary and start the {what} with the space",
        )
    return prompt_ids, ids[len(prompt_ids) :]


def tokenize(tokenizer, prompt: str, target: str | None, contrast: str | None, notes: list[str]):
    """`Tokens` for the prompt and the continuations (contrast needs the same prompt ids)."""
    if target is None:
        return Tokens(tokenizer.encode(prompt))
    prompt_ids, target_ids = split_joint(tokenizer, prompt, target, "target", notes)
    tokens = Tokens(prompt_ids, target_ids)
    if contrast is not None:
        other_ids, tokens.contrast = split_joint(tokenizer, prompt, contrast, "contrast", notes)
        if other_ids != prompt_ids:
            raise InvalidInputError(
                "the prompt tokenizes differently before the target and before the contrast",
                "end the prompt at a word boundary and start both with the space",
            )
        if tokens.contrast == target_ids:
            raise InvalidInputError(
                "the contrast is the same tokens as the target", "pass a different alternative"
            )
    return tokens


def fit_context(
    tokenizer, prompt_ids: list[int], reserve: int, context: int, notes: list[str]
) -> list[int]:
    """Cut the prompt from the left so that it plus `reserve` tokens fits in `context`.

    A leading BOS/special token is kept (the model was trained to see it first). The note
    says how many tokens went and what text they were.
    """
    room = context - reserve
    keep_first = 1 if prompt_ids and prompt_ids[0] in set(tokenizer.all_special_ids) else 0
    if room < keep_first + 1:
        raise InvalidInputError(
            f"the continuation ({reserve} tokens) leaves no room for the prompt in the "
            f"model's context of {context} tokens",
            "use a shorter target, a smaller max_new_tokens, or a larger max_context",
        )
    if len(prompt_ids) <= room:
        return prompt_ids
    n_cut = len(prompt_ids) - room
    cut = prompt_ids[keep_first : keep_first + n_cut]
    text = tokenizer.decode(cut)
    shown = text if len(text) <= 80 else text[:40] + " … " + text[-37:]
    notes.append(
        f"the prompt was cut from the left to fit the context of {context} tokens: "
        f"{n_cut} token(s) removed ({shown!r})"
    )
    return prompt_ids[:keep_first] + prompt_ids[keep_first + n_cut :]
