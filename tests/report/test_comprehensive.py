"""`lmforge report`: the comprehensive report, from hand-written artifacts in a tmp store."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.report.comprehensive import GUARD_FILE, guard_key, resolve, write_report
from lmforge.report.render import show

SECTIONS = [
    "Overview", "Performance benchmarking", "Efficiency and energy", "Adaptation",
    "Compression frontier", "Robustness", "Fairness and bias", "Interpretability examples",
    "Guard results", "Regulatory status", "Lineage graph", "Gaps",
]  # fmt: skip
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def guard_doc(recall: float = 0.8667) -> dict:
    row = {"check": "injection", "detector": "injection-rules", "default": True, "note": "",
           "recall": recall, "false_positive_rate": 0.0, "precision": 1.0, "f1": 0.9,
           "positives": 45, "negatives": 60, "true_positives": 39, "false_positives": 0}  # fmt: skip
    return {"key": guard_key(), "created": "2026-01-04T00:00:00+00:00", "dataset": "held-out",
            "detectors": [row], "skipped": []}  # fmt: skip


@pytest.fixture
def stored_guard(lmforge_home) -> Path:
    """A stored guard evaluation for this held-out set, so no test measures it by accident."""
    path = lmforge_home / GUARD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(guard_doc()))
    return path


@pytest.fixture
def chain(lineage, make_core_doc):
    """base -> ft (tune) -> ft-merged (merge) -> ft-q (quantize), ft and ft-q evaluated."""
    lineage.artifact(
        "ft-merged", kind="model", step="merge", parent="ft", created="2026-01-05T00:00:00+00:00",
        model={"model_type": "llama", "parameters": 123456, "layers": 2, "context": 256},
        hashes={"model/model.safetensors": "55" * 32}, timings={"total_s": 1.5},
    )  # fmt: skip
    lineage.artifact(
        "ft-q", kind="model", step="quantize", parent="ft-merged",
        created="2026-01-06T00:00:00+00:00", config={"type": "int8", "group_size": 32},
        hashes={"model/model.safetensors": "66" * 32, "model/quantization.json": "77" * 32},
        timings={"total_s": 0.75},
    )  # fmt: skip
    doc = make_core_doc(acc=0.5871, gap=0.0625, joules=12.0)
    doc["model"] = {"name": "ft-q", "artifact": "ft-q", "dtype": "int8"}
    doc["tasks"]["capitals"]["robustness"] = {
        "acc_original": 0.6, "worst_case_acc": 0.4, "drop": 0.2, "n": 5,
        "by_variant": {"typos": {"acc": 0.4, "n": 5}, "uppercase": {"acc": 0.6, "n": 5}},
    }  # fmt: skip
    doc["summary"]["worst_case_acc"] = 0.4
    doc.update(size_mb=31.25, peak_memory_mb=412.0,
               decode={"decode_tok_s": 55.5, "energy_per_token_j": 0.0123})  # fmt: skip
    lineage.eval("ft-q", "core", doc)
    return lineage


def md_values(md: str) -> list[tuple[str, str]]:
    """(shown value, source) of every cited number in the Markdown."""
    sources = dict(re.findall(r"^\[\^(\d+)\]: `(.*)`$", md, re.M))
    body = md.split("\n## Sources\n")[0]
    return [(v, sources[n]) for v, n in re.findall(r"([^\s|(]+)\[\^(\d+)\]", body)]


def resolve_source(source: str, store: Path):
    """The stored value a source points at: `file.json#a.b.0.c`; None if it is not one key."""
    if "; " in source or "#" not in source or "→" in source:
        return None
    file, key = source.split("#", 1)
    key = key.split(" (×")[0]
    path = Path(file) if Path(file).is_absolute() else store / file
    if path.suffix != ".json":
        return None
    value = json.loads(path.read_text())
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_every_cited_number_is_the_stored_one(chain, stored_guard, tmp_path):
    paths = write_report(["ft", "ft-q"], tmp_path / "r", pdf=False)
    assert set(paths) == {"markdown", "html"}
    md = paths["markdown"].read_text()
    for title in SECTIONS:
        assert re.search(rf"^## \d+\. {title}$", md, re.M), title
    checked = 0
    for shown, source in md_values(md):
        stored = resolve_source(source, chain.root)
        if stored is None or isinstance(stored, dict | list):
            continue
        factor = re.search(r" \(×([\d.e+-]+)", source)  # a value scaled from the stored one
        scale = float(factor.group(1)) if factor else 1.0
        expected = show(stored * scale if scale != 1.0 else stored)
        assert shown == expected.replace("|", "/"), (shown, source)
        checked += 1
    assert checked > 40
    sources = {s for _, s in md_values(md)}
    for must in ("ft-q/evals/core.json#summary.acc", "ft-q/evals/core.json#decode.decode_tok_s",
                 "ft-q/evals/core.json#tasks.capitals.robustness.worst_case_acc",
                 f"{stored_guard}#detectors.0.recall", "ft/artifact.json#config.rank"):  # fmt: skip
        assert must in sources, must
    assert "energy / token (mJ) | – | 12.3[^" in md  # ft has no decode figures: a dash
    html = paths["html"].read_text()
    assert 'title="ft-q/evals/core.json#summary.acc">0.5871</span>' in html


def test_changing_a_result_changes_the_report(lineage, stored_guard, make_core_doc, tmp_path):
    out = tmp_path / "r"
    before = write_report(["ft"], out, pdf=False)
    assert "0.6123" in before["markdown"].read_text() and "0.6123" in before["html"].read_text()
    lineage.eval("ft", "core", make_core_doc(acc=0.7345, gap=0.0417))
    guard = json.loads(stored_guard.read_text())
    guard["detectors"][0]["recall"] = 0.4321
    stored_guard.write_text(json.dumps(guard))
    after = write_report(["ft"], out, pdf=False)
    for path in after.values():
        text = path.read_text()
        assert "0.7345" in text and "0.6123" not in text
        assert "0.4321" in text and "0.8667" not in text


def test_gaps_are_listed_never_filled_in(lineage, tmp_path):
    paths = write_report(["ft"], tmp_path / "r", pdf=False, guard=False)
    md = paths["markdown"].read_text()
    gaps = md.split("\n## 12. Gaps\n")[1].split("\n## Sources\n")[0]
    for expected in (
        "ft: no robustness results — `lmforge eval ft --suite core`",
        "ft: no bias results — `lmforge eval ft --suite bias`",
        "ft: no toxicity results — `lmforge eval ft --suite toxicity`",
        "no decode speed recorded — `lmforge eval ft --suite core`",
        "no interpretability example recorded — `lmforge report ft --explain 'PROMPT'`",
        "no guard evaluation stored",
        "ft: no EU AI Act documentation — `lmforge compliance ft`",
        "ft: no model card — `lmforge card ft`",
        "under which license may the tune data /data/train.jsonl be used?",
    ):
        assert expected in gaps, expected
    robustness = md.split("## 6. Robustness")[1].split("## 7.")[0]
    guard = md.split("## 9. Guard results")[1].split("## 10.")[0]
    for section in (robustness, guard):
        assert "[^" not in section  # no number at all where nothing was measured
    assert "| `ft` | 0.6123[^" in md and "| – |" in md  # decode tok/s: a dash, not a number
    assert not (tmp_path / "r" / "report.pdf").exists()


def test_stored_compliance_and_card_are_reported(lineage, stored_guard, tmp_path):
    from lmforge.report import write_card, write_compliance

    write_card("ft")
    counts = json.loads(write_compliance("ft")["json"].read_text())["counts"]
    md = write_report(["ft"], tmp_path / "r", pdf=False)["markdown"].read_text()
    status = md.split("## 10. Regulatory status")[1].split("## 11.")[0]
    assert "model card: `ft/card.md`" in status
    assert f"fields filled {counts['filled']}[^" in status and "no EU AI Act" not in md
    assert "read from the stored evaluation" in md


def test_lineage_graph_has_every_artifact(chain, stored_guard, tmp_path):
    chain.artifact("orphan", kind="model", step="prune", parent="gone",
                   timings={"total_s": 1.0})  # fmt: skip
    paths = write_report(["ft-q", "orphan"], tmp_path / "r", pdf=False)
    svg = (tmp_path / "r" / "charts" / "lineage.svg").read_text()
    for name in ("base", "ft", "ft-merged", "ft-q", "orphan", "gone"):
        assert f'data-name="{name}"' in svg, name
    assert svg.count('class="edge"') == 4  # base->ft->ft-merged->ft-q, gone->orphan
    assert "not in the store" in svg
    html = paths["html"].read_text()
    assert html.count('class="node"') == 6 and "<svg" in html
    md = paths["markdown"].read_text()
    assert "| ft-merged | → | `ft-q` | quantize |" in md
    assert "the parent 'gone' is not in the store" in md


def test_html_renders_in_headless_chromium(chain, stored_guard, tmp_path):
    from playwright import sync_api

    html = write_report(["ft", "ft-q"], tmp_path / "r", pdf=False)["html"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            fetched = []  # a self-contained page fetches nothing but itself and data: URLs
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(html.as_uri(), wait_until="load")
            headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
            charts = page.eval_on_selector_all(
                "img.chart",
                "imgs => imgs.map(i => [i.dataset.chart, i.complete && i.naturalWidth])",
            )
            nodes = page.eval_on_selector_all("svg g.node", "gs => gs.map(g => g.dataset.name)")
            tooltip = page.get_attribute("span.v", "title")
        finally:
            browser.close()
    assert [re.sub(r"^\d+\. ", "", h) for h in headings] == [*SECTIONS, "Sources"]
    widths = dict(charts)
    for key in ("accuracy", "energy", "frontier_core_speed", "frontier_core_size"):
        assert widths.get(key, 0) > 0, (key, charts)
    assert set(nodes) == {"base", "ft", "ft-merged", "ft-q"}
    assert tooltip and "#" in tooltip
    assert all(u == html.as_uri() or u.startswith("data:") for u in fetched), fetched


@pytest.mark.skipif(not shutil.which("chromium"), reason="no chromium to print a PDF")
def test_pdf_printed_by_chromium(lineage, stored_guard, tmp_path):
    paths = write_report(["ft"], tmp_path / "r", pdf=True)
    assert paths["pdf"] == tmp_path / "r" / "report.pdf"
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    assert "printed from the HTML by chromium" in paths["markdown"].read_text()


def write_state(home: Path, name: str, steps: dict) -> Path:
    path = home / "runs" / name / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name, "recipe": f"recipes/{name}.yaml", "steps": steps}))
    return path


def test_run_name_reports_its_artifacts_and_step_table(lineage, stored_guard, lmforge_home, capsys):
    energy = {"joules": 321.5, "method": "estimated", "note": "estimated"}
    state = write_state(lmforge_home, "demo", {
        "base": {"type": "load", "status": "done", "artifact": "base", "seconds": 1.25,
                 "started": "2026-01-01T00:00:00+00:00", "energy": None},
        "tuned": {"type": "tune", "status": "done", "artifact": "ft", "seconds": 42.75,
                  "started": "2026-01-02T00:00:00+00:00", "energy": energy},
        "eval": {"type": "evaluate", "status": "failed", "error": "boom", "seconds": 0.5,
                 "started": "2026-01-03T00:00:00+00:00"},
    })  # fmt: skip
    assert resolve(["demo"]) == (["base", "ft"], "demo")
    main(["report", "demo", "--no-pdf"])
    out = capsys.readouterr().out
    folder = lmforge_home / "reports" / "demo"
    assert f"wrote {folder / 'report.md'}" in out and f"wrote {folder / 'report.html'}" in out
    md = (folder / "report.md").read_text()
    assert "Pipeline run `demo`" in md and "### Steps of the run `demo`" in md
    assert re.search(r"\| tuned \| tune \| done \| ft \| 42\.75\[\^\d+\] \| 321\.5\[\^\d+\]", md)
    assert "| eval | evaluate | failed | boom |" in md
    assert f"`{state}#steps.tuned.seconds`" in md
    assert (folder / "charts" / "run_energy.png").is_file()


def test_cli_artifacts_with_out(lineage, stored_guard, tmp_path, capsys):
    main(["report", "ft", "base", "--out", str(tmp_path / "x"), "--no-pdf"])
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"wrote {tmp_path / 'x' / 'report.md'}",
        f"wrote {tmp_path / 'x' / 'report.html'}",
    ]


@pytest.mark.parametrize(
    "args, message",
    [(["report", "nope"], "no artifact or run named 'nope'"),
     (["report", "ft", "nope"], "no artifact or run named 'nope'"),
     (["report", "empty"], "run 'empty' produced no artifact")],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(lineage, lmforge_home, capsys, args, message):
    write_state(lmforge_home, "empty", {"a": {"type": "note", "status": "failed"}})
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_guard_measured_once_then_read(lineage, lmforge_home, tmp_path):
    first = write_report(["ft"], tmp_path / "r", pdf=False)["markdown"].read_text()
    stored = json.loads((lmforge_home / GUARD_FILE).read_text())
    assert "measured now" in first and stored["key"] == guard_key()
    row = stored["detectors"][0]
    on = "yes" if row["default"] else "no"
    assert f"| {row['detector']} | {on} | {show(row['recall'])}[^" in first
    second = write_report(["ft"], tmp_path / "r", pdf=False)["markdown"].read_text()
    assert "read from the stored evaluation" in second


def test_explain_prompt_adds_an_example(tiny_model_dir, stored_guard, tmp_path):
    import lmforge

    lmforge.import_model(tiny_model_dir, "tiny")
    paths = write_report(["tiny"], tmp_path / "r", pdf=False, explain_prompt="The capital of")
    stored = json.loads((tmp_path / "r" / "explain" / "explain.json").read_text())
    md = paths["markdown"].read_text()
    section = md.split("## 8. Interpretability examples")[1].split("## 9.")[0]
    assert "input_x_gradient" in section and "Gap" not in section
    assert f"{show(stored['rows'][0]['score'])}[^" in section
    assert 'data-chart="heatmap"' in paths["html"].read_text()
