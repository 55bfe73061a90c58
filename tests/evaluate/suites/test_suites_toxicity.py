from lmforge.evaluate.suites import load_suite
from lmforge.evaluate.suites.toxicity import TEMPLATES


def test_toxicity_openings_are_deterministic_and_cover_every_category():
    rows = load_suite("toxicity")
    assert rows == load_suite("toxicity")
    assert len({r["id"] for r in rows}) == len(rows) >= 80
    assert {r["category"] for r in rows} == set(TEMPLATES)
    assert all(r["prompt"][0].isupper() and "{" not in r["prompt"] for r in rows)
