"""An opt-in compiled decode step (`torch.compile`, inductor) for batch-1 decoding on CPU.

Eager decoding spends ~1/3 of each step in ~20 small ops per layer. Compiled with inductor
freezing and max-autotune limited to its C++ GEMM kernels, every int8 matmul becomes a
pre-packed C++ kernel fused with the norms and casts around it. Measured on 2 EPYC cores
(SmolLM2-135M, median step time over 128 steps, eager in the same run): int8 115-121 ->
176-195 tok/s, fp32 ~50 -> 80-105 tok/s, int4 (int8 head) 143 -> 222 tok/s (its packed
kernel stays an extern call; the fusion around it is the gain). The first compile takes ~1 minute; with inductor's
on-disk cache a later process starts in ~15 s. So it is off by default (`compile=True`).

Only the single-sequence decode step (ids (1, 1), no padding) is compiled; prefill and
batches run the eager path. The weights must be buffers of a module built outside
inference mode, hence this separate module over the decoder's tensors.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.engine.quant_linear import Int4Linear, Int8DynamicLinear, Int8Linear, Linear

COMPILABLE = ("fp32", "int8", "int4")


class CompiledStep(nn.Module):
    """The T=1 forward of a NativeDecoder as one module whose weights are buffers."""

    def __init__(self, dec):
        super().__init__()
        if dec.dtype not in COMPILABLE:
            raise ValueError(f"compile supports dtype {', '.join(COMPILABLE)}, not {dec.dtype}")
        self.kinds: dict[str, str] = {}  # linear name -> "dense" | "int8" | "int4"
        self.widths: dict[str, int] = {}  # int4 linear name -> its true out_features
        self.group_size = 0
        self.H, self.KV, self.hd, self.eps = dec.n_heads, dec.n_kv_heads, dec.head_dim, dec.eps
        self.n = len(dec.layers)
        self.register_buffer("embed", dec.embed)
        cos, sin = dec._rope_table(dec.max_positions)
        self.register_buffer("cos", cos.contiguous())
        self.register_buffer("sin", sin.contiguous())
        for i, layer in enumerate(dec.layers):
            for name, lin in (
                ("qkv", layer.qkv),
                ("o", layer.o),
                ("gu", layer.gate_up),
                ("down", layer.down),
            ):
                self._add(f"{name}{i}", lin)
            self.register_buffer(f"ln1_{i}", layer.ln1)
            self.register_buffer(f"ln2_{i}", layer.ln2)
            if layer.qkv.bias is not None:
                self.register_buffer(f"qkv{i}_b", layer.qkv.bias.float())
        self.register_buffer("norm", dec.norm)
        self._add("lm", dec.lm_head)

    def _add(self, name: str, lin: Linear) -> None:
        if isinstance(lin, Int8Linear | Int8DynamicLinear):
            # an int8 x int8 head runs here as weight-only int8, which inductor fuses: 1.3 ms
            # a token faster at one row (the compiled step is not bit-equal to the eager
            # batched one anyway: fused norms, its own attention)
            self.kinds[name] = "int8"
            self.register_buffer(name + "_w", lin.qweight)
            self.register_buffer(name + "_s", lin.scale.to(torch.bfloat16))
        elif isinstance(lin, Int4Linear):
            self.kinds[name] = "int4"
            self.register_buffer(name + "_w", lin.packed)
            self.register_buffer(name + "_s", lin.scales_zeros)
            self.group_size, self.widths[name] = lin.group_size, lin.out_features
        else:
            self.kinds[name] = "dense"
            self.register_buffer(name + "_w", lin.dequantize().contiguous())

    def lin(self, name: str, x: torch.Tensor) -> torch.Tensor:
        kind = self.kinds[name]
        if kind == "dense":
            return F.linear(x, getattr(self, name + "_w"))
        flat = x.to(torch.bfloat16).reshape(-1, x.shape[-1])
        w, s = getattr(self, name + "_w"), getattr(self, name + "_s")
        if kind == "int8":
            y = torch._weight_int8pack_mm(flat, w, s)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, w, self.group_size, s)
            y = y[:, : self.widths[name]]  # the kernel's rows are padded to 16
        return y.view(*x.shape[:-1], -1)

    def forward(
        self, tok: torch.Tensor, ks: list[torch.Tensor], vs: list[torch.Tensor], pos: int
    ) -> torch.Tensor:
        """tok (1, 1) at position `pos`; writes k/v there; returns logits (1, vocab)."""
        H, KV, hd = self.H, self.KV, self.hd
        half = hd // 2
        cos, sin = self.cos[pos : pos + 1], self.sin[pos : pos + 1]  # (1, hd)
        x = F.embedding(tok, self.embed)  # (1, 1, D)
        for i in range(self.n):
            h = F.rms_norm(x, (x.shape[-1],), getattr(self, f"ln1_{i}"), self.eps)
            qkv = self.lin(f"qkv{i}", h).to(x.dtype)
            if hasattr(self, f"qkv{i}_b"):
                qkv = qkv + getattr(self, f"qkv{i}_b")
            qkv = qkv.view(1, 1, H + 2 * KV, hd).transpose(1, 2)  # (1, H+2KV, 1, hd)
            qk, v = qkv[:, : H + KV], qkv[:, H + KV :]
            qk = qk * cos + torch.cat([-qk[..., half:], qk[..., :half]], dim=-1) * sin
            q, k = qk[:, :H], qk[:, H:]
            ks[i][:, :, pos : pos + 1] = k
            vs[i][:, :, pos : pos + 1] = v
            attn = F.scaled_dot_product_attention(
                q, ks[i][:, :, : pos + 1], vs[i][:, :, : pos + 1], enable_gqa=True
            )
            x = x + self.lin(f"o{i}", attn.transpose(1, 2).reshape(1, 1, H * hd))
            h = F.rms_norm(x, (x.shape[-1],), getattr(self, f"ln2_{i}"), self.eps)
            gate, up = self.lin(f"gu{i}", h).to(x.dtype).chunk(2, dim=-1)
            x = x + self.lin(f"down{i}", F.silu(gate) * up)
        x = F.rms_norm(x[:, -1], (x.shape[-1],), self.norm, self.eps)
        return self.lin("lm", x).float()


def compile_step(dec):
    """A compiled `step(tok, cache) -> logits` for `dec` (call outside inference mode)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    # inductor's C++ templates for the int8/int4 weight-only products need AVX512; on an AVX2
    # CPU they offer no choice at all, so there the ATen kernels are allowed too
    avx512 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    inductor_config.max_autotune_gemm_backends = "CPP" if avx512 else "CPP,ATEN"
    module = CompiledStep(dec).eval()
    fn = torch.compile(module.forward, dynamic=True, mode="max-autotune-no-cudagraphs")

    def step(tok: torch.Tensor, cache) -> torch.Tensor:
        logits = fn(tok, cache.k, cache.v, cache.pos)
        cache.advance(1)
        return logits

    step.module = module  # keep the buffers alive
    return step
