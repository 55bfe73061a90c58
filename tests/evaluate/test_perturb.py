"""Robustness perturbations: every registered one through one matrix, then each one's rules."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import pytest

from lmforge.errors import InvalidInputError
from lmforge.evaluate.perturb import PERTURBATIONS, perturb

# Written for these tests: something for every perturbation to change (upper and lower case,
# gaps, "does not", "isn't", synonym-table words, letters) and numbers that must survive.
TEXT = (
    "Alice does not think the big red car is fast, but it is 42 km away and costs 3.50 euros. "
    "The small museum isn't open on Mondays; perhaps it is a difficult, strange rule."
)
RANDOM = {"typos", "whitespace", "synonyms", "distractor"}


def test_registry_lists_every_perturbation_sorted():
    assert PERTURBATIONS == (
        "contractions",
        "distractor",
        "lowercase",
        "synonyms",
        "typos",
        "uppercase",
        "whitespace",
    )
    assert RANDOM.issubset(PERTURBATIONS)


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_each_is_deterministic_under_a_seed_and_changes_the_text(name):
    out = perturb(TEXT, name, seed=7)
    assert out != TEXT
    assert perturb(TEXT, name, seed=7) == out
    # The seed comes from (seed, name, text), not from the global random state.
    random.seed(123)
    assert perturb(TEXT, name, seed=7) == out


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_ones_differ_across_seeds(name):
    outputs = {perturb(TEXT, name, seed) for seed in range(8)}
    assert len(outputs) >= 4


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_blank_text_is_left_alone(name):
    assert perturb("", name, seed=1) == ""
    assert perturb("   ", name, seed=1) == "   "


def test_seeding_does_not_depend_on_python_hash_randomisation():
    code = (
        "from lmforge.evaluate.perturb import PERTURBATIONS, perturb\n"
        f"print([perturb({TEXT!r}, name, 3) for name in PERTURBATIONS])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_unknown_name_says_which_exist():
    with pytest.raises(InvalidInputError, match="unknown perturbation 'typo'.*typos"):
        perturb(TEXT, "typo", seed=0)


@pytest.mark.parametrize("seed", range(20))
def test_typos_keep_digits_and_change_about_one_word_in_ten(seed):
    out = perturb(TEXT, "typos", seed)
    assert re.findall(r"\d", out) == re.findall(r"\d", TEXT)
    assert re.findall(r"\d+(?:\.\d+)?", out) == ["42", "3.50"]
    changed = [a for a, b in zip(TEXT.split(), out.split(), strict=True) if a != b]
    assert len(changed) == 2  # 24 words of 3+ letters, one slip per ten
    for before, after in zip(TEXT.split(), out.split(), strict=True):
        assert before[0] == after[0]  # first letters are never touched
        assert abs(len(before) - len(after)) <= 1


def test_typos_leave_text_without_words_alone():
    assert perturb("12 + 7 = 19, so x = 3.", "typos", seed=0) == "12 + 7 = 19, so x = 3."


def test_case_perturbations():
    assert perturb("Paris is in France.", "lowercase", 0) == "paris is in france."
    assert perturb("Paris is in France.", "uppercase", 0) == "PARIS IS IN FRANCE."


@pytest.mark.parametrize("seed", range(5))
def test_whitespace_only_changes_the_gaps_between_words(seed):
    out = perturb(TEXT, "whitespace", seed)
    assert out.split() == TEXT.split()
    assert len(out) > len(TEXT)
    assert out[0] == TEXT[0] and out[-1] == TEXT[-1]


@pytest.mark.parametrize(
    ("text", "flipped"),
    [
        ("I do not know.", "I don't know."),
        ("I don't know.", "I do not know."),
        ("It is raining and we are late.", "It's raining and we're late."),
        ("It's raining and we're late.", "It is raining and we are late."),
        ("Do not run; you cannot win.", "Don't run; you can't win."),
        ("DON'T PANIC, I'M HERE.", "DO NOT PANIC, I AM HERE."),
        ("He won’t go.", "He will not go."),  # a curly apostrophe is read too
        ("It's been a while.", "It has been a while."),
        ("I've seen it, let's go.", "I have seen it, let us go."),
        # Left alone: a clause-final "is", a main-verb "have", a tag question.
        ("I know what it is.", "I know what it is."),
        ("I have a dog.", "I have a dog."),
        ("It is red, isn't it?", "It's red, isn't it?"),
    ],
)
def test_contractions_go_both_ways(text, flipped):
    assert perturb(text, "contractions", seed=0) == flipped


def test_contractions_round_trip():
    text = "She does not think it is late, and they are not sure we will come."
    once = perturb(text, "contractions", 0)
    assert once == "She doesn't think it's late, and they're not sure we'll come."
    assert perturb(once, "contractions", 0) == text


@pytest.mark.parametrize("seed", range(5))
def test_synonyms_replace_table_words_only_and_keep_case(seed):
    text = "Big cars are often fast. Nothing else here."
    out = perturb(text, "synonyms", seed)
    assert out != text
    assert out.endswith(" Nothing else here.")
    assert out[0].isupper()
    assert len(out.split()) == len(text.split())


def test_synonyms_leave_words_inside_other_words_alone():
    assert perturb("Bigamy is a crime.", "synonyms", 0) == "Bigamy is a crime."


@pytest.mark.parametrize("seed", range(10))
def test_distractor_keeps_the_text_whole_on_its_own_line(seed):
    out = perturb(TEXT, "distractor", seed)
    assert out.startswith(TEXT + "\n") or out.endswith("\n" + TEXT)
    injected = out.replace(TEXT, "").strip("\n")
    assert injected and "\n" not in injected


def test_distractor_both_before_and_after_occur():
    outs = [perturb(TEXT, "distractor", seed) for seed in range(20)]
    assert any(o.endswith(TEXT) for o in outs)
    assert any(o.startswith(TEXT) for o in outs)
