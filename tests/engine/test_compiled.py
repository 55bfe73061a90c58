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
    import torch._inductor.config as inductor

    # the compile's settings went with it: the process's inductor config is as it was
    assert not inductor.freezing and not inductor.max_autotune


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


def test_compiled_rows_step_matches_eager_without_recompiling(tiny_tokenizer, model_factory):
    """The rows of a SlotCache decode through their own compiled graph (warmed up once); as
    rows join at other lengths and the window grows past a WINDOW edge, nothing recompiles."""
    from torch._dynamo.utils import counters

    model = model_factory(len(tiny_tokenizer), seed=5)
    eager, compiled = NativeDecoder(model, "int4"), NativeDecoder(model, "int4", compile=True)
    compiled.warm_up()
    graphs = counters["stats"]["unique_graphs"]
    with torch.inference_mode():  # as the scheduler's thread runs (its caches' kind)
        caches = [d.new_slot_cache(4, 200) for d in (eager, compiled)]
        gen = torch.Generator().manual_seed(0)
        for length in (5, 40, 17):
            ids = torch.randint(0, len(tiny_tokenizer), (1, length), generator=gen)
            for dec, cache in zip((eager, compiled), caches, strict=True):
                dec.forward(ids, cache.row(cache.add()))
        for _ in range(30):  # the longest row goes from 41 to 71 positions: windows 64, then 128
            tok = torch.randint(0, len(tiny_tokenizer), (3, 1), generator=gen)
            le, lc = (
                dec.forward(tok, c, c.positions(1), attn_mask=c.attention_mask(1))
                for dec, c in zip((eager, compiled), caches, strict=True)
            )
            assert float((le - lc).abs().max()) <= 0.05 * float(le.abs().max())
    assert caches[1].lengths[:3] == caches[0].lengths[:3] == [35, 70, 47]
    assert counters["stats"]["unique_graphs"] == graphs  # no graph compiled after warm_up


def test_compiled_step_applies_qwen3_q_and_k_norms(build_model):
    """qwen3 norms q and k per head before rotary; the compiled step must too (it skipped
    them once, silently)."""
    model = build_model("qwen3")
    eager, compiled = NativeDecoder(model, "fp32"), NativeDecoder(model, "fp32", compile=True)
    prompt = torch.tensor([[5, 6, 7, 8, 9]])
    ce, cc = eager.new_cache(1, 16), compiled.new_cache(1, 16)
    le, lc = eager.forward(prompt, ce), compiled.forward(prompt, cc)
    for _ in range(4):
        tok = le.argmax(-1, keepdim=True)
        le, lc = eager.forward(tok, ce), compiled.forward(tok, cc)
        assert float((le - lc).abs().max()) <= 1e-4 * float(le.abs().max())
