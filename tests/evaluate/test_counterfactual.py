"""Fairness counterfactuals: exact swaps on hand-written sentences, case, tables, no-ops."""

from __future__ import annotations

import pytest

from lmforge.errors import InvalidInputError
from lmforge.evaluate import counterfactual as cf
from lmforge.evaluate.counterfactual import AXES, counterfactuals, swap


def test_axes_and_directions():
    assert AXES == {
        "dialect": ("swap", "to_american", "to_british"),
        "names": ("swap", "to_arabic", "to_english", "to_indian", "to_spanish"),
        "pronouns": ("swap", "to_neutral"),
    }


@pytest.mark.parametrize(
    ("text", "swapped"),
    [
        ("She gave him her book.", "He gave her his book."),
        ("He gave her his book.", "She gave him her book."),
        ("I saw her yesterday, and she saw me.", "I saw him yesterday, and he saw me."),
        ("He told her that the book was his.", "She told him that the book was hers."),
        ("The prize is hers; she earned it herself.", "The prize is his; he earned it himself."),
        ("He's sure he'll win.", "She's sure she'll win."),
        ("Her own idea, not his.", "His own idea, not hers."),
        ("SHE GAVE HIM HER BOOK.", "HE GAVE HER HIS BOOK."),
        # Words that contain a pronoun are not pronouns.
        ("The theme: Sheila, Hershey, Hermes.", "The theme: Sheila, Hershey, Hermes."),
    ],
)
def test_pronoun_swap(text, swapped):
    assert swap(text, "pronouns", "swap") == swapped


@pytest.mark.parametrize(
    ("text", "neutral"),
    [
        ("She gave him her book.", "They gave them their book."),
        ("He is sure the book is his.", "They are sure the book is theirs."),
        ("She doesn't know; he's been away.", "They don't know; they've been away."),
        ("She's late because she was ill.", "They're late because they were ill."),
        ("HE HURT HIMSELF.", "THEY HURT THEMSELVES."),
    ],
)
def test_pronouns_to_neutral_agree_the_auxiliary(text, neutral):
    assert swap(text, "pronouns", "to_neutral") == neutral


def test_names_swap_both_ways_and_keep_case_and_possessives():
    text = "Emily met David in Madrid; Carlos saw Emily's EMILY sign."
    swapped = swap(text, "names", "swap")
    assert swapped == "James met Hannah in Madrid; Carmen saw James's JAMES sign."
    assert swap(swapped, "names", "swap") == text


def test_names_to_another_origin_keep_gender_and_index():
    text = "Emily and James asked Fatima."
    assert swap(text, "names", "to_spanish") == "Lucia and Alejandro asked Lucia."
    assert swap("Lucia and Alejandro", "names", "to_english") == "Emily and James"
    assert swap(text, "names", "to_english") == "Emily and James asked Emily."


def test_names_are_only_swapped_when_capitalised():
    assert swap("the emily file", "names", "swap") == "the emily file"


@pytest.mark.parametrize("direction", AXES["names"])
def test_name_lists_are_aligned_and_unique(direction):
    groups = [names for by_gender in cf._NAMES.values() for names in by_gender.values()]
    assert {len(names) for names in groups} == {10}
    every = [name for names in groups for name in names]
    assert len(set(every)) == len(every)
    for name in every:  # every name maps to a known name, or stays when already there
        assert swap(name, "names", direction) in every


def test_every_name_round_trips_through_swap():
    for by_gender in cf._NAMES.values():
        for name in by_gender["female"] + by_gender["male"]:
            assert swap(swap(name, "names", "swap"), "names", "swap") == name


@pytest.mark.parametrize(
    ("american", "british"),
    [
        ("My favorite color is gray.", "My favourite colour is grey."),
        ("The truck left the parking lot.", "The lorry left the car park."),
        ("COLOR THEORY at the Theater Center", "COLOUR THEORY at the Theatre Centre"),
        ("Parking Lot B", "Car Park B"),
    ],
)
def test_dialect_both_ways(american, british):
    assert swap(american, "dialect", "to_british") == british
    assert swap(british, "dialect", "to_american") == american
    assert swap(american, "dialect", "swap") == british
    assert swap(british, "dialect", "swap") == american


def test_dialect_one_way_words_where_the_other_side_is_ambiguous():
    assert swap("We took the elevator.", "dialect", "to_british") == "We took the lift."
    assert swap("Give me a lift to the flat.", "dialect", "to_american") == (
        "Give me a lift to the flat."
    )
    assert swap("Leaves turn in autumn.", "dialect", "to_american") == "Leaves turn in fall."
    assert swap("Leaves fall in autumn.", "dialect", "to_british") == "Leaves fall in autumn."


def test_dialect_tables_have_no_word_on_both_sides():
    assert not cf._TO_BRITISH.keys() & cf._TO_AMERICAN.keys()
    pairs = cf._SPELLING + cf._VOCABULARY
    assert len(cf._TO_BRITISH) == len(pairs) + len(cf._ONLY_TO_BRITISH)
    assert len(cf._TO_AMERICAN) == len(pairs) + len(cf._ONLY_TO_AMERICAN)


def test_counterfactuals_give_each_axis_that_changes_the_text():
    text = "Emily said her favorite color is red."
    assert counterfactuals(text) == {
        "dialect": "Emily said her favourite colour is red.",
        "names": "James said her favorite color is red.",
        "pronouns": "Emily said his favorite color is red.",
    }


def test_counterfactuals_skip_no_op_swaps():
    assert counterfactuals("What is 7 times 6?") == {}
    assert list(counterfactuals("He paid 12 dollars.")) == ["pronouns"]


def test_unknown_axis_or_direction_says_which_exist():
    with pytest.raises(InvalidInputError, match="unknown counterfactual axis 'gender'.*pronouns"):
        swap("text", "gender", "swap")
    with pytest.raises(InvalidInputError, match="unknown direction 'to_male'.*to_neutral"):
        swap("text", "pronouns", "to_male")
