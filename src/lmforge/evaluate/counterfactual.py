"""Fairness counterfactuals: the same text with its names, pronouns or dialect swapped.

A counterfactual changes one attribute of a text and nothing else, so a model that answers
it differently is reacting to that attribute. Each axis has a few directions (`AXES`);
`swap(text, axis, direction)` applies one, and `counterfactuals(text)` gives each axis's
`swap` direction (female <-> male, American <-> British) where it changes the text. Swaps
match whole words, ignore case on input and keep it on output ("Color" -> "Colour",
"SHE" -> "HE"). Every word list here is written for lmforge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from lmforge.errors import InvalidInputError

# ---------------------------------------------------------------- shared word helpers

_NEXT_WORD = re.compile(r"\s+([^\W\d_]+)")  # the word after a match, across whitespace only


def match_case(source: str, word: str) -> str:
    """`word` in the case of `source`: UPPER, Title (each word when `source` has several) or as is."""
    if source.isupper() and sum(c.isalpha() for c in source) > 1:
        return word.upper()
    parts = source.split()
    if len(parts) > 1 and all(p[:1].isupper() for p in parts):
        return " ".join(w[:1].upper() + w[1:] for w in word.split(" "))
    if source[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def words_regex(words: Iterable[str]) -> re.Pattern[str]:
    """A case-insensitive pattern for any of `words` as whole words, longest first.

    A space in a word matches any run of whitespace; an apostrophe matches ' or ’.
    """
    alternatives = sorted(set(words), key=len, reverse=True)
    body = "|".join(re.escape(w).replace(r"\ ", r"\s+").replace("'", "['’]") for w in alternatives)
    return re.compile(rf"\b(?:{body})\b", re.IGNORECASE)


def table_key(matched: str) -> str:
    """The lookup key of a matched phrase: lower case, single spaces, straight apostrophes."""
    return " ".join(matched.lower().split()).replace("’", "'")


def next_word(match: re.Match[str]) -> str | None:
    """The lower-cased word right after `match` (only whitespace between), or None."""
    following = _NEXT_WORD.match(match.string, match.end())
    return following.group(1).lower() if following else None


def _replacer(table: Mapping[str, str], *, proper_nouns: bool = False) -> Callable[[str], str]:
    """A function replacing every word of `table` (lower-case keys) in a text, case kept."""
    pattern = words_regex(table)

    def replace(m: re.Match[str]) -> str:
        word = m.group()
        if proper_nouns and not word[:1].isupper():
            return word  # "emily" in lower case is left alone, like any common word
        return match_case(word, table[table_key(word)])

    return lambda text: pattern.sub(replace, text)


# ---------------------------------------------------------------- names

# First names by the language they come from and the gender they are usually read as.
# Lists are index-aligned: a swap maps the name at index i of one list to index i of the
# other, in either direction. Every name appears once, and names that are also common words
# (Will, Grace, Mark, Rose) are left out; a name is swapped only when written capitalised.
_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "arabic": {
        "female": ("Fatima", "Aisha", "Layla", "Mariam", "Noor", "Yasmin", "Zainab", "Huda", "Salma", "Amira"),
        "male": ("Omar", "Ahmed", "Youssef", "Khalid", "Hassan", "Tariq", "Karim", "Mustafa", "Bilal", "Ibrahim"),
    },
    "english": {
        "female": ("Emily", "Sarah", "Hannah", "Jessica", "Rachel", "Laura", "Megan", "Lucy", "Olivia", "Abigail"),
        "male": ("James", "Michael", "David", "Thomas", "Robert", "Andrew", "Matthew", "Edward", "George", "Peter"),
    },
    "indian": {
        "female": ("Priya", "Ananya", "Lakshmi", "Kavya", "Deepika", "Sunita", "Meera", "Pooja", "Divya", "Aishwarya"),
        "male": ("Arjun", "Rahul", "Vikram", "Rohan", "Sanjay", "Aditya", "Ravi", "Suresh", "Karthik", "Anil"),
    },
    "spanish": {
        "female": ("Lucia", "Carmen", "Valentina", "Ximena", "Camila", "Guadalupe", "Alejandra", "Marisol", "Paloma", "Esperanza"),
        "male": ("Alejandro", "Carlos", "Javier", "Diego", "Santiago", "Miguel", "Fernando", "Joaquin", "Rodrigo", "Emilio"),
    },
}  # fmt: skip


def _names_table(direction: str) -> dict[str, str]:
    """name -> name for `swap` (other gender, same origin) or `to_<origin>` (same gender)."""
    table: dict[str, str] = {}
    for origin, by_gender in _NAMES.items():
        for gender, names in by_gender.items():
            if direction == "swap":
                targets = by_gender["male" if gender == "female" else "female"]
            elif direction == f"to_{origin}":
                continue
            else:
                targets = _NAMES[direction.removeprefix("to_")][gender]
            table.update((n.lower(), t) for n, t in zip(names, targets, strict=True))
    return table


# ---------------------------------------------------------------- pronouns

_PRONOUN = re.compile(r"\b(?:he|she|him|her|his|hers|himself|herself)\b", re.IGNORECASE)

# "her" is object (him) or possessive (his); "his" is possessive (her) or standalone (hers).
# The rule: before a word that can open a noun phrase ("her book", "his own") it is the
# possessive; before punctuation, the end, or one of these words ("gave her the book",
# "told her that", "the book is his and ...") it is the other form. A heuristic: an adverb
# right after an object ("love her dearly") is read as a noun.
_NOT_NOUN_START = frozenset({
    "a", "an", "the", "this", "that", "these", "those", "to", "and", "or", "but", "nor", "so",
    "yet", "in", "on", "at", "for", "with", "from", "by", "of", "about", "as", "into", "onto",
    "over", "under", "up", "down", "out", "off", "back", "away", "again", "now", "then", "too",
    "very", "all", "some", "any", "every", "each", "no", "not", "is", "was", "are", "were", "be",
    "been", "will", "would", "can", "could", "should", "must", "may", "might", "do", "does",
    "did", "has", "have", "had", "if", "when", "while", "because", "before", "after", "until",
    "since", "than", "what", "which", "who", "whom", "where", "why", "how", "here", "there",
    "today", "tonight", "tomorrow", "yesterday", "everything", "something", "nothing", "anything",
    "everyone", "someone", "anyone", "nobody", "it", "i", "you", "he", "she", "we", "they", "me",
    "him", "us", "them", "my", "your", "our", "their", "his", "her", "its", "once", "twice",
    "always", "never", "often", "well", "much", "more", "most", "less",
})  # fmt: skip

# Each pronoun's replacement; "her" and "his" carry (before a noun, elsewhere).
_GENDER_SWAP: dict[str, str | tuple[str, str]] = {
    "he": "she", "she": "he", "him": "her", "hers": "his", "himself": "herself",
    "herself": "himself", "her": ("his", "him"), "his": ("her", "hers"),
}  # fmt: skip
_NEUTRAL: dict[str, str | tuple[str, str]] = {
    "he": "they", "she": "they", "him": "them", "hers": "theirs", "himself": "themselves",
    "herself": "themselves", "her": ("their", "them"), "his": ("their", "theirs"),
}  # fmt: skip


def _pronoun_replacer(table: Mapping[str, str | tuple[str, str]]) -> Callable[[str], str]:
    """A function replacing he/she/him/her/his/hers/himself/herself through `table`."""

    def replace(m: re.Match[str]) -> str:
        target = table[m.group().lower()]
        if isinstance(target, tuple):
            nxt = next_word(m)
            target = target[0] if nxt is not None and nxt not in _NOT_NOUN_START else target[1]
        return match_case(m.group(), target)

    return lambda text: _PRONOUN.sub(replace, text)


# Singular "they" takes plural verbs: fix the auxiliary right after the subject ("she is" ->
# "they are", "he's been" -> "they've been"). Other verbs keep their -s ("they walks"): a
# known limit of a word-level swap.
_SUBJECT_VERB = re.compile(
    r"\b(he|she)(\s+)(is|was|has|does|isn['’]t|wasn['’]t|hasn['’]t|doesn['’]t)\b", re.IGNORECASE
)
_SUBJECT_S = re.compile(r"\b(?:he|she)['’]s\b", re.IGNORECASE)
_PLURAL_VERB = {
    "is": "are", "was": "were", "has": "have", "does": "do",
    "isn't": "aren't", "wasn't": "weren't", "hasn't": "haven't", "doesn't": "don't",
}  # fmt: skip
_swap_gender_pronouns = _pronoun_replacer(_GENDER_SWAP)
_neutralise_pronouns = _pronoun_replacer(_NEUTRAL)


def _to_neutral(text: str) -> str:
    """he/she and their forms -> singular they, with the auxiliary after the subject agreed."""

    def verb(m: re.Match[str]) -> str:
        they = match_case(m.group(1), "they")
        return they + m.group(2) + match_case(m.group(3), _PLURAL_VERB[table_key(m.group(3))])

    def contraction(m: re.Match[str]) -> str:
        has = next_word(m) in ("been", "got")  # "he's been" is "he has been"
        return match_case(m.group(), "they've" if has else "they're")

    text = _SUBJECT_S.sub(contraction, _SUBJECT_VERB.sub(verb, text))
    return _neutralise_pronouns(text)


# ---------------------------------------------------------------- dialect

# American and British English: a well-defined pair of standard variants. Spelling first:
# one word, spelt two ways, so it is safe to change in both directions.
_SPELLING = [
    ("color", "colour"), ("colors", "colours"), ("colored", "coloured"), ("colorful", "colourful"),
    ("favor", "favour"), ("favors", "favours"), ("favorite", "favourite"), ("favorites", "favourites"),
    ("flavor", "flavour"), ("flavors", "flavours"), ("honor", "honour"), ("honors", "honours"),
    ("neighbor", "neighbour"), ("neighbors", "neighbours"), ("neighborhood", "neighbourhood"),
    ("behavior", "behaviour"), ("labor", "labour"), ("humor", "humour"), ("rumor", "rumour"),
    ("harbor", "harbour"), ("center", "centre"), ("centers", "centres"), ("centered", "centred"),
    ("theater", "theatre"), ("theaters", "theatres"), ("liter", "litre"), ("liters", "litres"),
    ("fiber", "fibre"), ("organize", "organise"), ("organized", "organised"),
    ("organization", "organisation"), ("realize", "realise"), ("realized", "realised"),
    ("recognize", "recognise"), ("recognized", "recognised"), ("apologize", "apologise"),
    ("analyze", "analyse"), ("analyzed", "analysed"), ("defense", "defence"),
    ("offense", "offence"), ("gray", "grey"), ("catalog", "catalogue"), ("traveled", "travelled"),
    ("traveling", "travelling"), ("traveler", "traveller"), ("canceled", "cancelled"),
    ("jewelry", "jewellery"), ("aluminum", "aluminium"), ("airplane", "aeroplane"),
    ("airplanes", "aeroplanes"), ("pajamas", "pyjamas"), ("mustache", "moustache"),
    ("cozy", "cosy"), ("plow", "plough"), ("skeptical", "sceptical"), ("math", "maths"),
]  # fmt: skip
# Vocabulary whose words mean the same thing wherever they appear: both directions.
_VOCABULARY = [
    ("truck", "lorry"), ("trucks", "lorries"), ("gasoline", "petrol"), ("diaper", "nappy"),
    ("diapers", "nappies"), ("parking lot", "car park"), ("zip code", "postcode"),
    ("cell phone", "mobile phone"), ("windshield", "windscreen"), ("stroller", "pushchair"),
    ("mailman", "postman"),
]  # fmt: skip
# One direction only, where the other word has a second meaning ("flat", "lift", "fall").
_ONLY_TO_BRITISH = [
    ("apartment", "flat"), ("apartments", "flats"), ("elevator", "lift"), ("elevators", "lifts"),
    ("sidewalk", "pavement"), ("flashlight", "torch"), ("eraser", "rubber"),
    ("vacation", "holiday"), ("subway", "underground"), ("french fries", "chips"),
    ("candy", "sweets"), ("faucet", "tap"), ("soccer", "football"), ("movie", "film"),
    ("movies", "films"), ("mom", "mum"), ("garbage", "rubbish"),
]  # fmt: skip
_ONLY_TO_AMERICAN = [  # still written (American, British)
    ("fall", "autumn"), ("trash", "rubbish"), ("highway", "motorway"),
    ("two weeks", "fortnight"), ("chips", "crisps"),
]  # fmt: skip
_TO_BRITISH = dict(_SPELLING + _VOCABULARY + _ONLY_TO_BRITISH)
_TO_AMERICAN = {br: am for am, br in _SPELLING + _VOCABULARY + _ONLY_TO_AMERICAN}

# ---------------------------------------------------------------- the axes

_SWAPS: dict[str, dict[str, Callable[[str], str]]] = {
    "dialect": {
        "to_american": _replacer(_TO_AMERICAN),
        "to_british": _replacer(_TO_BRITISH),
        # Each word to the other variant in one pass: no word is on both sides (a test checks).
        "swap": _replacer({**_TO_BRITISH, **_TO_AMERICAN}),
    },
    "names": {
        d: _replacer(_names_table(d), proper_nouns=True)
        for d in ["swap", *(f"to_{origin}" for origin in _NAMES)]
    },
    "pronouns": {"swap": _swap_gender_pronouns, "to_neutral": _to_neutral},
}

# Each axis and its directions, sorted. `swap` exchanges the two sides of the axis (female
# and male, American and British) word by word; `to_<group>` maps every other group into one.
AXES: dict[str, tuple[str, ...]] = {axis: tuple(sorted(_SWAPS[axis])) for axis in sorted(_SWAPS)}


def swap(text: str, axis: str, direction: str) -> str:
    """`text` with every word of `axis` moved in `direction` (see `AXES`)."""
    if axis not in _SWAPS:
        raise InvalidInputError(
            f"unknown counterfactual axis {axis!r}", f"use one of: {', '.join(AXES)}"
        )
    if direction not in _SWAPS[axis]:
        raise InvalidInputError(
            f"unknown direction {direction!r} for axis {axis!r}",
            f"use one of: {', '.join(AXES[axis])}",
        )
    return _SWAPS[axis][direction](text)


def counterfactuals(text: str) -> dict[str, str]:
    """axis -> `text` swapped along it, for each axis whose `swap` changes the text."""
    variants = {axis: swap(text, axis, "swap") for axis in AXES}
    return {axis: changed for axis, changed in variants.items() if changed != text}
