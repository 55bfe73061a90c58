"""Text plumbing of the loop: `StopMatcher` and `IncrementalDetokenizer`."""

from __future__ import annotations

import pytest

from lmforge.engine.detokenize import IncrementalDetokenizer
from lmforge.engine.generate import StopMatcher

# -- StopMatcher -----------------------------------------------------------------------------


def test_stop_string_split_across_pushes():
    m = StopMatcher(["world"])
    assert m.push("Hello wor") == ("Hello ", False)  # "wor" may begin "world": held back
    assert m.push("l") == ("", False)
    assert m.push("d! more") == ("", True)  # the stop string and what follows are dropped


def test_held_back_prefix_is_released_when_it_is_not_a_stop():
    m = StopMatcher(["world"])
    assert m.push("Hello wor") == ("Hello ", False)
    assert m.push("k") == ("work", False)


def test_flush_returns_the_held_back_tail_once():
    m = StopMatcher(["###"])
    assert m.push("answer ##") == ("answer ", False)
    assert m.flush() == "##"
    assert m.flush() == ""


def test_text_before_a_stop_in_the_same_push_is_kept():
    m = StopMatcher(["\n\n"])
    assert m.push("one line\n") == ("one line", False)
    assert m.push("\nnext paragraph") == ("", True)
    assert StopMatcher(["STOP"]).push("go go STOP go") == ("go go ", True)


def test_the_earliest_of_several_stop_strings_wins():
    m = StopMatcher(["cat", "dog"])
    assert m.push("a dog and a cat") == ("a ", True)


def test_longest_possible_prefix_is_held():
    m = StopMatcher(["abcd", "cx"])
    assert m.push("zabc") == ("z", False)  # "abc" may begin "abcd" (longer than "c" of "cx")
    assert m.push("x") == ("ab", True)  # ... but "cx" completes first: "ab" is released


def test_no_stop_strings_pass_text_through():
    m = StopMatcher([])
    assert m.push("anything") == ("anything", False)
    assert m.flush() == ""


# -- IncrementalDetokenizer ------------------------------------------------------------------

MIXED = "The café is naïve: 日本語のテキスト 🙂🚀 and more."


def test_incremental_detokenizer_never_emits_a_replacement_character(bpe_tokenizer):
    ids = bpe_tokenizer.encode(MIXED)
    detok = IncrementalDetokenizer(bpe_tokenizer)
    deltas = [detok.add(t) for t in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + detok.flush() == MIXED
    # The test means something only if some token ended mid-character and was held back:
    assert any(bpe_tokenizer.decode([t]).endswith("\ufffd") for t in ids)
    assert "" in deltas


@pytest.mark.parametrize("char", ["é", "日", "🙂", "🚀"])
def test_a_multi_byte_character_comes_out_whole(bpe_tokenizer, char):
    ids = bpe_tokenizer.encode("a" + char)
    detok = IncrementalDetokenizer(bpe_tokenizer)
    deltas = [d for d in (detok.add(t) for t in ids) if d]
    assert "".join(deltas) == "a" + char
    assert detok.flush() == ""


def test_flush_releases_an_incomplete_character_as_a_replacement(bpe_tokenizer):
    ids = bpe_tokenizer.encode("ok 🚀")
    partial = next(i for i in range(1, len(ids)) if "\ufffd" in bpe_tokenizer.decode(ids[:i]))
    detok = IncrementalDetokenizer(bpe_tokenizer)
    text = "".join(detok.add(t) for t in ids[:partial])
    assert "\ufffd" not in text
    assert text + detok.flush() == bpe_tokenizer.decode(ids[:partial])


def test_special_tokens_are_skipped(bpe_tokenizer):
    eos = bpe_tokenizer.eos_token_id
    ids = [*bpe_tokenizer.encode("hi"), eos, *bpe_tokenizer.encode(" there")]
    detok = IncrementalDetokenizer(bpe_tokenizer)
    assert "".join(detok.add(t) for t in ids) + detok.flush() == "hi there"
