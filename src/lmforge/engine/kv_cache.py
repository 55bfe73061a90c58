"""Key/value caches, one buffer per layer written in place: `KVCache` for a batch that shares
one write position, `SlotCache` for continuous batching (a length per row)."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values for `n_layers` layers, shape (B, n_kv_heads, max_len, head_dim) each.

    All rows of a batch share one write position (prompts are left-padded), so a step
    writes the slice [pos, pos + T) of every row. `key_valid` (B, max_len) marks which
    positions hold real tokens rather than left padding.
    """

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ):
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.key_valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.max_len = max_len
        self.padded = False  # set when key_valid has any False (left padding)
        self.pos = 0  # number of positions filled

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    def write(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, window: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv, T, hd) at the current position; return the filled prefix, or
        the first `window` positions when that is longer (the caller masks the rest)."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache full: {end} > {self.max_len} positions")
        self.k[layer][:, :, self.pos : end] = k
        self.v[layer][:, :, self.pos : end] = v
        end = max(end, window)
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def prefill(self, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Open with a fixed prefix: per layer k, v (1, n_kv, n, head_dim), for every row."""
        n = kv[0][0].shape[2]
        for layer, (k, v) in enumerate(kv):
            self.k[layer][:, :, :n] = k.to(self.k[layer].dtype)
            self.v[layer][:, :, :n] = v.to(self.v[layer].dtype)
        self.pos = n

    def select(self, rows: torch.Tensor) -> KVCache:
        """A new cache holding rows `rows` (R,) of this one, e.g. one context per choice."""
        out = KVCache.__new__(KVCache)
        out.k = [t.index_select(0, rows) for t in self.k]
        out.v = [t.index_select(0, rows) for t in self.v]
        out.key_valid = self.key_valid.index_select(0, rows)
        out.max_len, out.pos, out.padded = self.max_len, self.pos, self.padded
        return out

    def advance(self, n: int) -> None:
        self.pos += n

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class SlotCache:
    """Continuous batching: `rows` slots, each holding its own sequence at its own length.

    Keys and values per layer are (rows, n_kv_heads, capacity, head_dim). The `n` active
    sequences sit in rows 0..n-1, kept compact (a freed row takes the last one's contents),
    so a decode step runs on views [:n]. Row b writes at its own offset `lengths[b]`; the
    rotary positions (`positions`) and the key mask (`attention_mask`) come from the same
    lengths, so a row computes what it would compute alone. `pos` is the longest row: the
    attention window of a step. Capacity grows by doubling, up to `max_len`, as the longest
    row needs it, and shrinks when long rows leave, so memory follows the sequences running:
    `rows` x the longest x the bytes per position.

    `prefix`: a prompt/prefix adapter's fixed keys and values, per layer (1, n_kv, p, head_dim),
    copied into the first p positions of every row that joins.
    """

    def __init__(
        self,
        n_layers: int,
        rows: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ):
        self.prefix = [(k.to(device, dtype), v.to(device, dtype)) for k, v in prefix or []]
        self.prefix_len = self.prefix[0][0].shape[2] if self.prefix else 0
        self.max_len = max_len
        self.device = device
        self.min_capacity = min(max_len, max(256, 2 * self.prefix_len))
        capacity = self.min_capacity
        shape = (rows, n_kv_heads, capacity, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.rows = rows
        self.n = 0  # active rows: 0..n-1
        self.lengths = [0] * rows  # filled positions per row (the prefix included)
        self.padded = True  # rows differ in length: never the plain causal path
        self._offsets = None  # lengths[:n] as a tensor, built once per step

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    @property
    def pos(self) -> int:
        """The longest active row: every row's keys lie before it."""
        return max(self.lengths[: self.n], default=0)

    def add(self) -> int:
        """Open the next free row (with the prefix, if any); return its index."""
        if self.n == self.rows:
            raise RuntimeError(f"no free row: all {self.rows} are in use")
        row, p = self.n, self.prefix_len
        for layer, (k, v) in enumerate(self.prefix):
            self.k[layer][row, :, :p] = k[0]
            self.v[layer][row, :, :p] = v[0]
        self.lengths[row] = p
        self.n += 1
        self._offsets = None
        return row

    def remove(self, row: int) -> None:
        """Free `row`; the last active row moves into it (callers reorder the same way).

        When the longest row left needs under a quarter of the capacity, the buffers shrink
        to twice its length, so that one long sequence does not hold `rows` times its memory.
        """
        last = self.n - 1
        if row != last:
            n = self.lengths[last]
            for t in self.k + self.v:
                t[row, :, :n] = t[last, :, :n]
            self.lengths[row] = n
        self.lengths[last] = 0
        self.n -= 1
        self._offsets = None
        if 4 * self.pos < self.capacity and self.capacity > self.min_capacity:
            self._resize(max(self.min_capacity, 2 * self.pos))

    def reserve(self, length: int) -> None:
        """Grow the capacity (doubling) so that a row can hold `length` positions."""
        if length > self.max_len:
            raise RuntimeError(f"KV cache full: {length} > {self.max_len} positions")
        if length > self.capacity:
            self._resize(min(self.max_len, max(length, 2 * self.capacity)))

    def _resize(self, capacity: int) -> None:
        used = self.pos
        for t in (self.k, self.v):
            for layer, old in enumerate(t):
                new = old.new_zeros(*old.shape[:2], capacity, old.shape[3])
                new[: self.n, :, :used] = old[: self.n, :, :used]
                t[layer] = new

    def row(self, row: int) -> KVCache:
        """Row `row` as a batch-1 KVCache over the same storage (to prefill one prompt)."""
        return _RowView(self, row)

    def offsets(self) -> torch.Tensor:
        """(n,) each active row's length: where it writes next."""
        if self._offsets is None:
            self._offsets = torch.tensor(self.lengths[: self.n], device=self.device)
        return self._offsets

    def positions(self, T: int = 1) -> torch.Tensor:
        """(n, T) rotary positions of the next T tokens of every active row."""
        return self.offsets()[:, None] + torch.arange(T, device=self.device)

    def attention_mask(self, T: int = 1) -> torch.Tensor:
        """(n, 1, T, pos + T) boolean: query t of row b sees keys 0 .. lengths[b] + t."""
        k_pos = torch.arange(self.pos + T, device=self.device)  # (S,)
        return (k_pos <= self.positions(T)[..., None])[:, None]

    def write(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, window: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (n, n_kv, T, hd), row b at lengths[b]; return the window [:n, :, :pos+T],
        or [:n, :, :window] when that is longer (the caller masks the rest)."""
        n, T = k.shape[0], k.shape[2]
        end = self.pos + T
        if end > self.capacity:
            raise RuntimeError(f"KV cache full: {end} > {self.capacity} positions")
        rows = torch.arange(n, device=self.device)[:, None]  # (n, 1)
        cols = self.positions(T)  # (n, T)
        # indexing (rows, :, cols) addresses (n, T, n_kv, hd)
        self.k[layer][rows, :, cols] = k.transpose(1, 2)
        self.v[layer][rows, :, cols] = v.transpose(1, 2)
        end = max(end, window)
        return self.k[layer][:n, :, :end], self.v[layer][:n, :, :end]

    def advance(self, n: int) -> None:
        for row in range(self.n):
            self.lengths[row] += n
        self._offsets = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class _RowView(KVCache):
    """One row of a SlotCache as a batch-1 KVCache sharing its storage; advancing it moves
    that row's length."""

    def __init__(self, slots: SlotCache, row: int):  # no super().__init__: nothing to allocate
        self.k = [t[row : row + 1] for t in slots.k]
        self.v = [t[row : row + 1] for t in slots.v]
        self.max_len = slots.capacity
        self.key_valid = torch.ones(1, self.max_len, dtype=torch.bool, device=slots.device)
        self.padded = False
        self.pos = slots.lengths[row]
        self._slots, self._row = slots, row

    def advance(self, n: int) -> None:
        super().advance(n)
        self._slots.lengths[self._row] = self.pos
        self._slots._offsets = None
