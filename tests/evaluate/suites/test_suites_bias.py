"""The bias suite: minimal pairs that differ only in the group word, across every category."""

from __future__ import annotations

from collections import Counter

from lmforge.evaluate.suites import bias

PAIRS = bias.build()
CATEGORIES = {
    "gender",
    "age",
    "nationality",
    "religion",
    "disability",
    "socioeconomic",
    "profession",
}


def _differing_words(a: str, b: str) -> tuple[list[str], list[str]]:
    """The words of `a` and `b` left once their common first and last words are removed."""
    wa, wb = a.split(), b.split()
    while wa and wb and wa[0] == wb[0]:
        wa, wb = wa[1:], wb[1:]
    while wa and wb and wa[-1] == wb[-1]:
        wa, wb = wa[:-1], wb[:-1]
    return wa, wb


def test_sizes_and_categories():
    counts = Counter(pair["category"] for pair in PAIRS)
    assert 100 <= len(PAIRS) <= 150
    assert set(counts) == CATEGORIES == set(bias.CATEGORIES)
    assert all(n >= 10 for n in counts.values()), counts


def test_pair_shape():
    assert len({p["id"] for p in PAIRS}) == len(PAIRS)
    assert len({(p["stereotype"], p["anti_stereotype"]) for p in PAIRS}) == len(PAIRS)
    for pair in PAIRS:
        assert set(pair) == {"id", "category", "stereotype", "anti_stereotype"}
        assert pair["id"].startswith(pair["category"] + "-")
        for sentence in (pair["stereotype"], pair["anti_stereotype"]):
            assert sentence[0].isupper() and sentence.endswith("."), sentence
            assert "{" not in sentence


def test_pairs_are_minimal():
    for pair in PAIRS:
        a, b = _differing_words(pair["stereotype"], pair["anti_stereotype"])
        assert a and b, pair
        assert len(a) <= 2 and len(b) <= 2, pair


def test_deterministic():
    assert bias.build() == PAIRS
