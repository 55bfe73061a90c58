"""Explain a model's output: attributions to input tokens, attention, the logit lens.

    >>> from lmforge.explain import ExplainConfig, explain, write_explanation
    >>> e = explain(model, config=ExplainConfig(prompt="The capital of France is", target=" Paris"))
    >>> write_explanation(e, "explain/")   # explain.html, heatmap.png, explain.json

Methods (`attribution.METHODS`): integrated_gradients, input_x_gradient, attention, occlusion.
"""

from lmforge.lazy import lazy_exports as _lazy_exports

_EXPORTS = {
    "ExplainConfig": "lmforge.explain.config",
    "Explanation": "lmforge.explain.explainer",
    "explain": "lmforge.explain.explainer",
    "print_terminal": "lmforge.explain.render",
    "render_html": "lmforge.explain.render",
    "write_explanation": "lmforge.explain.render",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
