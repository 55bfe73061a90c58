"""The model card: Hub-readable metadata, every figure from a stored file, gaps not guesses."""

from __future__ import annotations

import json

import pytest

from lmforge.errors import NotFoundError
from lmforge.report import gather, render_card, write_card


def hub_card(text: str):
    from huggingface_hub import ModelCard

    return ModelCard(text)  # parses the YAML offline; ModelCard.validate would call the Hub


def test_metadata_is_a_valid_hub_card(lineage):
    card = hub_card(render_card("ft"))
    data = card.data.to_dict()
    assert data["license"] == "mit"
    assert data["base_model"] == "base"
    assert data["base_model_relation"] == "adapter"
    assert data["library_name"] == "peft"
    assert data["datasets"] == [f"sha256:{'ab' * 32}"]
    assert {"lmforge", "adapter", "tune", "lora"} <= set(data["tags"])
    assert data["model-index"][0]["name"] == "ft"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    summary = json.loads((lineage.root / "ft/evals/core.json").read_text())["summary"]
    assert results == summary  # every number of the model-index is the stored summary
    assert all(r.dataset_name == "core" for r in card.data.eval_results)


def test_sections_are_all_there(lineage):
    text = render_card("ft")
    for heading in (
        "## Intended use", "## Out-of-scope use", "## Training data", "## Training procedure",
        "## Evaluation", "## Bias, fairness and toxicity", "## Limitations",
        "## Environmental impact", "## How to get started", "## Gaps",
    ):  # fmt: skip
        assert heading in text, heading
    assert "ft/evals/core.json" in text and "ab" * 32 in text


def test_numbers_follow_the_result_file(lineage, make_core_doc):
    before = render_card("ft")
    assert "0.6123" in before and "0.0417" in before
    lineage.eval("ft", "core", make_core_doc(acc=0.7345, gap=0.0833))
    after = render_card("ft")
    assert "0.7345" in after and "0.0833" in after
    assert "0.6123" not in after and "0.0417" not in after
    results = {r.metric_type: r.metric_value for r in hub_card(after).data.eval_results}
    assert results["acc"] == 0.7345 and results["fairness_gap"] == 0.0833


def test_license_is_inherited_from_the_base(lineage):
    lineage.set_license("gpl-3.0")
    assert hub_card(render_card("ft")).data.license == "gpl-3.0"
    facts = gather("ft")
    assert facts.fact("license").source.endswith("README.md#license")


def test_license_recorded_in_the_lineage_wins_over_files(lineage):
    meta = json.loads((lineage.root / "base/artifact.json").read_text())
    meta.pop("name")
    lineage.artifact("base", **meta, license="apache-2.0")
    assert hub_card(render_card("ft")).data.license == "apache-2.0"


def test_missing_license_and_evals_are_gaps_not_guesses(lineage):
    lineage.set_license(None)
    lineage.artifact("lonely", kind="model", step="import", config={"source": "/nowhere"})
    text = render_card("lonely")
    data = hub_card(text).data.to_dict()
    assert "license" not in data and "model-index" not in data
    gaps = text.split("## Gaps", 1)[1]
    assert "`license`" in gaps and "`evals`" in gaps and "`intended_use`" in gaps
    assert "lmforge eval lonely" in text


def test_data_license_is_a_gap_until_answered(lineage):
    assert "data.license.ft" in gather("ft").gaps
    (lineage.root / "ft/answers.yaml").write_text(
        "data.license.ft: cc-by-4.0\nintended_use: Answer questions about a product manual.\n"
    )
    facts = gather("ft")
    assert "data.license.ft" not in facts.gaps
    text = render_card("ft")
    assert "Answer questions about a product manual." in text
    assert "ft/answers.yaml#intended_use" in text
    # the base is mit and the data cc-by-4.0: the card says "other", not one of them
    assert hub_card(text).data.license == "other"


def test_gguf_root_license_is_read_from_its_metadata(lineage, tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_license("apache-2.0")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    lineage.artifact("g", kind="model", step="import", config={"source": str(path)})
    fact = gather("g").fact("license")
    assert fact.value == "apache-2.0" and fact.source == f"{path}#general.license"


def test_write_card_is_atomic_and_in_the_artifact(lineage):
    path = write_card("ft")
    assert path == lineage.root / "ft" / "card.md"
    assert path.read_text() == render_card("ft")
    assert [p.name for p in path.parent.iterdir() if "tmp" in p.name] == []


def test_unknown_model():
    with pytest.raises(NotFoundError, match="no artifact named 'nope'"):
        render_card("nope")
