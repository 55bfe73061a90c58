"""EU AI Act documents: every filled value traces to its file and key; the rest are gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.errors import InvalidInputError
from lmforge.report import write_compliance
from lmforge.report.compliance import classify


def lookup(root: Path, source: str):
    """The value stored at `file#dotted.key` (file relative to the store root)."""
    file, key = source.split("#", 1)
    value = json.loads((root / file).read_text())
    for part in key.split("."):
        value = value[part]
    return value


def fields(doc):
    return {f["id"]: f for s in doc["sections"] for f in s["fields"]}


def test_provider_fields_trace_to_stored_facts(lineage):
    paths = write_compliance("ft")
    assert paths["markdown"] == lineage.root / "ft/compliance/provider.md"
    doc = json.loads(paths["json"].read_text())
    checked = 0
    for field in fields(doc).values():
        assert field["status"] in ("filled", "partial", "gap")
        for key, source in field["sources"].items():
            value = field["value"][key]
            if isinstance(value, int | float) and ";" not in source:  # every single number
                assert lookup(lineage.root, source) == value, source
                checked += 1
            if key == "evals":  # the summaries, each from its result file
                for ev, src in zip(value, source.split("; "), strict=True):
                    assert lookup(lineage.root, src) == ev["summary"]
                    checked += 1
    assert checked >= 8
    f = fields(doc)
    assert f["annex_xi.1.d"]["value"]["model.parameters"] == 123456
    assert f["annex_xi.1.f"]["value"]["license"] == "mit"
    assert f["annex_xi.1.f"]["sources"]["license"].endswith("upstream/README.md#license")
    assert f["annex_xi.2.e"]["value"]["energy.method"].startswith("estimated")
    assert f["annex_xii.2.c"]["value"]["evals"][0]["summary"]["acc"] == 0.6123


def test_what_nothing_records_is_a_gap(lineage):
    doc = json.loads(write_compliance("ft")["json"].read_text())
    f = fields(doc)
    assert f["annex_xi.1.a"]["status"] == "gap" and f["annex_xi.1.a"]["value"] == {}
    assert f["art53.1.c"]["status"] == "gap"
    assert f["annex_xi.1.f"]["status"] == "partial"  # the data's license is not recorded
    keys = {g["key"] for g in doc["gaps"]}
    assert {"intended_use", "copyright_policy", "data.license.ft"} <= keys
    md = (lineage.root / "ft/compliance/provider.md").read_text()
    assert "**Gap** `intended_use`" in md and "## Gaps to answer" in md


def test_answers_fill_fields(lineage):
    (lineage.root / "ft/answers.yaml").write_text(
        "intended_use: Product-manual Q&A.\nannex_xi.1.b: See policy.md.\n"
    )
    f = fields(json.loads(write_compliance("ft")["json"].read_text()))
    assert f["annex_xi.1.a"]["value"] == {"intended_use": "Product-manual Q&A."}
    assert f["annex_xi.1.a"]["sources"]["intended_use"] == "ft/answers.yaml#intended_use"
    assert f["annex_xi.1.b"]["status"] == "filled"


def test_numbers_follow_the_result_file(lineage, make_core_doc):
    lineage.eval("ft", "core", make_core_doc(acc=0.7345, gap=0.0833))
    doc = json.loads(write_compliance("ft")["json"].read_text())
    assert fields(doc)["annex_xi.2.c"]["value"]["evals"][0]["summary"]["acc"] == 0.7345


def test_deployer_questionnaire_suggests_and_asks_to_confirm(lineage):
    paths = write_compliance("ft", role="deployer", use_case="Screen job applicants' CVs")
    doc = json.loads(paths["json"].read_text())
    q = {x["id"]: x for x in doc["questionnaire"]}
    assert q["annex_iii.4"]["matched"] and "confirm" in q["annex_iii.4"]["suggestion"]
    assert all(x["answer"] is None for x in doc["questionnaire"])  # a person answers
    assert (
        not q["annex_iii.7"]["matched"] and "does not mean 'no'" in q["annex_iii.7"]["suggestion"]
    )
    assert {f"annex_iii.{i}" for i in range(1, 9)} <= set(q)
    f = fields(doc)
    assert f["annex_iv.1.a"]["value"]["use_case"] == "Screen job applicants' CVs"
    assert f["annex_iv.2.a"]["status"] == "filled"
    md = paths["markdown"].read_text()
    assert "suggestions only" in md and "Annex IV" in md


def test_deployer_without_use_case_lists_it_as_a_gap(lineage):
    doc = json.loads(write_compliance("ft", role="deployer")["json"].read_text())
    assert "use_case" in {g["key"] for g in doc["gaps"]}
    assert all(not x["matched"] for x in doc["questionnaire"])


@pytest.mark.parametrize(
    "use_case, category",
    [
        ("face recognition at the door", "annex_iii.1"),
        ("grading student essays", "annex_iii.3"),
        ("credit scoring for loans", "annex_iii.5"),
        ("triage of asylum applications", "annex_iii.7"),
        ("help a judge research case law", "annex_iii.8"),
    ],
)
def test_keywords_point_at_annex_iii(use_case, category):
    hits = {q["id"] for q in classify(use_case) if q["matched"]}
    assert category in hits


def test_unknown_role(lineage):
    with pytest.raises(InvalidInputError, match="unknown role 'auditor'"):
        write_compliance("ft", role="auditor")
