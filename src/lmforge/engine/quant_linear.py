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

import torch
import torch.nn.functional as F

DTYPES = ("fp32", "bf16", "int8", "int4")


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
    return weight.device.type == "cpu" and torch.backends.mkldnn.is_available()


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


class Int8Linear:
    """Weight-only int8: symmetric, one fp scale per output channel."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # (out,)
        self.qweight = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.scale = scale.to(torch.bfloat16)
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


class Int4Linear:
    """Weight-only int4, asymmetric, in groups of `group_size` input channels."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, group_size: int = 32):
        out_f, in_f = weight.shape
        if in_f % group_size:
            raise ValueError(f"in_features {in_f} is not a multiple of group_size {group_size}")
        # The packed kernel works on blocks of 16 output channels: pad with zero rows and
        # slice the output back (only layers like an odd-sized vocab pay for the slice).
        padded_out = -(-out_f // 16) * 16
        w = weight.detach().float()
        if padded_out != out_f:
            w = torch.cat([w, w.new_zeros(padded_out - out_f, in_f)])
        w = w.reshape(padded_out, in_f // group_size, group_size)
        lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15.0).clamp(min=1e-8)
        q = torch.round((w - lo) / scale).clamp(0, 15).to(torch.int32).reshape(padded_out, in_f)
        # The kernel wants zero points stored as (lo + 8 * scale): it computes (q - 8) * s + z.
        zeros = lo + 8.0 * scale
        self.group_size = group_size
        self.out_features = out_f
        self.packed_in_features = in_f
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 2)
        # (groups, out, 2): scale and zero for each group and channel
        self.scales_zeros = (
            torch.stack([scale.squeeze(-1), zeros.squeeze(-1)], dim=-1)
            .transpose(0, 1)
            .contiguous()
            .to(torch.bfloat16)
        )
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


Linear = DenseLinear | Int8Linear | Int4Linear


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None, dtype: str) -> Linear:
    """Build the linear layer for `dtype` (one of DTYPES) from a float weight (out, in)."""
    if dtype == "fp32":
        return DenseLinear(weight, bias, torch.float32)
    if dtype == "bf16":
        return DenseLinear(weight, bias, torch.bfloat16)
    if dtype == "int8":
        return Int8Linear(weight, bias)
    if dtype == "int4":
        if weight.shape[1] % 32:  # groups must tile the input; such a layer stays int8
            return Int8Linear(weight, bias)
        return Int4Linear(weight, bias)
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
