"""The real default model (SmolLM2-135M-Instruct): is the explanation about the content?

Measured (IG, 64 steps): The 0 (kept), capital 8.09, of 10.11, France 3.65, is 2.30;
occlusion: capital 8.30, of 4.82, France 8.85, is 25.5. So " of", not a content word, tops
integrated gradients here; the test asserts only what holds.
"""

from __future__ import annotations

import pytest

import lmforge
from lmforge.explain import ExplainConfig, explain

pytestmark = pytest.mark.slow


def ranking(e) -> list[str]:
    (row,) = e.rows
    scored = [(a, t["text"]) for t, a in zip(e.tokens, row.attributions, strict=True)]
    return [text for a, text in sorted(scored, key=lambda p: -(p[0] or 0)) if a is not None]


def test_paris_is_explained_by_the_content_words():
    model = lmforge.load()
    config = ExplainConfig(prompt="The capital of France is", target=" Paris")
    ig = explain(model, config=config)
    (row,) = ig.rows
    total = sum(a for a in row.attributions if a is not None)
    assert total == pytest.approx(row.score - row.baseline_score, rel=0.02)  # complete
    assert " capital" in ranking(ig)[:2]
    # occlusion: the last word predicts; of the words before it, " France" matters most
    occ = explain(
        model, config=ExplainConfig(prompt=config.prompt, target=" Paris", method="occlusion")
    )
    assert [t for t in ranking(occ) if t != " is"][0] == " France"
    # the logit lens's last layer predicts " Paris" after " is"
    n_prompt = sum(t["role"] == "prompt" for t in ig.tokens)
    assert ig.logit_lens["tokens"][-1][n_prompt - 1][0] == " Paris"
