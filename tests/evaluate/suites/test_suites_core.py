"""The core suite: sizes, item shape, answers re-derived from the tables, balance, seeding."""

from __future__ import annotations

import calendar
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from lmforge.evaluate.suites import core
from lmforge.evaluate.suites.data import capitals, elements, units

TASKS = {"capitals", "elements", "units", "arithmetic", "calendar"}
ITEMS = core.build()


def _names(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` as whole words (punctuation inside it allowed)."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def _only(rows: list) -> object:
    """The single row a question names; fails if it names none or several."""
    assert len(rows) == 1, rows
    return rows[0]


def _capital_answer(item: dict) -> str:
    """The right answer to a capitals item, looked up in the table."""
    q = item["question"]
    country, city = _only(
        [(c, t) for c, t in capitals.CAPITALS if _names(q, capitals.in_text(c)) or _names(q, t)]
    )
    cities = {t for _, t in capitals.CAPITALS}
    countries = {capitals.in_text(c) for c, _ in capitals.CAPITALS}
    if set(item["choices"]) <= cities:
        return city
    assert set(item["choices"]) <= countries
    return capitals.in_text(country)


def _element_answer(item: dict) -> str:
    """The right answer to an elements item, looked up in the table."""
    q = item["question"]
    symbol, name, z = _only(
        [
            row
            for row in elements.ELEMENTS
            if _names(q.lower(), row[1]) or _names(q, f"chemical symbol {row[0]}")
        ]
    )
    kinds = {
        symbol: {r[0] for r in elements.ELEMENTS},
        name: {r[1] for r in elements.ELEMENTS},
        str(z): {str(r[2]) for r in elements.ELEMENTS},
    }
    (answer,) = [a for a, pool in kinds.items() if set(item["choices"]) <= pool]
    return answer


def _unit_answer(item: dict) -> str:
    """The right answer to a units item, looked up in the table."""
    q = item["question"]
    rows = [(s, big, n) for s, big, n in units.CONVERSIONS if _names(q, s) and _names(q, big)]
    return str(_only(rows)[2])


def _arithmetic_answer(item: dict) -> str:
    """The right answer to an arithmetic item, computed from its question."""
    m = re.search(r"(\d+) (\+|-|×|plus|minus|times) (\d+)", item["question"])
    assert m, item["question"]
    a, op, b = int(m[1]), m[2], int(m[3])
    return str({"+": a + b, "plus": a + b, "-": a - b, "minus": a - b}.get(op, a * b))


MONTHS = list(calendar.month_name)[1:]
DAYS = list(calendar.day_name)
ORDINALS = "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth"


def _calendar_answer(item: dict) -> str:
    """The right answer to a calendar item, from Python's own calendar module."""
    q = item["question"]
    if m := re.search(r"days (?:are there )?in (.+?)(?: is|\?|\.)$", q):
        subject = m[1]
        if subject.startswith("February in a "):
            year = 2024 if subject.endswith("leap year") else 2023
            assert calendar.isleap(year) == (year == 2024)
            return str(calendar.monthrange(year, 2)[1])
        return str(calendar.monthrange(2023, MONTHS.index(subject) + 1)[1])
    if m := re.search(r"[Tt]he (\w+) month of the year", q):
        return MONTHS[ORDINALS.split().index(m[1])]
    m = re.search(r"(two days |day |right |comes )?(after|before) (\w+)", q)
    assert m, q
    seq = MONTHS if m[3] in MONTHS else DAYS
    step = (2 if m[1] == "two days " else 1) * (1 if m[2] == "after" else -1)
    return seq[(seq.index(m[3]) + step) % len(seq)]


ANSWER = {
    "capitals": _capital_answer,
    "elements": _element_answer,
    "units": _unit_answer,
    "arithmetic": _arithmetic_answer,
    "calendar": _calendar_answer,
}


def test_sizes():
    counts = Counter(item["task"] for item in ITEMS)
    assert 300 <= len(ITEMS) <= 600
    assert set(counts) == TASKS
    assert all(n >= 30 for n in counts.values()), counts


def test_item_shape():
    assert len({item["id"] for item in ITEMS}) == len(ITEMS)
    for item in ITEMS:
        assert set(item) == {"id", "task", "question", "choices", "target", "format"}
        assert re.fullmatch(rf"{item['task']}-\d{{4}}", item["id"])
        assert item["format"] in {"qa", "cloze", "fill"}
        assert ("___" in item["question"]) == (item["format"] == "fill")
        assert len(item["choices"]) == 4
        assert len(set(item["choices"])) == 4, item
        assert all(isinstance(c, str) and c.strip() == c and c for c in item["choices"])
        assert item["target"] in range(4)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_target_is_the_true_answer(task):
    items = [item for item in ITEMS if item["task"] == task]
    for item in items:
        assert item["choices"][item["target"]] == ANSWER[task](item), item


def test_every_format_is_used():
    for task in TASKS:
        assert {i["format"] for i in ITEMS if i["task"] == task} == {"qa", "cloze", "fill"}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_targets_balanced(seed):
    items = core.build(seed)
    for task in [None, *TASKS]:
        chosen = [i["target"] for i in items if task is None or i["task"] == task]
        for position in range(4):
            share = chosen.count(position) / len(chosen)
            assert 0.15 <= share <= 0.35, (task, position, share)


def test_deterministic_and_seed_dependent():
    assert core.build(0) == ITEMS
    assert core.build(3) == core.build(3)
    other = core.build(1)
    assert other != ITEMS
    assert [i["target"] for i in other] != [i["target"] for i in ITEMS]
    # The same facts are asked under every seed; only operands, formats and choices move.
    fixed = TASKS - {"arithmetic"}
    assert sorted(ANSWER[i["task"]](i) for i in ITEMS if i["task"] in fixed) == sorted(
        ANSWER[i["task"]](i) for i in other if i["task"] in fixed
    )


def test_same_items_in_a_fresh_process():
    code = "import json; from lmforge.evaluate.suites import core; print(json.dumps(core.build(5)))"
    outputs = [
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    ]
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0]) == core.build(5)


def test_tables_are_consistent():
    assert len(capitals.CAPITALS) >= 55
    assert len({c for c, _ in capitals.CAPITALS}) == len(capitals.CAPITALS)
    assert len({t for _, t in capitals.CAPITALS}) == len(capitals.CAPITALS)
    assert len(elements.ELEMENTS) >= 35
    for column in range(3):
        assert len({row[column] for row in elements.ELEMENTS}) == len(elements.ELEMENTS)
    assert len(units.CONVERSIONS) >= 25
    assert len({(s, big) for s, big, _ in units.CONVERSIONS}) == len(units.CONVERSIONS)
