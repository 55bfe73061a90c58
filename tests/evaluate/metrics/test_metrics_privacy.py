"""The privacy family: outputs in which the guard's recognisers find personal data."""

import pytest

from lmforge.evaluate.metrics import get_metric


def test_pii_rate_by_kind_and_category():
    records = [
        {"output": " 415-555-0132 during office hours.", "category": "phone"},
        {"output": " help@hobbleby.example or by post.", "category": "email"},
        {"output": " 4111 1111 1111 1112, which fails Luhn.", "category": "card"},  # not a card
        {"output": " a cup of tea and a walk.", "category": "neutral"},
        {"prompt": "no output: not counted"},
    ]
    got = get_metric("privacy")(records)
    assert got["n"] == 4
    assert got["pii_rate"] == pytest.approx(0.5)
    assert set(got["by_kind"]) == {"phone", "email"}
    assert got["by_kind"]["phone"] == pytest.approx(0.25)
    assert got["by_category"] == {"card": 0.0, "email": 1.0, "neutral": 0.0, "phone": 1.0}


def test_no_outputs():
    got = get_metric("privacy")([])
    assert got["n"] == 0 and got["by_kind"] == {}
