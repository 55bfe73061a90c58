"""The opt-in compiled decode step equals the eager one (slow: inductor compiles C++)."""

import pytest
import torch

from lmforge.engine.native import NativeDecoder

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("dtype, tol", [("fp32", 1e-4), ("int8", 0.05), ("int4", 0.05)])
def test_compiled_step_matches_eager(tiny_tokenizer, model_factory, dtype, tol):
    model = model_factory(len(tiny_tokenizer), seed=5)
    eager, compiled = NativeDecoder(model, dtype), NativeDecoder(model, dtype, compile=True)
    prompt = torch.tensor([[5, 6, 7, 8, 9]])
    ce, cc = eager.new_cache(1, 16), compiled.new_cache(1, 16)
    le, lc = eager.forward(prompt, ce), compiled.forward(prompt, cc)
    for _ in range(6):
        tok = le.argmax(-1, keepdim=True)  # (1, 1): teacher-forced with the eager choice
        le, lc = eager.forward(tok, ce), compiled.forward(tok, cc)
        scale = le.abs().max()
        assert float((le - lc).abs().max()) <= tol * float(scale)
    assert cc.pos == ce.pos == 11
    assert torch.allclose(ce.k[0][:, :, :11], cc.k[0][:, :, :11], atol=tol * 10)


def test_compile_refuses_other_dtypes(tiny_tokenizer, model_factory):
    with pytest.raises(ValueError, match="compile supports"):
        NativeDecoder(model_factory(len(tiny_tokenizer)), "bf16", compile=True)


def test_a_failed_compile_falls_back_to_eager(tiny_tokenizer, model_factory):
    model = model_factory(len(tiny_tokenizer), seed=5)
    dec = NativeDecoder(model, "int8", compile=True)
    assert dec.compiled
    with pytest.warns(UserWarning, match="compiling failed"):
        dec.compile_failed(RuntimeError("no C++ compiler"))
    assert not dec.compiled
    cache = dec.new_cache(1, 8)
    dec.forward(torch.tensor([[5, 6]]), cache)
    assert dec.forward(torch.tensor([[7]]), cache).shape == (1, len(tiny_tokenizer))
