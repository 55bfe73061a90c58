"""Our own forward pass for Llama-family decoders, over the weights of a `transformers` model.

`transformers` defines the architecture and holds the weights; this module re-reads those
weights into a flat list of layers (q/k/v fused into one matrix, gate/up fused into one) and
runs prefill and decode with a preallocated KV cache. On a 135M model `generate()` spends
most of its time in Python around the matrix products; this path keeps ~20 tensor ops per
layer. Rotary tables come from the model's own `rotary_emb`, so every RoPE scaling variant
that `transformers` implements is honoured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmforge.engine.kv_cache import KVCache, SlotCache
from lmforge.engine.lora import LoraBatch
from lmforge.engine.quant_linear import (
    HEAD_DTYPE,
    Linear,
    QuantizedWeight,
    activation_dtype,
    head_linear,
    make_linear,
    quantize_weight,
    quantized_linear,
)

# model_type -> what it needs beyond plain Llama
SUPPORTED = {"llama": {}, "mistral": {}, "qwen2": {}, "qwen3": {"qk_norm": True}}


def supports(config) -> bool:
    """Whether the native path can run this config (else the engine uses `transformers`)."""
    if getattr(config, "model_type", None) not in SUPPORTED:
        return False
    if getattr(config, "hidden_act", "silu") != "silu":
        return False
    return not getattr(config, "sliding_window", None) or not getattr(
        config, "use_sliding_window", config.model_type == "mistral"
    )


WINDOW = 64
"""A CPU decode step attends over a multiple of this many keys (the rest masked)."""

PREFILL_CHUNK = 64
"""A prompt is prefilled in chunks that end at multiples of this many positions.

Prefill attention rounds by the queries of the forward: SDPA splits them into blocks by their
number and offset, and a lone query takes the decode path, so a query's output can differ by
~2e-7 between a forward over a whole prompt and one over its last part. The bf16 casts of the
int8/int4 layers turn that into other logits (up to 0.4 on SmolLM2-135M at int8), and into
other greedy answers for 2 of 6 chats sent again, when the prompt cache restored an opening
and the rest ran as one forward. With chunks at fixed absolute positions, and the prompt cache
keeping whole chunks only (engine/prefix_cache.py), a prompt runs the same computations (the
same queries over the same keys) after a cache hit as without it: the same logits bits at every
weight type. Cost, measured on SmolLM2-135M (1 thread, 2 busy EPYC cores, a 500-token prompt,
median CPU time of 9 runs, two sessions): 1.08x and 1.13x one forward at int8, 1.03x and 1.11x
at int4; chunks of 32 cost 1.24x (int8) and 1.12x (int4), of 16 1.34x and 1.22x."""


def decode_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """One query per row: q (B, H, 1, hd) over keys, values (B, KV, S, hd), `bias` (B, 1, 1, S)
    0 or -inf. The H // KV query heads of a key head go through one matmul. On CPU this beats
    SDPA's masked path: 173 vs 233 us for 16 rows of 9 heads over 256 keys (2 EPYC cores).

    With S a multiple of WINDOW, a row gets the same bits whatever the other rows and however
    many masked keys follow its own: the products and the softmax then split the keys the same
    way (checked on MKL: over any window that is not such a multiple, the score products and
    the softmax round differently, ~4e-7, which a bf16 or int8 cast downstream can turn into
    another token). So a request decodes to the same text alone or in any batch."""
    B, H, _, hd = q.shape
    KV = keys.shape[1]
    scores = torch.matmul(q.view(B, KV, H // KV, hd), keys.transpose(-1, -2))  # (B, KV, G, S)
    scores = scores * hd**-0.5 + bias
    return torch.matmul(scores.softmax(-1), values).view(B, H, 1, hd)


@dataclass
class _Layer:
    ln1: torch.Tensor
    qkv: Linear
    o: Linear
    ln2: torch.Tensor
    gate_up: Linear
    down: Linear
    q_norm: torch.Tensor | None = None
    k_norm: torch.Tensor | None = None


class NativeDecoder:
    """Prefill/decode for one model at one weight dtype ("fp32", "bf16", "int8", "int4")."""

    def __init__(
        self,
        hf_model,
        dtype: str = "fp32",
        compile: bool = False,
        quantized: dict[str, QuantizedWeight] | None = None,
    ):
        """`quantized`: stored int8/int4 weights by module name (a quantized artifact), used
        as they are when `dtype` is their type; otherwise weights are quantized here."""
        cfg = hf_model.config
        if not supports(cfg):
            raise ValueError(f"native engine does not support model_type {cfg.model_type!r}")
        self.config = cfg
        self.dtype = dtype
        self.device = hf_model.model.embed_tokens.weight.device
        self.act_dtype = act = activation_dtype(dtype, self.device)
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.vocab_size = cfg.vocab_size
        self.max_positions = cfg.max_position_embeddings
        stored = quantized if quantized and dtype in ("int8", "int4") else None

        def linear(*names: str, dtype: str = dtype, head: bool = False) -> Linear:
            """One (fused) linear layer from the modules `names`, their rows stacked."""
            mods = [hf_model.get_submodule(n) for n in names]
            bias = None if mods[0].bias is None else torch.cat([m.bias for m in mods])
            if stored is not None:
                qw = QuantizedWeight.cat([stored[n] for n in names])
            elif dtype in ("int8", "int4"):
                qw = quantize_weight(torch.cat([m.weight for m in mods]), dtype)
            else:
                return make_linear(torch.cat([m.weight for m in mods]), bias, dtype)
            return head_linear(qw, bias) if head else quantized_linear(qw, bias)

        base = hf_model.model
        self.embed = base.embed_tokens.weight.detach().to(act)
        self.layers = []
        for i, block in enumerate(base.layers):
            a, m = f"model.layers.{i}.self_attn", f"model.layers.{i}.mlp"
            q_norm = getattr(block.self_attn, "q_norm", None)
            k_norm = getattr(block.self_attn, "k_norm", None)
            self.layers.append(
                _Layer(
                    ln1=block.input_layernorm.weight.detach().to(act),
                    qkv=linear(f"{a}.q_proj", f"{a}.k_proj", f"{a}.v_proj"),
                    o=linear(f"{a}.o_proj"),
                    ln2=block.post_attention_layernorm.weight.detach().to(act),
                    gate_up=linear(f"{m}.gate_proj", f"{m}.up_proj"),
                    down=linear(f"{m}.down_proj"),
                    q_norm=None if q_norm is None else q_norm.weight.detach().to(act),
                    k_norm=None if k_norm is None else k_norm.weight.detach().to(act),
                )
            )
        self.norm = base.norm.weight.detach().to(act)
        self.lm_head = linear("lm_head", dtype=HEAD_DTYPE.get(dtype, dtype), head=True)
        self._rotary = base.rotary_emb
        self._cos = self._sin = torch.empty(0, self.head_dim)
        self._step = self._rows_step = None
        if compile:
            from lmforge.engine.compiled import compile_steps

            self._step, self._rows_step = compile_steps(self)  # each compiles on its first call

    @property
    def compiled(self) -> bool:
        """Whether decode steps run compiled (one row, and the rows of a SlotCache)."""
        return self._step is not None

    def compile_failed(self, error: Exception) -> None:
        """Fall back to the eager step after the compiled one failed (say why, once)."""
        import warnings

        warnings.warn(
            f"compiling failed ({type(error).__name__}: {error}); running eager", stacklevel=2
        )
        self._step = self._rows_step = None

    def warm_up(self) -> None:
        """Run each compiled step once on a throwaway cache (compiling it), so that no request
        waits for the compiler."""
        # sizes that equal no size of the model: dynamo ties sizes that are equal while it
        # traces (2 rows and 2 key heads, say) and would compile again once they differ
        taken = {self.n_heads, self.n_kv_heads, self.head_dim, self.embed.shape[1]}

        def free(start: int, step: int = 1) -> int:
            return next(k for k in range(start, 1 << 20, step) if k not in taken and k > 1)

        rows = free(2)  # rows stepped, in a cache of `slots` rows
        taken.add(rows)
        slots = free(rows + 1)
        taken.add(slots)
        window = free(2 * WINDOW, WINDOW)  # the rows step's window, then a larger capacity
        taken.add(window)
        capacity = min(free(window + WINDOW, WINDOW), self.max_positions)
        with torch.inference_mode():  # as the scheduler's caches are made
            cache = self.new_slot_cache(slots, capacity)
            row = cache.add()
            for _ in range(3):  # positions 0 and 1 get graphs of their own, then any position
                self.forward(torch.zeros(1, 1, dtype=torch.long), cache.row(row))
            for _ in range(rows - 1):
                row = cache.add()
                self.forward(torch.zeros(1, window - 1, dtype=torch.long), cache.row(row))
            self.forward(  # `rows` rows of `slots`, over `window` keys
                torch.zeros(rows, 1, dtype=torch.long),
                cache,
                cache.positions(1),
                attn_mask=cache.attention_mask(1),
            )

    # -- rotary tables -------------------------------------------------------------------
    def _rope_table(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (n, head_dim) for positions 0..n-1, grown by doubling."""
        if self._cos.shape[0] < n:
            size = max(n, 2 * self._cos.shape[0], 256)
            pos = torch.arange(size, device=self.device)[None]
            dummy = torch.empty(1, dtype=torch.float32, device=self.device)
            with torch.no_grad():
                cos, sin = self._rotary(dummy, pos)
            self._cos, self._sin = cos[0].to(self.act_dtype), sin[0].to(self.act_dtype)
        return self._cos, self._sin

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache(
            len(self.layers),
            batch,
            self.n_kv_heads,
            max_len,
            self.head_dim,
            self.act_dtype,
            self.device,
        )

    def new_slot_cache(self, rows: int, max_len: int, prefix=None) -> SlotCache:
        """A cache of `rows` independent sequences (continuous batching); `prefix`: a
        prompt/prefix adapter's per-layer keys and values, opening every row."""
        return SlotCache(
            len(self.layers),
            rows,
            self.n_kv_heads,
            max_len,
            self.head_dim,
            self.act_dtype,
            self.device,
            prefix=prefix,
        )

    # -- forward -------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(
        self,
        ids: torch.Tensor,
        cache: KVCache,
        positions: torch.Tensor | None = None,
        all_logits: bool = False,
        attn_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
        adapters: list | None = None,
    ) -> torch.Tensor:
        """Run ids (B, T) from `cache.pos`; return logits (B, vocab), or (B, T, vocab) if all_logits.

        `positions` (B, T) gives each token's rotary position (left-padded rows start later);
        None means cache.pos .. cache.pos + T for every row. `attn_mask` (B, 1, T, pos + T),
        boolean, replaces the causal/padding mask (True: may attend). `logits_at` (K,) picks
        the positions that go through the LM head: logits (B, K, vocab). A `SlotCache` writes
        each row at its own length: pass its `positions(T)` and `attention_mask(T)`.
        `adapters` (B,): each row's `LoraAdapter` or None (the base), see `engine.lora`.

        A prompt that shares one start (no `positions`, `attn_mask`, padding, `all_logits`
        or `logits_at`) runs in chunks that end at multiples of PREFILL_CHUNK.
        """
        if (
            positions is None
            and attn_mask is None
            and not cache.padded
            and not all_logits
            and logits_at is None
        ):
            start = cache.pos
            first_cut = start - start % PREFILL_CHUNK + PREFILL_CHUNK
            for cut in range(first_cut, start + ids.shape[1], PREFILL_CHUNK):
                # every chunk but the last: its keys and values only
                done = cache.pos - start
                self._forward(ids[:, done : cut - start], cache, adapters=adapters, head=False)
            ids = ids[:, cache.pos - start :]
        return self._forward(ids, cache, positions, all_logits, attn_mask, logits_at, adapters)

    def _forward(
        self,
        ids: torch.Tensor,
        cache: KVCache,
        positions: torch.Tensor | None = None,
        all_logits: bool = False,
        attn_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
        adapters: list | None = None,
        head: bool = True,
    ) -> torch.Tensor | None:
        """`forward` in one piece; `head=False` stops before the LM head (returns None)."""
        B, T = ids.shape
        lora = LoraBatch.of(adapters, self.device)
        if (
            self._step is not None
            and B == T == 1
            and not all_logits
            and not cache.padded
            and attn_mask is None
            and logits_at is None
            and lora is None
        ):
            return self._step(ids, cache)
        H, KV, hd = self.n_heads, self.n_kv_heads, self.head_dim
        start = cache.pos
        mask = attn_mask if attn_mask is not None else self._mask(cache, T)
        # a decode step on CPU: our own attention over a window of WINDOW-multiple keys, the
        # mask as an additive bias built once for all layers
        bias, window = None, 0
        if T == 1 and self.device.type == "cpu":
            end = start + 1
            window = max(end, min(-(-end // WINDOW) * WINDOW, cache.capacity))
            valid = mask if mask is not None else torch.ones(1, 1, 1, end, dtype=torch.bool)
            bias = torch.full((valid.shape[0], 1, 1, window), float("-inf"), dtype=self.act_dtype)
            bias[..., :end].masked_fill_(valid, 0.0)
        if (
            self._rows_step is not None
            and bias is not None
            and isinstance(cache, SlotCache)
            and B > 1
            and window < cache.capacity  # (a window over the whole buffer: another graph)
            and not all_logits
            and logits_at is None
            and lora is None
        ):
            return self.lm_head(self._rows_step(ids, cache, bias)).float()  # its own rotary
        cos_t, sin_t = self._rope_table(start + T)
        if positions is None:
            cos, sin = cos_t[start : start + T], sin_t[start : start + T]  # (T, hd)
            cos, sin = cos[None, None], sin[None, None]  # (1, 1, T, hd)
        else:
            cos, sin = cos_t[positions][:, None], sin_t[positions][:, None]  # (B, 1, T, hd)
        half = hd // 2

        x = F.embedding(ids, self.embed)  # (B, T, D)
        for i, layer in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), layer.ln1, self.eps)
            qkv = layer.qkv(h)
            if lora is not None:
                qkv = lora(i, "qkv", h, qkv)
            qkv = qkv.to(x.dtype).view(B, T, H + 2 * KV, hd).transpose(1, 2)  # (B, H+2KV, T, hd)
            qk, v = qkv[:, : H + KV], qkv[:, H + KV :]
            if layer.q_norm is not None:
                qk = torch.cat(
                    [
                        F.rms_norm(qk[:, :H], (hd,), layer.q_norm, self.eps),
                        F.rms_norm(qk[:, H:], (hd,), layer.k_norm, self.eps),
                    ],
                    dim=1,
                )
            # rotary on q and k together: x * cos + rotate_half(x) * sin
            rot = torch.cat([-qk[..., half:], qk[..., :half]], dim=-1)
            qk = qk * cos + rot * sin
            q, k = qk[:, :H], qk[:, H:]
            keys, values = cache.write(i, k, v, window)
            if bias is not None:
                attn = decode_attention(q, keys, values, bias)
            else:
                attn = F.scaled_dot_product_attention(
                    q,
                    keys,
                    values,
                    attn_mask=mask,
                    is_causal=mask is None and T > 1,
                    enable_gqa=True,
                )  # (B, H, T, hd)
            attn = attn.transpose(1, 2).reshape(B, T, H * hd)
            out = layer.o(attn)
            if lora is not None:
                out = lora(i, "o", attn, out)
            x = x + out
            h = F.rms_norm(x, (x.shape[-1],), layer.ln2, self.eps)
            gate_up = layer.gate_up(h)
            if lora is not None:
                gate_up = lora(i, "gate_up", h, gate_up)
            gate, up = gate_up.chunk(2, dim=-1)
            act = F.silu(gate) * up
            out = layer.down(act)
            if lora is not None:
                out = lora(i, "down", act, out)
            x = x + out  # a bf16 layer output promotes to x's dtype
        cache.advance(T)
        if not head:
            return None
        if logits_at is not None:
            x = x[:, logits_at]
        elif not all_logits:
            x = x[:, -1]
        x = F.rms_norm(x, (x.shape[-1],), self.norm, self.eps)
        return self.lm_head(x).float()  # (B, vocab) or (B, T, vocab)

    def _mask(self, cache: KVCache, T: int) -> torch.Tensor | None:
        """Boolean attention mask (B, 1, T, S), or None when plain causal attention is exact."""
        start, end = cache.pos, cache.pos + T
        if not cache.padded and (start == 0 or T == 1):
            return None  # no padding: plain causal prefill, or decode seeing every key
        valid = cache.key_valid[:, :end]  # (B, S)
        q_pos = torch.arange(start, end, device=valid.device)[:, None]  # (T, 1)
        k_pos = torch.arange(end, device=valid.device)[None]  # (1, S)
        causal = k_pos <= q_pos  # (T, S)
        # A padded query would see no key at all (NaN); let every query see itself.
        mask = causal & (valid[:, None, :] | (k_pos == q_pos))  # (B, T, S)
        return mask[:, None]
