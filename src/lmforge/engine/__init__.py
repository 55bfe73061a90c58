"""The native inference engine: KV cache, quantized linears, sampling, the decode loop.

Names load lazily so that `lmforge --help` and `SamplingParams` never import torch.
"""

from lmforge.lazy import lazy_exports as _lazy_exports

_EXPORTS = {
    "Completion": "lmforge.engine.generate",
    "Delta": "lmforge.engine.generate",
    "generate_batch": "lmforge.engine.generate",
    "stream_batch": "lmforge.engine.generate",
    "Sampler": "lmforge.engine.sampling",
    "SamplingParams": "lmforge.engine.params",
}

__all__ = sorted([*_EXPORTS, "make_decoder"])
__getattr__, _dir = _lazy_exports(__name__, _EXPORTS)


def make_decoder(hf_model, dtype: str = "fp32", compile: bool = False, quantized=None):
    """The fastest decoder for this model: native for Llama-family, else `transformers`.

    `compile=True` compiles the native batch-1 decode step (fp32, int8; ~1 min the first time).
    `quantized`: a quantized artifact's stored weights, by module name.
    """
    from lmforge.engine.hf_decoder import HFDecoder
    from lmforge.engine.native import NativeDecoder, supports

    if supports(hf_model.config):
        return NativeDecoder(hf_model, dtype, compile=compile, quantized=quantized)
    if compile:
        raise ValueError(
            f"compile needs the native engine, which does not run {hf_model.config.model_type!r}"
        )
    return HFDecoder(hf_model, dtype)
