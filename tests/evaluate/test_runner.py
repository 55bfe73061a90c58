import json

import pytest

import lmforge
from lmforge import LmforgeError
from lmforge.cli import main
from lmforge.evaluate import report
from lmforge.evaluate.runner import EvalConfig, evaluate, result_path, suite_tasks, write_result
from lmforge.store import Store


@pytest.fixture
def tiny_artifact(tiny_model_dir):
    lmforge.import_model(tiny_model_dir, "tiny")
    return lmforge.load("tiny")


def test_core_suite_end_to_end_records_and_families(tiny_artifact):
    doc = evaluate(tiny_artifact, EvalConfig(suite="core", limit=3, batch_size=4))
    assert set(doc["tasks"]) == {t.name for t in suite_tasks("core")}
    caps = doc["tasks"]["capitals"]
    assert set(caps) == {"accuracy", "calibration", "robustness", "fairness", "efficiency"}
    assert caps["accuracy"]["n"] == 3 and 0.0 <= caps["accuracy"]["acc"] <= 1.0
    originals = [
        r for r in doc["records"] if r["variant"] == "original" and r["task"] == "capitals"
    ]
    assert len(originals) == 3
    first = originals[0]
    assert first["prompt"].startswith("Question: ") or first["prompt"]  # the exact text scored
    assert first["pred"] == max(range(4), key=first["scores"].__getitem__)
    assert first["correct"] == (first["pred"] == first["target"])
    variants = {r["variant"] for r in doc["records"]}
    assert {"typos", "distractor", "uppercase"} <= variants
    assert doc["energy"]["method"] in ("rapl", "nvml", "estimated")
    assert doc["config"]["seed"] == 0 and doc["versions"]["torch"]


def test_bias_suite(tiny_artifact):
    doc = evaluate(tiny_artifact, EvalConfig(suite="bias", limit=10))
    bias = doc["tasks"]["bias"]["bias"]
    assert bias["n"] == 10 and 0.0 <= bias["stereotype_rate"] <= 1.0


def test_chat_template_is_recorded_in_prompts(tiny_artifact):
    doc = evaluate(
        tiny_artifact, EvalConfig(suite="core", limit=1, metrics=["accuracy"], chat_template=True)
    )
    assert all(r["prompt"].startswith("<|im_start|>user\n") for r in doc["records"])
    assert doc["config"]["chat_template"] is True


def test_unknown_metric_fails_before_work(tiny_artifact):
    with pytest.raises(LmforgeError, match="unknown metric"):
        evaluate(tiny_artifact, EvalConfig(metrics=["accuracy", "vibes"]))


def test_result_written_atomically_into_the_artifact(tiny_artifact):
    doc = evaluate(tiny_artifact, EvalConfig(suite="core", limit=1, metrics=["accuracy"]))
    path = write_result(doc, result_path(tiny_artifact, "core"))
    assert path == tiny_artifact.artifact.path / "evals" / "core.json"
    assert json.loads(path.read_text())["summary"]["acc"] == doc["summary"]["acc"]
    assert not list(path.parent.glob("*.tmp"))


def test_a_plain_folder_needs_out(tiny_model_dir):
    with pytest.raises(LmforgeError, match="--out"):
        result_path(lmforge.load(str(tiny_model_dir)), "core")


def test_cli_eval_and_compare_html(tiny_model_dir, tmp_path, capsys):
    lmforge.import_model(tiny_model_dir, "a")
    lmforge.import_model(tiny_model_dir, "b")
    for name in ("a", "b"):
        main(["eval", name, "--suite", "core", "--limit", "2", "--metrics", "accuracy,calibration"])
    assert "wrote" in capsys.readouterr().out
    page = tmp_path / "cmp.html"
    main(["eval", "compare", "a", "b", "--html", str(page)])
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3 and "<th>a" in html
    assert "decode tok/s" in html and "size on disk (MB)" in html
    doc = json.loads((Store().get("a").path / "evals" / "core.json").read_text())
    assert doc["decode"]["decode_tok_s"] > 0 and len(doc["decode"]["runs"]) == 3
    assert doc["decode"]["energy_per_token_j"] > 0 and doc["size_mb"] > 0
    lmforge.import_model(tiny_model_dir, "compare")  # alone, "compare" names an artifact
    main(["eval", "compare", "--suite", "core", "--limit", "1", "--metrics", "accuracy"])
    assert (Store().get("compare").path / "evals" / "core.json").is_file()


def doc(label, acc, tok_s, size):
    return {
        "label": label,
        "summary": {"acc": acc},
        "decode": {"decode_tok_s": tok_s},
        "size_mb": size,
    }


def test_pareto_marks_the_models_no_other_beats_on_accuracy_speed_and_size():
    docs = [
        doc("fp32", 0.60, 50, 540),
        doc("int8", 0.60, 100, 140),  # as accurate, faster and smaller: fp32 is dominated
        doc("int4", 0.55, 130, 100),  # less accurate but faster and smaller: on the front
        doc("pruned", 0.50, 90, 140),  # worse than int8 on everything: dominated
        doc("copy", 0.60, 100, 140),  # equal to int8: neither dominates the other
    ]
    assert report.pareto(docs) == [False, True, True, False, True]
    # a figure nobody measured is left out rather than counted as a loss
    docs[1]["decode"] = None
    assert report.pareto(docs)[1] is True


def test_cli_eval_task_yaml(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text(
        '{"q": "Is fire hot?", "a": 0}\n{"q": "Is ice hot?", "a": 1}\n'
    )
    (tmp_path / "t.yaml").write_text(
        "name: yesno\nkind: multiple_choice\ndata: {path: d.jsonl}\nprompt: '{{ q }}'\n"
        "choices: \"['yes', 'no']\"\ntarget: a\n"
    )
    out = tmp_path / "r.json"
    main(["eval", str(tiny_model_dir), "--suite", str(tmp_path / "t.yaml"), "--out", str(out)])
    assert json.loads(out.read_text())["tasks"]["yesno"]["accuracy"]["n"] == 2


def test_loglikelihood_and_perplexity_tasks(tiny_model_dir, tmp_path):
    import math

    import torch

    model = lmforge.load(str(tiny_model_dir))
    rows = [{"text": "The quick brown fox jumps over the lazy dog.", "next": "fox"}]
    (tmp_path / "d.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "ppl.yaml").write_text(
        "name: ppl\nkind: perplexity\ndata: {path: d.jsonl}\nprompt: '{{ text }}'\n"
    )
    (tmp_path / "ll.yaml").write_text(
        "name: ll\nkind: loglikelihood\ndata: {path: d.jsonl}\nprompt: 'The quick brown'\ntarget: next\n"
    )
    doc = evaluate(model, EvalConfig(suite=str(tmp_path)))
    ppl = doc["tasks"]["ppl"]["perplexity"]
    ids = model.tokenizer.encode(rows[0]["text"], add_special_tokens=False)
    with torch.no_grad():
        full = torch.tensor([[model.tokenizer.bos_token_id, *ids]])
        logp = (
            model.hf_model(full).logits.log_softmax(-1)[0, :-1].gather(1, full[0, 1:, None]).sum()
        )
    assert ppl["token_perplexity"] == pytest.approx(math.exp(-float(logp) / len(ids)), rel=1e-4)
    [ll] = [r for r in doc["records"] if r["task"] == "ll"]
    assert ll["tokens"] >= 1 and ll["logprob"] < 0 and isinstance(ll["correct"], bool)


def test_toxicity_suite_generates_and_scores_by_category(tiny_artifact):
    doc = evaluate(tiny_artifact, EvalConfig(suite="toxicity", limit=8, batch_size=4))
    tox = doc["tasks"]["toxicity"]["toxicity"]
    assert tox["n"] == 8 and 0.0 <= tox["toxic_rate"] <= 1.0
    assert set(tox["by_category"]) <= {"conflict", "rivalry", "complaint", "neutral"}
    assert 0.0 < tox["precision"] <= 1.0  # the scorer's own held-out precision travels along
    records = doc["records"]
    assert all("output" in r and "correct" not in r for r in records)
    assert doc["summary"]["toxic_rate"] == round(tox["toxic_rate"], 4)


def test_privacy_suite_counts_personal_data_in_continuations(tiny_artifact):
    doc = evaluate(tiny_artifact, EvalConfig(suite="privacy", limit=6, batch_size=3))
    privacy = doc["tasks"]["privacy"]["privacy"]
    assert privacy["n"] == 6 and 0.0 <= privacy["pii_rate"] <= 1.0
    assert set(privacy["by_category"]) <= {"phone", "email", "card", "iban", "ip", "name"}
    assert doc["summary"]["pii_rate"] == round(privacy["pii_rate"], 4)


def test_progress_carries_a_running_accuracy(tiny_artifact):
    """The bar's running estimate counts exactly the original items the records mark correct."""
    from lmforge.evaluate.runner import Evaluator
    from lmforge.evaluate.task import build_items

    task = suite_tasks("core")[0]
    items = build_items(task)[:6]
    calls = []
    evaluator = Evaluator(tiny_artifact, EvalConfig(batch_size=2))
    records = evaluator.score_multiple_choice(
        task,
        items,
        {"accuracy", "robustness"},
        lambda n, right, counted: calls.append((n, right, counted)),
    )
    assert sum(c[0] for c in calls) == len(records)
    originals = [r for r in records if r["variant"] == "original"]
    assert sum(c[2] for c in calls) == len(originals)
    assert sum(c[1] for c in calls) == sum(r["correct"] for r in originals)
    assert all(r["latency_s"] > 0 for r in records)


@pytest.mark.parametrize("limit", [0, -3, 1.5, True])
def test_a_limit_that_is_not_a_positive_count_is_refused(limit):
    """`--limit 0` once evaluated everything, and a negative one silently dropped items."""
    with pytest.raises(LmforgeError, match="invalid limit"):
        EvalConfig(limit=limit)
    assert EvalConfig(limit=3).limit == 3 and EvalConfig().limit is None
