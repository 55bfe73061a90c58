"""Linear layers for the engine: dense (fp32/bf16) and weight-only int8 / int4.

Weight-only quantization keeps activations in bf16 and stores weights as int8 with one
scale per output channel (or int4 in groups along the input). A decode step on a small
model reads every weight once per token, so fewer weight bytes means more tokens/s.

Kernels are PyTorch's own (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`), the same
ones torchao dispatches to for weight-only configs; calling them directly avoids a tensor
subclass per weight, which costs ~20 us per call in eager mode (measured on SmolLM2-135M:
the whole decode step is ~5 ms). Measured on 2 AMD EPYC cores, batch 1, 960x576:
fp32 32 us, bf16 64 us, int8 (bf16 activations) 12 us; int8 with fp32 activations takes a
slow path (192 us), hence bf16 activations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DTYPES = ("fp32", "bf16", "int8", "int4")
# The LM head's weight type at each model weight type. At int4 the head (a fifth of
# SmolLM2-135M's weights, and the embedding when tied) stays int8: measured on the core suite,
# int4 everywhere loses 3.7 points of accuracy, int4 with an int8 head none (0.5647 vs fp32
# 0.5618), as llama.cpp's Q4_K_M also keeps its output weight at 6 bits.
HEAD_DTYPE = {"int4": "int8"}


def activation_dtype(dtype: str, device: torch.device | str = "cpu") -> torch.dtype:
    """The dtype of the residual stream, attention and KV cache for a weight dtype.

    On CPU it is always fp32: the layers cast their input to bf16 where their kernel wants
    it, and fp32 attention is ~4x faster than bf16 there (10 us vs 45 us for one decode step
    of SmolLM2's 9 heads over 100 keys). On a GPU, bf16 weights run in bf16 throughout.
    """
    if torch.device(device).type == "cpu" or dtype == "fp32":
        return torch.float32
    return torch.bfloat16


def _use_onednn(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and _onednn_runs(weight.dtype)


@functools.cache
def _onednn_runs(dtype: torch.dtype) -> bool:
    """Whether oneDNN's packed linear runs `dtype` on this CPU (bf16 needs AVX512: an AVX2
    laptop refuses to create the primitive, and then `F.linear` does the work)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        w = torch.zeros(16, 16, dtype=dtype).to_mkldnn()
        x = torch.zeros(1, 16, dtype=dtype)
        torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    except RuntimeError:
        return False
    return True


class DenseLinear:
    """y = x @ W.T + b with W in fp32 or bf16.

    On CPU the weight is kept in oneDNN's layout and multiplied by `mkldnn._linear_pointwise`
    (the kernel inductor uses for frozen linears): at batch 1 it streams fp32 weights from
    memory at ~35 GB/s against ~15 GB/s for `F.linear` (MKL sgemm with M=1), measured on
    2 EPYC cores with 60 distinct 3072x576 weights. A decode step is bound by that stream.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        self.dtype = dtype
        w = weight.detach().to(dtype).contiguous()  # (out, in)
        self.bias = None if bias is None else bias.detach().to(dtype)
        self.out_features = w.shape[0]
        self.nbytes = w.numel() * w.element_size()
        self._packed = w.to_mkldnn() if _use_onednn(w) else None
        self.weight = None if self._packed is not None else w

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self._packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def dequantize(self) -> torch.Tensor:
        w = self._packed.to_dense() if self._packed is not None else self.weight
        return w.float()


@dataclass
class QuantizedWeight:
    """A weight (out, in) as it is stored: int8 per output channel, or int4 in input groups.

    int8: w = q * scale, q int8 in [-127, 127], scale (out,) bf16.
    int4: w = (q - 8) * scale + zero, q in [0, 15] (uint8, one value per byte in memory),
    scale and zero (out, in // group_size) bf16; `zero` is stored the way the kernel reads it.
    """

    kind: str  # "int8" | "int4"
    q: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None = None
    group_size: int = 0

    @classmethod
    def int8(cls, weight: torch.Tensor) -> QuantizedWeight:
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # (out,)
        q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return cls("int8", q.contiguous(), scale.to(torch.bfloat16))

    @classmethod
    def int4(cls, weight: torch.Tensor, group_size: int = 32) -> QuantizedWeight:
        out_f, in_f = weight.shape
        if in_f % group_size:
            raise ValueError(f"in_features {in_f} is not a multiple of group_size {group_size}")
        w = weight.detach().float().reshape(out_f, in_f // group_size, group_size)
        lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15.0).clamp(min=1e-8)
        q = torch.round((w - lo) / scale).clamp(0, 15).to(torch.uint8).reshape(out_f, in_f)
        zero = lo + 8.0 * scale  # the kernel computes (q - 8) * scale + zero
        return cls(
            "int4",
            q.contiguous(),
            scale.squeeze(-1).to(torch.bfloat16),
            zero.squeeze(-1).to(torch.bfloat16),
            group_size,
        )

    @classmethod
    def cat(cls, parts: list[QuantizedWeight]) -> QuantizedWeight:
        """Stack the rows of several weights (e.g. q, k, v into one fused matrix)."""
        first = parts[0]
        zero = None if first.zero is None else torch.cat([p.zero for p in parts])
        return cls(
            first.kind,
            torch.cat([p.q for p in parts]),
            torch.cat([p.scale for p in parts]),
            zero,
            first.group_size,
        )

    def dequantize(self) -> torch.Tensor:
        """The float weight (out, in) these integers stand for."""
        if self.kind == "int8":
            return self.q.float() * self.scale.float()[:, None]
        out_f, in_f = self.q.shape
        q = self.q.float().reshape(out_f, -1, self.group_size) - 8.0
        w = q * self.scale.float()[..., None] + self.zero.float()[..., None]
        return w.reshape(out_f, in_f)


class Int8Linear:
    """Weight-only int8: symmetric, one bf16 scale per output channel."""

    def __init__(self, weight: torch.Tensor | QuantizedWeight, bias: torch.Tensor | None):
        qw = weight if isinstance(weight, QuantizedWeight) else QuantizedWeight.int8(weight)
        self.qweight = qw.q
        self.scale = qw.scale
        self.bias = None if bias is None else bias.detach().to(torch.bfloat16)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.to(torch.bfloat16).reshape(-1, shape[-1])
        y = torch._weight_int8pack_mm(x, self.qweight, self.scale)
        y = y.view(*shape[:-1], -1)
        return y if self.bias is None else y + self.bias

    def dequantize(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.float()[:, None]

    @property
    def nbytes(self) -> int:
        return self.qweight.numel() + self.scale.numel() * 2


class Int8DynamicLinear:
    """int8 weights (one scale per output channel) times int8 activations (one scale per row,
    taken from each row as it comes), multiplied in integers by oneDNN's prepacked u8s8 kernel.

    Used for the LM head of int8/int4 models on CPUs with VNNI. The products are exact
    integers, so a row's logits are the same bits in any batch: batching keeps greedy outputs.
    Measured on 2 EPYC cores, 49152x576 (SmolLM2's head), 4 heads streamed in turn: 1.06 ms
    at 1 row and 1.86 ms at 16 rows, against 1.95 and 12.7 ms for `_weight_int8pack_mm`
    (bf16 activations). Accuracy on the core suite: int4 with this head 0.559, with the
    weight-only head 0.554, fp32 0.562.
    """

    ZERO_POINT = 128  # activations: round(x / s) in [-127, 127], stored as uint8 + 128

    def __init__(self, weight: torch.Tensor | QuantizedWeight, bias: torch.Tensor | None):
        qw = weight if isinstance(weight, QuantizedWeight) else QuantizedWeight.int8(weight)
        self.qweight = qw.q
        self.scale = qw.scale.float()  # bf16 -> fp32 is exact
        self.out_features = qw.q.shape[0]
        self.packed = torch.ops.onednn.qlinear_prepack(qw.q, None)
        self._zeros = torch.zeros(self.out_features, dtype=torch.long)
        self.bias = None if bias is None else bias.detach().float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.float().reshape(-1, shape[-1])
        s = x.abs().amax(-1, keepdim=True).clamp(min=1e-30) / 127.0
        xq = (torch.round(x / s).clamp(-127, 127) + self.ZERO_POINT).to(torch.uint8)
        y = self.products(xq)
        y = (y * s).view(*shape[:-1], -1)
        return y if self.bias is None else y + self.bias

    def products(self, xq: torch.Tensor) -> torch.Tensor:
        """(xq - 128) @ q.T * scale in fp32, for xq (M, in) uint8; the sums are exact int32."""
        return torch.ops.onednn.qlinear_pointwise(
            xq, 1.0, self.ZERO_POINT, self.packed, self.scale, self._zeros,
            None, 1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip

    def dequantize(self) -> torch.Tensor:
        return self.qweight.float() * self.scale[:, None]

    @property
    def nbytes(self) -> int:
        return self.qweight.numel() + self.scale.numel() * 4


@functools.cache
def exact_int8_products() -> bool:
    """Whether oneDNN multiplies u8 x s8 without saturating on this CPU. With VNNI it does;
    without it (e.g. a plain AVX2 laptop) pairs of products saturate at 16 bits, so the
    dynamic int8 kernel would be neither exact nor accurate there."""
    if not torch.backends.mkldnn.is_available():
        return False
    q = torch.full((16, 64), 127, dtype=torch.int8)
    try:
        lin = Int8DynamicLinear(
            QuantizedWeight("int8", q, torch.ones(16, dtype=torch.bfloat16)), None
        )
        y = lin.products(torch.full((1, 64), 255, dtype=torch.uint8))  # (255 - 128) * 127 * 64
    except RuntimeError:
        return False
    return bool((y == 127 * 127 * 64).all())


class Int4Linear:
    """Weight-only int4, asymmetric, in groups of `group_size` input channels."""

    def __init__(
        self,
        weight: torch.Tensor | QuantizedWeight,
        bias: torch.Tensor | None,
        group_size: int = 32,
    ):
        qw = (
            weight
            if isinstance(weight, QuantizedWeight)
            else QuantizedWeight.int4(weight, group_size)
        )
        out_f, in_f = qw.q.shape
        # The packed kernel works on blocks of 16 output channels: pad with zero rows and
        # slice the output back (only layers like an odd-sized vocab pay for the slice).
        padded_out = -(-out_f // 16) * 16
        q, scale, zero = qw.q.to(torch.int32), qw.scale, qw.zero
        if padded_out != out_f:
            extra = padded_out - out_f
            q = torch.cat([q, q.new_full((extra, in_f), 8)])  # (8 - 8) * 1 + 0 = 0
            scale = torch.cat([scale, scale.new_ones(extra, scale.shape[1])])
            zero = torch.cat([zero, zero.new_zeros(extra, zero.shape[1])])
        self.group_size = qw.group_size
        self.out_features = out_f
        self.packed_in_features = in_f
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 2)
        # (groups, out, 2): scale and zero for each group and channel
        self.scales_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()
        self.bias = None if bias is None else bias.detach().to(torch.bfloat16)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.to(torch.bfloat16).reshape(-1, shape[-1]),
            self.packed,
            self.group_size,
            self.scales_zeros,
        )
        if y.shape[-1] != self.out_features:
            y = y[:, : self.out_features]
        y = y.reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def dequantize(self) -> torch.Tensor:
        """The weight the kernel computes with, read back through the kernel (I @ W.T)."""
        eye = torch.eye(self.packed_in_features, dtype=torch.bfloat16)
        bias, self.bias = self.bias, None
        try:
            return self(eye).float().T.contiguous()  # (out, in)
        finally:
            self.bias = bias

    @property
    def nbytes(self) -> int:
        return self.packed.numel() * self.packed.element_size() + self.scales_zeros.numel() * 2


Linear = DenseLinear | Int8Linear | Int8DynamicLinear | Int4Linear


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None, dtype: str) -> Linear:
    """Build the linear layer for `dtype` (one of DTYPES) from a float weight (out, in)."""
    if dtype == "fp32":
        return DenseLinear(weight, bias, torch.float32)
    if dtype == "bf16":
        return DenseLinear(weight, bias, torch.bfloat16)
    if dtype in ("int8", "int4"):
        return quantized_linear(quantize_weight(weight, dtype), bias)
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")


def quantize_weight(weight: torch.Tensor, dtype: str, group_size: int = 32) -> QuantizedWeight:
    """int8 per channel, or int4 in groups; a layer whose width groups cannot tile stays int8."""
    if dtype == "int4" and weight.shape[1] % group_size == 0:
        return QuantizedWeight.int4(weight, group_size)
    return QuantizedWeight.int8(weight)


def quantized_linear(weight: QuantizedWeight, bias: torch.Tensor | None) -> Int8Linear | Int4Linear:
    return Int8Linear(weight, bias) if weight.kind == "int8" else Int4Linear(weight, bias)


def head_linear(weight: QuantizedWeight, bias: torch.Tensor | None) -> Linear:
    """The LM head of a quantized model: int8 x int8 where the CPU multiplies that exactly
    (the fastest at every batch size, see Int8DynamicLinear), else weight-only."""
    if weight.kind == "int8" and weight.q.device.type == "cpu" and exact_int8_products():
        return Int8DynamicLinear(weight, bias)
    return quantized_linear(weight, bias)
