"""JSON mode: decoding constrained so that the output is one JSON object.

`JsonPrefix` is a pushdown automaton over characters that accepts exactly the prefixes of a
JSON object (RFC 8259; leading and trailing whitespace allowed). `JsonSampler` wraps the
one `Sampler`: it draws a token, keeps it if its text extends the output to a valid prefix
(an EOS token only once the object is closed), and otherwise masks it and draws again. That
samples exactly from the model's distribution restricted to the allowed tokens (rejection
sampling), and greedy decoding takes the likeliest allowed token. Tokens whose text is not
whole characters (a piece of a multi-byte UTF-8 character) are never allowed, so strings
hold ASCII and whole characters only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

WHITESPACE = " \t\n\r"
LITERALS = ("true", "false", "null")
NUMBER_END = {"zero", "int", "frac", "exp"}  # number states that may end the number


@dataclass(frozen=True)
class JsonPrefix:
    """The automaton's state after some text; `feed` returns the next state or None."""

    stack: tuple[str, ...] = ()  # open containers: "{" or "["
    mode: str = "start"  # start | value | key | colon | after | string | number | literal | done
    key: bool = False  # the open string is an object key
    escape: int = 0  # 1 after a backslash; 2..5 inside \\uXXXX (hex digits still due)
    number: str = ""  # the number's sub-state
    literal: str = ""  # the rest of a true/false/null still due

    @property
    def complete(self) -> bool:
        return self.mode == "done"

    def feed(self, text: str) -> JsonPrefix | None:
        state: JsonPrefix | None = self
        for ch in text:
            state = state._char(ch)
            if state is None:
                return None
        return state

    def _char(self, ch: str) -> JsonPrefix | None:
        m = self.mode
        if m == "string":
            return self._string(ch)
        if m == "number":
            nxt = _number(self.number, ch)
            if nxt is not None:
                return replace(self, number=nxt)
            if self.number not in NUMBER_END:
                return None
            return self._closed_value()._char(ch)  # the number ended: read ch after it
        if m == "literal":
            if ch != self.literal[0]:
                return None
            rest = self.literal[1:]
            return replace(self, literal=rest) if rest else self._closed_value()
        if ch in WHITESPACE:
            return self
        if m == "start":  # json_object: the top level is an object
            return replace(self, stack=("{",), mode="key_or_end") if ch == "{" else None
        if m == "done":
            return None
        if m in ("key", "key_or_end"):
            if ch == '"':
                return replace(self, mode="string", key=True)
            if ch == "}" and m == "key_or_end":
                return self._close()
            return None
        if m == "colon":
            return replace(self, mode="value") if ch == ":" else None
        if m in ("value", "value_or_end"):
            if ch == "]" and m == "value_or_end":
                return self._close()
            return self._value(ch)
        if m == "after":
            top = self.stack[-1]
            if ch == ",":
                return replace(self, mode="key" if top == "{" else "value")
            if (ch == "}" and top == "{") or (ch == "]" and top == "["):
                return self._close()
            return None
        return None

    def _value(self, ch: str) -> JsonPrefix | None:
        if ch == "{":
            return replace(self, stack=(*self.stack, "{"), mode="key_or_end")
        if ch == "[":
            return replace(self, stack=(*self.stack, "["), mode="value_or_end")
        if ch == '"':
            return replace(self, mode="string", key=False)
        if ch in "-0123456789":
            return replace(self, mode="number", number=_number("", ch))
        for word in LITERALS:
            if ch == word[0]:
                return replace(self, mode="literal", literal=word[1:])
        return None

    def _string(self, ch: str) -> JsonPrefix | None:
        if self.escape == 1:
            if ch == "u":
                return replace(self, escape=5)
            return replace(self, escape=0) if ch in '"\\/bfnrt' else None
        if self.escape > 1:  # \\uXXXX: hex digits
            if ch not in "0123456789abcdefABCDEF":
                return None
            return replace(self, escape=self.escape - 1 if self.escape > 2 else 0)
        if ch == "\\":
            return replace(self, escape=1)
        if ch == '"':
            return replace(self, mode="colon") if self.key else self._closed_value()
        if ord(ch) < 0x20 or ch == "\ufffd":  # control characters; a partial UTF-8 piece
            return None
        return self

    def _closed_value(self) -> JsonPrefix:
        return replace(self, mode="after", number="", literal="", key=False)

    def _close(self) -> JsonPrefix:
        stack = self.stack[:-1]
        return replace(self, stack=stack, mode="after" if stack else "done")


def _number(state: str, ch: str) -> str | None:
    """The number's next sub-state after `ch`, or None when ch cannot continue it."""
    digit = ch.isdigit() and ch.isascii()
    table = {
        "": {"-": "sign"},
        "sign": {},
        "zero": {".": "dot", "e": "e", "E": "e"},
        "int": {".": "dot", "e": "e", "E": "e"},
        "dot": {},
        "frac": {"e": "e", "E": "e"},
        "e": {"+": "esign", "-": "esign"},
        "esign": {},
        "exp": {},
    }
    if digit:
        if state in ("", "sign"):
            return "zero" if ch == "0" else "int"
        if state == "int":
            return "int"
        if state in ("dot", "frac"):
            return "frac"
        if state in ("e", "esign", "exp"):
            return "exp"
        return None
    return table.get(state, {}).get(ch)


class JsonSampler:
    """A `Sampler` for one row whose picks keep the output a prefix of one JSON object."""

    MAX_DRAWS = 64  # then: the likeliest allowed token, searched in order

    def __init__(self, sampler, token_texts: list[str], eos_ids: frozenset[int]):
        self.sampler = sampler
        self.texts = token_texts
        self.eos_ids = eos_ids
        self.state = JsonPrefix()

    @property
    def seen(self):
        return self.sampler.seen

    def observe(self, tokens: torch.Tensor) -> None:
        self.sampler.observe(tokens)

    def _next(self, tok: int) -> JsonPrefix | None:
        if tok in self.eos_ids:
            return self.state if self.state.complete else None
        if tok >= len(self.texts) or not self.texts[tok]:
            return None
        return self.state.feed(self.texts[tok])

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:  # (1, vocab) -> (1,)
        logits = logits.clone()
        for _ in range(self.MAX_DRAWS):
            tok = int(self.sampler(logits)[0])
            state = self._next(tok)
            if state is not None:
                self.state = state
                return torch.tensor([tok], device=logits.device)
            logits[0, tok] = float("-inf")
        for tok in logits[0].argsort(descending=True).tolist():
            if logits[0, tok] == float("-inf"):
                break
            state = self._next(tok)
            if state is not None:
                self.state = state
                return torch.tensor([tok], device=logits.device)
        raise RuntimeError("no token continues the JSON output")  # the vocabulary lacks '}'?


def token_texts(tokenizer, vocab: int) -> list[str]:
    """Each token id's own text (special tokens: empty, so never allowed inside JSON)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = []
    for i in range(vocab):
        out.append("" if i in special else tokenizer.decode([i]))
    return out
