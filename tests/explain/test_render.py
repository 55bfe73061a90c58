"""The page, the PNG and the JSON; the page opened in a real headless Chromium."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from playwright import sync_api

from lmforge.explain import ExplainConfig, explain, render_html, write_explanation
from lmforge.explain.render import shown

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def explanation(model_factory, tiny_tokenizer):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = model_factory(len(tiny_tokenizer), seed=2)
    config = ExplainConfig(prompt="The quick brown fox <b>&", target=" jumps over", steps=8)
    yield explain(model, tiny_tokenizer, config)
    torch.set_num_threads(before)


def test_write_explanation_writes_three_files_atomically(explanation, tmp_path):
    paths = write_explanation(explanation, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "explain.html",
        "explain.json",
        "heatmap.png",
    ]
    doc = json.loads(paths["json"].read_text())
    assert doc["method"] == "integrated_gradients" and doc["target"] == " jumps over"
    assert len(doc["rows"]) == sum(t["role"] == "output" for t in doc["tokens"])
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "<b>&" not in html  # escaped, self-contained
    assert "http://" not in html and "https://" not in html


def test_the_page_works_in_chromium(explanation, tmp_path):
    page_file = tmp_path / "explain.html"
    page_file.write_text(render_html(explanation))
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(page_file.as_uri())
        # every token is on the page, with its value on hover
        visible = page.locator(".heat.on .tok")
        assert visible.count() == len(explanation.tokens)
        texts = visible.all_inner_texts()
        assert texts == [shown(t["text"]) for t in explanation.tokens]
        visible.nth(1).hover()
        assert "prompt" in page.locator("#detail").inner_text()
        # the second explained token's row shows when its button is pressed
        page.locator("#outs button").nth(1).click()
        assert page.locator("#row1").is_visible() and not page.locator("#row0").is_visible()
        # the attention canvas is drawn (not blank) and redraws for another layer and head
        n = len(explanation.tokens)
        size = page.evaluate(
            "[document.getElementById('att').width, document.getElementById('att').height]"
        )
        assert size[0] == size[1] and size[0] >= n * 3
        blank = "document.getElementById('att').getContext('2d').getImageData(0,0,5,5).data[2]"
        assert page.evaluate(blank) == 255  # the blue channel of the first cell
        page.select_option("#layer", "1")
        page.select_option("#head", "mean")
        page.locator("#att").hover(position={"x": 2, "y": 2})  # the first token on itself
        assert page.locator("#attdetail").inner_text().endswith("1.0000")
        lens_rows = page.locator("table.lens tr").count()
        assert lens_rows == len(explanation.logit_lens["layers"]) + 1
        browser.close()
    assert errors == []
