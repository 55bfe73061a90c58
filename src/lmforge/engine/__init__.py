"""The native inference engine: KV cache, quantized linears, sampling, the decode loop.

Names load lazily so that `lmforge --help` and `SamplingParams` never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Completion": "lmforge.engine.generate",
    "Delta": "lmforge.engine.generate",
    "generate_batch": "lmforge.engine.generate",
    "stream_batch": "lmforge.engine.generate",
    "Sampler": "lmforge.engine.sampling",
    "SamplingParams": "lmforge.engine.params",
}

__all__ = sorted([*_EXPORTS, "make_decoder"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lmforge.engine' has no attribute {name!r}")


def make_decoder(hf_model, dtype: str = "fp32"):
    """The fastest decoder for this model: native for Llama-family, else `transformers`."""
    from lmforge.engine.hf_decoder import HFDecoder
    from lmforge.engine.native import NativeDecoder, supports

    if supports(hf_model.config):
        return NativeDecoder(hf_model, dtype)
    return HFDecoder(hf_model, dtype)
