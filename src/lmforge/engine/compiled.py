"""Opt-in compiled decode steps (`torch.compile`, inductor) on CPU: one row, and the rows of
a SlotCache (continuous batching).

Eager decoding spends ~1/3 of each step in ~20 small ops per layer. Compiled with inductor
freezing and max-autotune limited to its C++ GEMM kernels, every int8 matmul becomes a
pre-packed C++ kernel fused with the norms and casts around it. Measured on 2 EPYC cores
(SmolLM2-135M, median step time over 128 steps, eager in the same run): int8 115-121 ->
176-195 tok/s, fp32 ~50 -> 80-105 tok/s, int4 (int8 head) 143 -> 222 tok/s (its packed
kernel stays an extern call; the fusion around it is the gain). The rows step (dynamic row
count and key window, default mode) takes a 16-row int4 step from 42 to 36 ms.

Compiling takes 1-3 minutes the first time, ~1 minute from inductor's on-disk cache, so it
is off by default (`compile=True`) and `NativeDecoder.warm_up` compiles before serving, at
sizes chosen so that nothing compiles again while serving (a test counts the graphs).
Prefill, adapters and padded batches run the eager path. The compiled steps are close to
the eager ones, not bit-equal (fused kernels). The weights must be buffers of a module built
outside inference mode, hence this separate module over the decoder's tensors.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.engine.native import decode_attention
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
            if layer.q_norm is not None:  # qwen3: q and k normed per head
                self.register_buffer(f"qn_{i}", layer.q_norm)
                self.register_buffer(f"kn_{i}", layer.k_norm)
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

    def blocks(self, x: torch.Tensor, cos, sin, attend) -> torch.Tensor:
        """The decoder layers over x (B, 1, D), then the final norm: (B, D). `attend(i, q, k,
        v)` stores layer i's keys and values and returns the attention output (B, H, 1, hd)."""
        H, KV, hd = self.H, self.KV, self.hd
        B, half = x.shape[0], hd // 2
        for i in range(self.n):
            h = F.rms_norm(x, (x.shape[-1],), getattr(self, f"ln1_{i}"), self.eps)
            qkv = self.lin(f"qkv{i}", h).to(x.dtype)
            if hasattr(self, f"qkv{i}_b"):
                qkv = qkv + getattr(self, f"qkv{i}_b")
            qkv = qkv.view(B, 1, H + 2 * KV, hd).transpose(1, 2)  # (B, H+2KV, 1, hd)
            qk, v = qkv[:, : H + KV], qkv[:, H + KV :]
            if hasattr(self, f"qn_{i}"):
                q, k = qk[:, :H], qk[:, H:]
                q = F.rms_norm(q, (hd,), getattr(self, f"qn_{i}"), self.eps)
                k = F.rms_norm(k, (hd,), getattr(self, f"kn_{i}"), self.eps)
                qk = torch.cat([q, k], dim=1)
            qk = qk * cos + torch.cat([-qk[..., half:], qk[..., :half]], dim=-1) * sin
            attn = attend(i, qk[:, :H], qk[:, H:], v)
            x = x + self.lin(f"o{i}", attn.transpose(1, 2).reshape(B, 1, H * hd))
            h = F.rms_norm(x, (x.shape[-1],), getattr(self, f"ln2_{i}"), self.eps)
            gate, up = self.lin(f"gu{i}", h).chunk(2, dim=-1)
            x = x + self.lin(f"down{i}", F.silu(gate) * up)
        return F.rms_norm(x[:, -1], (x.shape[-1],), self.norm, self.eps)

    def forward(
        self, tok: torch.Tensor, ks: list[torch.Tensor], vs: list[torch.Tensor], pos: int
    ) -> torch.Tensor:
        """tok (1, 1) at position `pos`; writes k/v there; returns logits (1, vocab)."""

        def attend(i, q, k, v):
            ks[i][:, :, pos : pos + 1] = k
            vs[i][:, :, pos : pos + 1] = v
            window = (ks[i][:, :, : pos + 1], vs[i][:, :, : pos + 1])
            return F.scaled_dot_product_attention(q, *window, enable_gqa=True)

        cos, sin = self.cos[pos : pos + 1], self.sin[pos : pos + 1]  # (1, hd)
        x = self.blocks(F.embedding(tok, self.embed), cos, sin, attend)
        return self.lin("lm", x).float()

    def forward_rows(
        self,
        tok: torch.Tensor,
        ks: list[torch.Tensor],
        vs: list[torch.Tensor],
        cols: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        """One token for each of the first n rows of a SlotCache: tok (n, 1), cols (n, 1) each
        row's position (where it writes), bias (n, 1, 1, window) the additive key mask over
        a window of keys; returns the last hidden states (n, D), for the eager LM head."""
        n, window = tok.shape[0], bias.shape[-1]
        rows = torch.arange(n, device=tok.device)[:, None]

        def attend(i, q, k, v):
            ks[i][rows, :, cols] = k.transpose(1, 2)
            vs[i][rows, :, cols] = v.transpose(1, 2)
            # narrow, not slicing: a slice's size is min(window, capacity), and dynamo would
            # recompile each time the window meets the capacity (or n the row count)
            keys = ks[i].narrow(0, 0, n).narrow(2, 0, window)
            values = vs[i].narrow(0, 0, n).narrow(2, 0, window)
            return decode_attention(q, keys, values, bias)

        cos, sin = self.cos[cols][:, None], self.sin[cols][:, None]  # (n, 1, 1, hd)
        return self.blocks(F.embedding(tok, self.embed), cos, sin, attend)


def compile_steps(dec):
    """Compiled decode steps for `dec` (call outside inference mode): `step(tok, cache) ->
    logits` for one row, and `rows_step(tok, slot_cache, bias) -> hidden` for the rows of a
    SlotCache (see `CompiledStep.forward_rows`). Each compiles on its first call."""
    # inductor's settings go with each compile (options), never into the process's config:
    # weights are frozen into the graphs; inductor's C++ templates for the int8/int4
    # weight-only products need AVX512, and on an AVX2 CPU they offer no choice at all, so
    # there the ATen kernels are allowed too
    avx512 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    one_row = {
        "freezing": True,
        "max_autotune": True,  # what mode="max-autotune-no-cudagraphs" sets on a CPU
        "triton.cudagraphs": False,
        "max_autotune_gemm_backends": "CPP" if avx512 else "CPP,ATEN",
    }
    module = CompiledStep(dec).eval()
    fn = torch.compile(module.forward, dynamic=True, options=one_row)
    # the rows step: no autotuning (its row count varies; the templates want a fixed one, and
    # autotuning each product doubled the compile time for no gain, measured)
    fn_rows = torch.compile(module.forward_rows, dynamic=True, options={"freezing": True})

    def step(tok: torch.Tensor, cache) -> torch.Tensor:
        logits = fn(tok, cache.k, cache.v, cache.pos)
        cache.advance(1)
        return logits

    def rows_step(tok: torch.Tensor, cache, bias: torch.Tensor) -> torch.Tensor:
        hidden = fn_rows(tok, cache.k, cache.v, cache.positions(1), bias)
        cache.advance(1)
        return hidden

    step.module = rows_step.module = module  # keep the buffers alive
    return step, rows_step
