"""The core suite: four-choice questions generated from the project's own fact tables.

Every fact becomes one item. Its question is written in one of three formats, picked by the
seeded RNG and recorded in `format`:

- "qa": a question ("What is the capital of France?"),
- "cloze": a statement to complete ("The capital of France is"),
- "fill": a sentence with a blank ("___ is the capital of France.").

The three wrong choices come from the same table (other capitals, other symbols, other
numbers), and the right answer's position is spread evenly over the four slots within each
task, so a model that always picks "A" scores 25%.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypedDict

from lmforge.evaluate.suites.data import calendar_facts as cal
from lmforge.evaluate.suites.data import capitals, elements, units

N_CHOICES = 4
N_ARITHMETIC = 120
BLANK = "___"


class McItem(TypedDict):
    """One four-choice item; `choices[target]` is the right answer."""

    id: str
    task: str
    question: str
    choices: list[str]
    target: int
    format: str


@dataclass(frozen=True)
class _Fact:
    """A fact before rendering: its question per format, its answer, and wrong-answer candidates."""

    prompts: dict[str, str]
    answer: str
    pool: tuple[str, ...]


def _capitals() -> Iterator[_Fact]:
    """Country -> capital, and capital -> country."""
    all_capitals = tuple(city for _, city in capitals.CAPITALS)
    all_countries = tuple(capitals.in_text(c) for c, _ in capitals.CAPITALS)
    for country, city in capitals.CAPITALS:
        name = capitals.in_text(country)
        yield _Fact(
            {
                "qa": f"What is the capital of {name}?",
                "cloze": f"The capital of {name} is",
                "fill": f"{BLANK} is the capital of {name}.",
            },
            city,
            all_capitals,
        )
        yield _Fact(
            {
                "qa": f"{city} is the capital of which country?",
                "cloze": f"{city} is the capital of",
                "fill": f"The capital of {BLANK} is {city}.",
            },
            name,
            all_countries,
        )


def _elements() -> Iterator[_Fact]:
    """Name -> symbol, symbol -> name, and name -> atomic number."""
    symbols = tuple(s for s, _, _ in elements.ELEMENTS)
    names = tuple(n for _, n, _ in elements.ELEMENTS)
    numbers = tuple(str(z) for _, _, z in elements.ELEMENTS)
    for symbol, name, z in elements.ELEMENTS:
        yield _Fact(
            {
                "qa": f"What is the chemical symbol for {name}?",
                "cloze": f"The chemical symbol for {name} is",
                "fill": f"The symbol {BLANK} stands for the element {name}.",
            },
            symbol,
            symbols,
        )
        yield _Fact(
            {
                "qa": f"Which element has the chemical symbol {symbol}?",
                "cloze": f"The element with the chemical symbol {symbol} is",
                "fill": f"The chemical symbol {symbol} stands for {BLANK}.",
            },
            name,
            names,
        )
        yield _Fact(
            {
                "qa": f"What is the atomic number of {name}?",
                "cloze": f"The atomic number of {name} is",
                "fill": f"An atom of {name} has {BLANK} protons.",
            },
            str(z),
            numbers,
        )


def _units() -> Iterator[_Fact]:
    """How many of a smaller unit make one larger unit."""
    amounts = tuple(str(n) for _, _, n in units.CONVERSIONS)
    for small, large, n in units.CONVERSIONS:
        yield _Fact(
            {
                "qa": f"How many {small} are in {large}?",
                "cloze": f"The number of {small} in {large} is",
                "fill": f"There are {BLANK} {small} in {large}.",
            },
            str(n),
            amounts,
        )


_OPS = (("+", "plus"), ("-", "minus"), ("×", "times"))


def _arithmetic(rng: random.Random) -> Iterator[_Fact]:
    """Distinct sums, differences and products of small numbers, drawn from `rng`."""
    seen: set[tuple[str, int, int]] = set()
    while len(seen) < N_ARITHMETIC:
        symbol, word = _OPS[len(seen) % len(_OPS)]
        if symbol == "+":
            a, b = rng.randint(2, 60), rng.randint(2, 60)
            result = a + b
        elif symbol == "-":
            a = rng.randint(10, 99)
            b = rng.randint(1, a)  # never negative
            result = a - b
        else:
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            result = a * b
        if (symbol, a, b) in seen:
            continue
        seen.add((symbol, a, b))
        # Wrong answers are near misses: off by one, two or ten, or (for products) by one row.
        near = [result + d for d in (-10, -2, -1, 1, 2, 10)]
        if symbol == "×":
            near += [result - a, result + a, result - b, result + b]
        yield _Fact(
            {
                "qa": f"What is {a} {word} {b}?",
                "cloze": f"{a} {word} {b} equals",
                "fill": f"{a} {symbol} {b} = {BLANK}",
            },
            str(result),
            tuple(str(n) for n in near if n >= 0),
        )


def _calendar() -> Iterator[_Fact]:
    """Order of months and weekdays, and month lengths."""
    months, days = cal.MONTHS, cal.WEEKDAYS
    for i, month in enumerate(months):
        for step, where in ((1, "after"), (-1, "before")):
            yield _Fact(
                {
                    "qa": f"Which month comes {where} {month}?",
                    "cloze": f"The month that comes {where} {month} is",
                    "fill": f"{BLANK} comes right {where} {month}.",
                },
                months[(i + step) % 12],
                months,
            )
        ordinal = cal.ORDINALS[i]
        yield _Fact(
            {
                "qa": f"Which is the {ordinal} month of the year?",
                "cloze": f"The {ordinal} month of the year is",
                "fill": f"{BLANK} is the {ordinal} month of the year.",
            },
            month,
            months,
        )
    for i, day in enumerate(days):
        for step, where in ((1, "the day after"), (-1, "the day before"), (2, "two days after")):
            yield _Fact(
                {
                    "qa": f"Which day of the week is {where} {day}?",
                    "cloze": f"The day of the week that is {where} {day} is",
                    "fill": f"{BLANK} is {where} {day}.",
                },
                days[(i + step) % 7],
                days,
            )
    lengths = ("28", "29", "30", "31")
    february = (("February in a common year", 28), ("February in a leap year", cal.LEAP_FEBRUARY))
    others = ((m, n) for m, n in zip(months, cal.DAYS_IN_MONTH, strict=True) if m != "February")
    for subject, n in (*february, *others):
        yield _Fact(
            {
                "qa": f"How many days are there in {subject}?",
                "cloze": f"The number of days in {subject} is",
                "fill": f"There are {BLANK} days in {subject}.",
            },
            str(n),
            lengths,
        )


def _render(task: str, facts: list[_Fact], rng: random.Random) -> list[McItem]:
    """Turn facts into items: pick a format, three distinct wrong answers, and a balanced slot."""
    targets = [i % N_CHOICES for i in range(len(facts))]
    rng.shuffle(targets)
    items: list[McItem] = []
    for i, (fact, target) in enumerate(zip(facts, targets, strict=True)):
        fmt = rng.choice(sorted(fact.prompts))
        # dict.fromkeys: de-duplicate in a fixed order (a set's order changes between runs).
        wrong_pool = [c for c in dict.fromkeys(fact.pool) if c != fact.answer]
        wrong = rng.sample(wrong_pool, N_CHOICES - 1)
        choices = [*wrong[:target], fact.answer, *wrong[target:]]
        items.append(
            McItem(
                id=f"{task}-{i:04d}",
                task=task,
                question=fact.prompts[fmt],
                choices=choices,
                target=target,
                format=fmt,
            )
        )
    return items


def build(seed: int = 0) -> list[McItem]:
    """All core items (a few hundred), the same for the same seed."""
    tasks = {
        "capitals": lambda rng: _capitals(),
        "elements": lambda rng: _elements(),
        "units": lambda rng: _units(),
        "arithmetic": _arithmetic,
        "calendar": lambda rng: _calendar(),
    }
    items: list[McItem] = []
    for task, facts in tasks.items():
        # One RNG per task, so that editing one table leaves the other tasks' items unchanged.
        rng = random.Random(f"core-{seed}-{task}")
        items += _render(task, list(facts(rng)), rng)
    return items
