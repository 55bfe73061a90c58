"""Incremental detokenization: text deltas that never split a multi-byte character."""

from __future__ import annotations


class IncrementalDetokenizer:
    """Feed token ids one at a time; get back the new text they complete.

    Byte-level tokenizers can split one character (an emoji, a CJK glyph) over several
    tokens; decoding such a prefix yields U+FFFD. We hold text back until it decodes
    cleanly. Decoding a short window (from `prefix` on) rather than each token alone keeps
    the spaces that SentencePiece-style tokenizers attach to the next word.
    """

    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = 0  # start of the decoding window
        self.read = 0  # ids before this are already emitted as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special)

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (a truly incomplete character stays as U+FFFD)."""
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return after[len(before) :]
