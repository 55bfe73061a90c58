"""Weight-only int8/int4 (and bf16) linears: against their own dequantized weights, against a
fake-quantized `transformers` model, and against fp32."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lmforge.engine import SamplingParams, generate_batch, make_decoder
from lmforge.engine.native import NativeDecoder
from lmforge.engine.quant_linear import DTYPES, HEAD_DTYPE, Int4Linear, Int8Linear, make_linear

TEXT = "The engine reads one token at a time: café, 日本語 🙂"

# A smaller init than the shared `llama`: with 0.3 the random network is chaotic enough that
# bf16 activations alone move the logits by 2%, which would hide what quantization does.
QUANT_INIT = 0.1


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model(request, build_model):
    return build_model(request.param, initializer_range=QUANT_INIT)


def native_logits(model, ids: torch.Tensor, dtype: str) -> torch.Tensor:
    decoder = NativeDecoder(model, dtype)
    return decoder.forward(ids, decoder.new_cache(*ids.shape), all_logits=True)  # (1, T, vocab)


def relative_max_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest absolute difference as a fraction of the reference logits' range."""
    return ((got - ref).abs().max() / (ref.max() - ref.min())).item()


def cosine(got: torch.Tensor, ref: torch.Tensor) -> float:
    return F.cosine_similarity(got.flatten(), ref.flatten(), dim=0).item()


@pytest.mark.parametrize("dtype", ["bf16", "int8", "int4"])
def test_logits_equal_a_fake_quantized_transformers_model(model, bpe_tokenizer, dtype):
    """The reference: `transformers` in fp32 with every linear weight replaced by what our
    quantizer keeps (`dequantize()`). What is left is bf16 activation noise only."""
    ids = torch.tensor([bpe_tokenizer.encode(TEXT)])  # (1, T)
    fake = copy.deepcopy(model)
    with torch.no_grad():
        for name, module in fake.named_modules():
            if isinstance(module, torch.nn.Linear):
                kind = HEAD_DTYPE.get(dtype, dtype) if name == "lm_head" else dtype
                module.weight.copy_(make_linear(module.weight, None, kind).dequantize())
        ref = fake(ids).logits  # (1, T, vocab)
    got = native_logits(model, ids, dtype)
    assert relative_max_error(got, ref) < 0.02
    assert cosine(got, ref) > 0.999


@pytest.mark.parametrize(
    ("dtype", "max_error", "min_cosine"),
    [
        ("bf16", 0.02, 0.999),
        ("int8", 0.05, 0.99),
        # 4 bits on random Gaussian weights (no outliers, no structure) is as coarse as
        # int4 gets; the test above pins the kernel exactly, this one bounds the damage.
        ("int4", 0.30, 0.9),
    ],
)
def test_logits_close_to_fp32(model, bpe_tokenizer, dtype, max_error, min_cosine):
    ids = torch.tensor([bpe_tokenizer.encode(TEXT)])  # (1, T)
    ref = native_logits(model, ids, "fp32")
    got = native_logits(model, ids, dtype)
    assert relative_max_error(got, ref) < max_error
    assert cosine(got, ref) > min_cosine


def test_int8_dequantize_is_within_one_step_of_the_weight():
    torch.manual_seed(0)
    w = torch.randn(96, 64) * torch.linspace(0.01, 3.0, 96)[:, None]  # rows of different scale
    q = Int8Linear(w, None)
    step = q.scale.float()[:, None]  # (out, 1) one scale per output channel
    # half a step of rounding, plus the bf16 rounding of the scale times |q| <= 127
    assert bool(((q.dequantize() - w).abs() <= step).all())
    assert (q.dequantize() - w).abs().max() < 0.01 * w.abs().max()
    assert q.qweight.dtype == torch.int8 and int(q.qweight.abs().max()) == 127


def test_int4_dequantize_is_within_half_a_step_of_the_weight():
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    q = Int4Linear(w, None, group_size=32)
    groups = w.reshape(32, 2, 32)  # (out, groups, group_size)
    step = (groups.amax(-1) - groups.amin(-1)) / 15  # (out, groups)
    err = (q.dequantize() - w).abs().reshape(32, 2, 32)
    # scales and zero points are stored in bf16 (8 bits of mantissa): allow that rounding
    bf16_slack = groups.abs().amax(-1) * 2**-7  # (out, groups)
    assert bool((err <= (step / 2 + bf16_slack)[..., None]).all())
    assert float(err.mean()) < float(step.mean()) / 3  # and most of them land much closer


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_equals_matmul_with_the_dequantized_weight(dtype):
    """The packed kernels compute x @ dequantize().T + b (up to bf16 activations)."""
    torch.manual_seed(0)
    w, b = torch.randn(48, 64), torch.randn(48)  # (out, in), (out,)
    x = torch.randn(2, 3, 64)  # (B, T, in)
    layer = make_linear(w, b, dtype)
    got = layer(x).float()  # (B, T, out)
    ref = F.linear(x, layer.dequantize(), b)
    assert got.shape == (2, 3, 48)
    torch.testing.assert_close(got, ref, atol=0.02 * ref.abs().max().item(), rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_runs_a_decode(llama, bpe_tokenizer, dtype):
    decoder = make_decoder(llama, dtype)
    assert isinstance(decoder, NativeDecoder) and decoder.dtype == dtype
    prompts = [bpe_tokenizer.encode("The engine"), bpe_tokenizer.encode("日本語 🙂")]
    for completion in generate_batch(decoder, bpe_tokenizer, prompts, SamplingParams(max_tokens=4)):
        assert completion.finish_reason == "length"
        assert len(completion.token_ids) == 4
        assert all(0 <= t < llama.config.vocab_size for t in completion.token_ids)


def test_quantizers_reject_bad_arguments():
    with pytest.raises(ValueError, match="unknown dtype"):
        make_linear(torch.randn(32, 32), None, "int2")
    with pytest.raises(ValueError, match="group_size"):
        Int4Linear(torch.randn(32, 48), None, group_size=32)


def test_int4_runs_when_out_features_is_not_a_multiple_of_16(build_model):
    model = build_model("llama", vocab_size=360)
    decoder = NativeDecoder(model, "int4")
    logits = decoder.forward(torch.tensor([[1, 2, 3]]), decoder.new_cache(1, 3))
    assert logits.shape == (1, 360)


def test_int8_head_multiplies_in_exact_integers_or_falls_back():
    """With VNNI the head is int8 x int8: per row, round(x / s) with s = max|x| / 127, the
    integer products summed exactly, then scaled; the same bits for a row in any batch.
    Without it (products would saturate) the head stays weight-only."""
    from lmforge.engine.quant_linear import (
        Int8DynamicLinear,
        QuantizedWeight,
        exact_int8_products,
        head_linear,
    )

    gen = torch.Generator().manual_seed(0)
    qw = QuantizedWeight.int8(torch.randn(300, 96, generator=gen))
    head = head_linear(qw, None)
    if not exact_int8_products():
        assert isinstance(head, Int8Linear)
        return
    assert isinstance(head, Int8DynamicLinear)
    x = torch.randn(5, 96, generator=gen) * 4
    x[2, 7] = 40.0  # an outlier sets that row's scale alone
    s = x.abs().amax(-1, keepdim=True) / 127
    xq = torch.round(x / s).long()
    exact = (xq @ qw.q.long().T).double()  # integer sums, exact
    want = exact * qw.scale.double() * s.double()
    y = head(x)
    torch.testing.assert_close(y.double(), want, rtol=1e-6, atol=1e-6)
    assert torch.equal(torch.cat([head(x[i : i + 1]) for i in range(5)]), y)
    # and close to the float product (the int8 rounding of the activations aside)
    rel = (y - x @ qw.dequantize().T).norm() / y.norm()
    assert rel < 0.02
