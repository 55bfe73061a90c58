"""Continuous batching: requests join and leave one running batch at token boundaries.

A background thread owns the decoder. Each iteration it

1. drops the rows of cancelled requests,
2. admits waiting requests into free rows and prefills them, one prompt per forward (a
   budget of prompt tokens per iteration keeps the running rows from waiting long on a
   queue of prompts), and samples their first token,
3. runs one decode step for every running row together and samples each row's next token.

On the native engine the rows share a `SlotCache`: each row writes at its own length, with
its own rotary positions and key mask, so a row computes what its prompt computes alone
(greedy tokens equal `generate_batch` on that prompt). Other decoders (the `transformers`
fallback, whose cache has one write position) keep a cache per row and run the rows one
after another: the same scheduling at batch-1 speed. A request may carry a LoRA adapter
(`engine.lora`): its row adds that adapter's delta, so rows of different adapters (or none)
share the batch; the request holds the adapter object until it ends.

Each request has its own `SamplingParams` and its own `Sampler`, so a seed reproduces a
request whatever runs beside it. Measured on 2 cores, vocab 49152, 16 rows: a sampler per
row costs what one batched `Sampler` costs (greedy 0.52 vs 0.47 ms a step; temperature with
top-p 69 vs 82 ms, the full-vocabulary sort dominating either way).

Log-probabilities, when a request asks for them (`logprobs=k`), ride on its Deltas: the
chosen token's and the k most likely, all from `log_softmax` of the model's raw logits at
that step, i.e. the distribution before the repetition penalty, temperature, top-k and
top-p reshape it (what vLLM returns by default). `echo=True` also scores the prompt: the
scheduler thread, which owns the decoder, runs one more forward over the prompt with
`all_logits=True` at admission and sets `Request.prompt_logprobs` before the first Delta.
`generate=False` (the API's `max_tokens: 0`) stops there: one Delta, finish_reason "length".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import torch

from lmforge.engine.generate import Completion, Delta, RowText, start_batch
from lmforge.engine.json_mode import JsonSampler, token_texts
from lmforge.engine.native import NativeDecoder
from lmforge.engine.params import SamplingParams
from lmforge.engine.prefix import PrefixDecoder
from lmforge.engine.prefix_cache import PrefixCache
from lmforge.engine.sampling import Sampler
from lmforge.errors import InvalidInputError, LmforgeError


class QueueFullError(LmforgeError):
    """Every row is busy and the waiting queue is full; try again after `retry_after` s."""

    def __init__(self, waiting: int, retry_after: int = 1):
        super().__init__(
            f"server busy: {waiting} requests already waiting", f"retry in {retry_after} s"
        )
        self.retry_after = retry_after


class SchedulerClosed(LmforgeError):
    """The scheduler stopped before the request finished."""


_ids = itertools.count(1)


def enqueue(scheduler, requests: list[Request], free) -> list[Request]:
    """Add `requests` to `scheduler`'s queue, all or none: `QueueFullError` (429) when more
    wait than `max_queue` plus the rows `free()` counts (called under the lock)."""
    with scheduler._lock:
        if scheduler._closing:
            raise SchedulerClosed("the server is shutting down", "retry later")
        if len(scheduler._waiting) + len(requests) > scheduler.max_queue + free():
            raise QueueFullError(len(scheduler._waiting))
        scheduler._waiting.extend(requests)
        scheduler._wake.notify_all()
    return requests


class Request:
    """A handle on one submitted generation: iterate it for `Delta`s (plain `for` or
    `async for`), or `cancel()` it. Its last Delta carries the finish_reason ("stop",
    "length" or "cancelled"); a failure in the engine is raised from the iteration.

    Leaving an iteration early (break, a dropped client) cancels the request.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        prompt: list[int],
        params: SamplingParams,
        room: int,
        logprobs: int | None = None,
        echo: bool = False,
        generate: bool = True,
        adapter=None,
        json_mode: bool = False,
    ):
        self.id = next(_ids)
        self.json_mode = json_mode
        self.prompt = prompt
        self.params = params
        self.adapter = adapter  # a LoraAdapter (engine.lora) held to the end, or None
        self.max_new = min(params.max_tokens, room) if generate else 0
        self.logprobs = logprobs  # None: off; k: the chosen token's and the k most likely
        self.echo = echo
        # with echo: one entry per prompt token, None for the first (nothing predicts it)
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self.cached_tokens = 0  # prompt tokens whose keys and values came from the prompt cache
        self.token_ids: list[int] = []  # generated, EOS excluded
        self.finish_reason: str | None = None
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self._scheduler = scheduler
        self._items: deque[Delta | BaseException] = deque()
        self._cond = threading.Condition()
        self._waker = None  # set by an async consumer: wakes its event loop
        self._cancel = False
        self._last_at = 0.0  # when the previous token came (for on_token)

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def cancel(self) -> None:
        """Stop generating; the row is freed at the next token boundary (one decode step)."""
        if not self.done:
            self._cancel = True
            self._scheduler._cancel(self)

    # -- filled by the scheduler thread ----------------------------------------------------
    def _put(self, item: Delta | BaseException) -> None:
        if isinstance(item, Delta):
            if item.token_id is not None:
                now = time.perf_counter()
                on_token = self._scheduler.on_token
                if on_token is not None:  # metrics: time to first token, or since the last
                    first = self.first_token_at is None
                    on_token(first, now - (self.submitted_at if first else self._last_at))
                self._last_at = now
                self.first_token_at = self.first_token_at or now
                self.token_ids.append(item.token_id)
            if item.finish_reason:
                self.finish_reason = item.finish_reason
        if isinstance(item, BaseException) or item.finish_reason:
            self.finished_at = time.perf_counter()
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()
            waker = self._waker
        if waker is not None:
            waker()

    # -- read by the caller ----------------------------------------------------------------
    @staticmethod
    def _delta(item: Delta | BaseException) -> Delta:
        """The Delta an item carries; a failure is raised (the request is over either way)."""
        if isinstance(item, BaseException):
            raise item
        return item

    def __iter__(self) -> Iterator[Delta]:
        try:
            while True:
                with self._cond:
                    while not self._items:
                        self._cond.wait()
                    item = self._delta(self._items.popleft())
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            self.cancel()  # a no-op once done; else the caller left early: free the row

    async def __aiter__(self) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def wake() -> None:  # called from the scheduler thread
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(ready.set)

        try:
            with self._cond:
                self._waker = wake
            while True:
                with self._cond:
                    items = list(self._items)
                    self._items.clear()
                    if not items:
                        ready.clear()  # a later _put sets it again
                if not items:
                    await ready.wait()
                    continue
                for item in map(self._delta, items):
                    yield item
                    if item.finish_reason is not None:
                        return
        finally:
            self._waker = None
            self.cancel()  # a no-op once done; else the caller left early: free the row

    def result(self) -> Completion:
        """Wait for the end; the whole generation as a Completion."""
        text = "".join(d.text for d in self)
        first = self.first_token_at or self.finished_at
        return Completion(
            text=text,
            token_ids=list(self.token_ids),
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            ttft_s=first - self.submitted_at,
            decode_s=self.finished_at - first,
        )


TokenLogprob = tuple[float, list[tuple[int, float]]]
"""A token's log-probability and the k most likely (token id, log-probability) there."""


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, k: int) -> list[TokenLogprob]:
    """For logits (n, vocab) and the tokens (n,) chosen there: each token's log-probability
    under the raw logits and the top k alternatives, most likely first."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (n, vocab)
    chosen = logp.gather(1, tokens.view(-1, 1).to(logp.device)).squeeze(1).tolist()  # (n,)
    if k == 0:
        return [(lp, []) for lp in chosen]
    top = torch.topk(logp, min(k, logp.shape[-1]), dim=-1)  # (n, k)
    return [
        (lp, list(zip(ids, values, strict=True)))
        for lp, ids, values in zip(chosen, top.indices.tolist(), top.values.tolist(), strict=True)
    ]


@dataclass
class _Row:
    """A running request as the scheduler thread sees it."""

    request: Request
    sampler: Sampler
    text: RowText
    next_token: int = -1  # sampled, not yet fed to the model


class _SlotRows:
    """Native engine: every running sequence in one SlotCache, one forward per decode step."""

    def __init__(
        self, decoder: NativeDecoder, rows: int, max_len: int, prefix=None, cache_bytes: int = 0
    ):
        self.decoder = decoder
        self.cache = decoder.new_slot_cache(rows, max_len, prefix)
        self.prompts = PrefixCache(cache_bytes) if cache_bytes else None

    def add(self, prompt: list[int], room: int, adapter=None) -> tuple[torch.Tensor, int]:
        """Prefill `prompt` into a new last row: its next-token logits (1, vocab) and how many
        prompt tokens came from the prompt cache."""
        row = self.cache.add()
        try:
            self.cache.reserve(self.cache.lengths[row] + len(prompt))
            cached = (
                self.prompts.restore(self.cache, row, prompt, adapter)
                if self.prompts is not None
                else 0
            )
            ids = torch.tensor([prompt[cached:]], device=self.decoder.device)
            logits = self.decoder.forward(ids, self.cache.row(row), adapters=[adapter])
            if self.prompts is not None:
                self.prompts.store(self.cache, row, prompt, adapter)
            return logits, cached
        except Exception:
            self.cache.remove(row)
            raise

    def step(self, tokens: torch.Tensor, adapters: list) -> tuple[torch.Tensor, dict]:
        """Feed one token per row, tokens (n,), each row with its adapter (or None):
        logits (n, vocab), and {row: error} for rows that failed (their logits are zeros).

        If the batched step fails, each row runs alone (a failed step writes its keys and
        values again at the same positions, and advances no row), so one row's failure
        (its adapter, say) stays its own."""
        cache = self.cache
        cache.reserve(cache.pos + 1)
        try:
            if cache.n == 1:  # one row: the batch-1 path (no mask, slice writes), 2x faster
                logits = self.decoder.forward(tokens[:, None], cache.row(0), adapters=adapters)
            else:
                logits = self.decoder.forward(
                    tokens[:, None],
                    cache,
                    cache.positions(1),
                    attn_mask=cache.attention_mask(1),
                    adapters=adapters,
                )
            return logits, {}
        except Exception as err:
            if cache.n == 1:
                return torch.zeros(1, self.decoder.vocab_size, device=self.decoder.device), {0: err}
        return _each_alone(
            [
                lambda i=i: self.decoder.forward(
                    tokens[i : i + 1, None], cache.row(i), adapters=[adapters[i]]
                )
                for i in range(cache.n)
            ],
            self.decoder.vocab_size,
            self.decoder.device,
        )

    def remove(self, row: int) -> None:
        self.cache.remove(row)


class _OwnCacheRows:
    """Any other decoder: a cache per row, the rows stepped one after another."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.caches = []

    def add(self, prompt: list[int], room: int, adapter=None) -> tuple[torch.Tensor, int]:
        ids, cache, positions = start_batch(self.decoder, [prompt], room)
        logits = self.decoder.forward(ids, cache, positions)
        self.caches.append(cache)
        return logits, 0

    def step(self, tokens: torch.Tensor, adapters: list) -> tuple[torch.Tensor, dict]:
        return _each_alone(
            [
                lambda t=t, c=c: self.decoder.forward(t.view(1, 1), c)
                for t, c in zip(tokens, self.caches, strict=True)
            ],
            self.decoder.vocab_size,
            self.decoder.device,
        )

    def remove(self, row: int) -> None:
        last = self.caches.pop()
        if row < len(self.caches):
            self.caches[row] = last


def _each_alone(
    steps: list[Callable[[], torch.Tensor]], vocab: int, device=None
) -> tuple[torch.Tensor, dict]:
    """Run each row's step (a callable giving its logits (1, vocab)): the logits (n, vocab)
    and {row: error} for those that failed, whose logits are zeros."""
    out, failed = [], {}
    for i, step in enumerate(steps):
        try:
            out.append(step())
        except Exception as err:
            failed[i] = err
            out.append(torch.zeros(1, vocab, device=device))
    return torch.cat(out), failed


class Scheduler:
    """Runs many requests on one decoder with continuous batching, in a background thread.

    `max_batch`: rows decoded together; `max_queue`: requests that may wait for a row
    beyond the free ones (more raise QueueFullError); `context`: the longest prompt plus
    completion (default: the model's); `prompt_cache_mb`: memory for the keys and values of
    recent prompts, which later prompts with the same opening reuse (engine.prefix_cache;
    0: off); `prefill_tokens`: prompt tokens prefilled per
    iteration before the running rows take their next step (one prompt at least).
    """

    def __init__(
        self,
        decoder,
        tokenizer,
        eos_ids: frozenset[int] = frozenset(),
        max_batch: int = 16,
        max_queue: int = 64,
        context: int | None = None,
        prefill_tokens: int = 512,
        prompt_cache_mb: float = 64,
        on_token: Callable[[bool, float], None] | None = None,
    ):
        if max_batch < 1 or max_queue < 0 or prefill_tokens < 1 or prompt_cache_mb < 0:
            raise InvalidInputError(
                f"invalid max_batch={max_batch}, max_queue={max_queue} or "
                f"prefill_tokens={prefill_tokens} or prompt_cache_mb={prompt_cache_mb}",
                "max_batch and prefill_tokens must be >= 1, max_queue and prompt_cache_mb >= 0",
            )
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(eos_ids)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.context = min(context or decoder.max_positions, decoder.max_positions)
        self.prefill_tokens = prefill_tokens
        self.prompt_cache_bytes = int(prompt_cache_mb * 2**20)
        # called from the scheduler thread at each generated token: (first, seconds since
        # the request was submitted if first, else since its previous token)
        self.on_token = on_token
        self.cancelled = 0  # requests cancelled so far (for health and tests)
        self.cached_tokens = 0  # prompt tokens taken from the prompt cache so far (metrics)
        self._waiting: deque[Request] = deque()
        self._running: list[_Row] = []  # row i of the batch is _running[i]
        self._admitting = 0  # taken from the queue, not yet running
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._rows = None
        self.manual = False  # True: the owner calls `run()`, and `start()` does nothing
        self._texts: list[str] | None = None  # token texts, for JSON mode

    @classmethod
    def for_model(cls, model, **options) -> Scheduler:
        """A scheduler over a loaded `lmforge.Model` (its decoder, tokenizer and EOS ids)."""
        return cls(model.decoder, model.tokenizer, model.eos_ids, **options)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> Scheduler:
        """Run the loop in a thread of its own (a no-op once it runs, here or in `run`)."""
        if self._thread is None and not self.manual:
            self._thread = threading.Thread(target=self._run, name="lmforge-scheduler", daemon=True)
            self._thread.start()
        return self

    def run(self) -> None:
        """Run the loop in the calling thread until `close()` (from another thread).

        For the thread that loaded the model: torch's OpenMP team decodes at full speed only
        in the thread that first used it. Measured on 2 cores, int8 SmolLM2 at batch 1:
        110 tok/s there, 59 tok/s in a second thread (slower than one thread's 69).
        """
        if self._thread is not None:
            raise RuntimeError("the scheduler is already running")
        self._thread = threading.current_thread()
        self._run()

    def close(self) -> None:
        """Stop the loop; requests still waiting or running fail with SchedulerClosed."""
        with self._lock:
            self._closing = True
            self._wake.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and not self.manual:
            thread.join()  # the loop's own thread (with `run()` its owner returns by itself)
        self._fail_all(SchedulerClosed("the server is shutting down", "retry later"), waiting=True)

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> int:
        return len(self._running) + self._admitting

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # -- requests --------------------------------------------------------------------------
    def submit(self, prompt: list[int], params: SamplingParams | None = None) -> Request:
        """Queue one generation; returns its handle at once."""
        return self.submit_many([(prompt, params or SamplingParams())])[0]

    def submit_many(
        self,
        items: list[tuple[list[int], SamplingParams]],
        logprobs: int | None = None,
        echo: bool = False,
        generate: bool = True,
        adapter=None,
        json_mode: bool = False,
    ) -> list[Request]:
        """Queue several generations, all or none (QueueFullError when they do not fit).

        `logprobs=k` puts log-probabilities on every Delta (the chosen token's and the k
        most likely); `echo` sets each Request's `prompt_logprobs`; `generate=False` only
        scores the prompt (with echo) and ends with no token. `adapter`: a `LoraAdapter`
        (engine.lora) these requests run with; rows of different adapters share the batch.
        `json_mode`: each output is one JSON object (engine.json_mode).
        """
        if logprobs is not None and logprobs < 0:
            raise InvalidInputError(f"invalid logprobs={logprobs}", "use an integer >= 0")
        if adapter is not None and not isinstance(self.decoder, NativeDecoder):
            raise InvalidInputError(
                "per-request adapters need the native engine without a prefix adapter",
                "serve a Llama-family base model",
            )
        requests = []
        for prompt, params in items:
            if not prompt:
                raise InvalidInputError("empty prompt", "give at least one token of prompt text")
            if len(prompt) >= self.context:
                raise InvalidInputError(
                    f"prompt of {len(prompt)} tokens does not fit the context of {self.context}",
                    "shorten the prompt",
                )
            if min(prompt) < 0 or max(prompt) >= self.decoder.vocab_size:
                raise InvalidInputError(
                    "prompt has token ids outside the vocabulary",
                    f"use ids in 0..{self.decoder.vocab_size - 1}",
                )
            params.validate()
            room = self.context - len(prompt)
            requests.append(
                Request(
                    self, list(prompt), params, room, logprobs, echo, generate, adapter, json_mode
                )
            )
        return enqueue(
            self, requests, lambda: max(self.max_batch - len(self._running) - self._admitting, 0)
        )

    def _cancel(self, request: Request) -> None:
        with self._lock:
            if request in self._waiting:  # never ran: gone at once
                self._waiting.remove(request)
                self._finish_cancelled(request)
            self._wake.notify_all()

    def _finish_cancelled(self, request: Request) -> None:  # holding the lock
        self.cancelled += 1
        request._put(Delta(0, "", None, "cancelled"))

    # -- the scheduler thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            with torch.inference_mode():
                self._rows = self._new_rows()
                while True:
                    with self._lock:
                        while not (self._closing or self._waiting or self._running):
                            self._wake.wait()
                        if self._closing:
                            return
                        admitted = self._take_waiting()
                    try:
                        self._iteration(admitted)
                    except Exception as err:  # a failed step fails the batch, not the server
                        self._fail_all(err, admitted)
                        self._rows = self._new_rows()
        finally:  # if the thread dies, nobody waits for it in vain
            with self._lock:
                died, self._closing = not self._closing, True
            if died:
                self._fail_all(SchedulerClosed("the engine stopped", "restart it"), waiting=True)

    def _new_rows(self):
        decoder, prefix = self.decoder, None
        if isinstance(decoder, PrefixDecoder):
            decoder, prefix = decoder.inner, decoder.kv
        if isinstance(decoder, NativeDecoder):
            max_len = self.context + (self.decoder.prefix_len if prefix else 0)
            return _SlotRows(decoder, self.max_batch, max_len, prefix, self.prompt_cache_bytes)
        return _OwnCacheRows(self.decoder)

    def _take_waiting(self) -> list[Request]:
        """Requests to admit now: free rows, within the prefill budget (one at least)."""
        out, budget = [], self.prefill_tokens
        while self._waiting and len(self._running) + len(out) < self.max_batch:
            if out and len(self._waiting[0].prompt) > budget:
                break
            budget -= len(self._waiting[0].prompt)
            out.append(self._waiting.popleft())
        self._admitting = len(out)
        return out

    def _iteration(self, admitted: list[Request]) -> None:
        """Admit `admitted`, then one decode step for every running row.

        A failure that belongs to one request (its sampler, JSON mode, stop strings, the
        tokenizer on its tokens, its adapter, its prompt) fails that request alone; the
        other rows go on as if it had never run beside them.
        """
        self._drop_cancelled()
        for request in admitted:
            self._admit(request)
        if self._running:
            rows = self._running
            tokens = torch.tensor([r.next_token for r in rows], device=self.decoder.device)
            logits, failed = self._rows.step(
                tokens, [r.request.adapter for r in rows]
            )  # (n, vocab)
            sampled: list[int | BaseException] = []
            for i, row in enumerate(rows):
                if i in failed:
                    sampled.append(failed[i])
                    continue
                try:
                    sampled.append(int(row.sampler(logits[i : i + 1])[0]))
                except Exception as err:
                    sampled.append(err)
            self._advance(sampled, logits)
        self._drop_cancelled()

    def _admit(self, request: Request) -> None:
        """Prefill one admitted request into a new row and give it its first token; a
        failure (memory, its sampler, its adapter ...) fails this request alone."""
        try:
            if request.echo:
                request.prompt_logprobs = self._score_prompt(request)
            if request.max_new == 0:  # only the prompt was asked for
                with self._lock:
                    self._admitting -= 1
                request._put(Delta(0, "", None, "length"))
                return
            vocab, device = self.decoder.vocab_size, self.decoder.device
            sampler = Sampler(request.params, 1, vocab, device)
            sampler.observe(torch.tensor([request.prompt], device=device))
            if request.json_mode:
                sampler = JsonSampler(sampler, self._token_texts(vocab), self.eos_ids)
            text = RowText(self.tokenizer, request.params.stop, request.max_new, self.eos_ids)
            logits, request.cached_tokens = self._rows.add(
                request.prompt, request.max_new, request.adapter
            )
        except Exception as err:
            with self._lock:
                self._admitting -= 1
            request._put(err)
            return
        self.cached_tokens += request.cached_tokens
        with self._lock:
            self._running.append(_Row(request, sampler, text))
            self._admitting -= 1
        try:
            first: int | BaseException = int(sampler(logits)[0])
        except Exception as err:
            first = err
        self._advance([first], logits, start=len(self._running) - 1)

    def _token_texts(self, vocab: int) -> list[str]:
        """Every token's text, decoded once (JSON mode checks each pick against it)."""
        if self._texts is None:
            self._texts = token_texts(self.tokenizer, vocab)
        return self._texts

    def _score_prompt(self, request: Request) -> list[TokenLogprob | None]:
        """Log-probabilities of the prompt's own tokens, from one forward over it."""
        ids, cache, positions = start_batch(self.decoder, [request.prompt], 0)
        extra = {"adapters": [request.adapter]} if request.adapter is not None else {}
        logits = self.decoder.forward(ids, cache, positions, all_logits=True, **extra)[0]
        # position t predicts token t + 1; the first token has no prediction
        return [None, *token_logprobs(logits[:-1], ids[0, 1:], request.logprobs or 0)]

    def _advance(
        self, sampled: list[int | BaseException], logits: torch.Tensor, start: int = 0
    ) -> None:
        """Give rows start.. their sampled tokens, drawn from logits (n, vocab); finished
        rows leave the batch, and a row whose sampling failed (an exception in place of its
        token) or whose token cannot be taken (the tokenizer, its stop strings) fails alone."""
        picked = torch.tensor([t if isinstance(t, int) else 0 for t in sampled])  # (n,)
        wanted = [self._running[start + i].request.logprobs for i in range(len(sampled))]
        k = max((w for w in wanted if w is not None), default=None)
        scored = token_logprobs(logits, picked, k) if k is not None else None
        for i in reversed(range(start, start + len(sampled))):  # removal moves the last row
            row, tok = self._running[i], sampled[i - start]
            try:
                if isinstance(tok, BaseException):
                    raise tok
                delta = row.text.push(tok)
                if row.request.logprobs is not None and delta.token_id is not None:
                    delta.logprob, top = scored[i - start]
                    delta.top_logprobs = top[: row.request.logprobs]
                if not delta.finish_reason and row.sampler.seen is not None:
                    # only the repetition penalty reads what was seen
                    row.sampler.observe(torch.tensor([[tok]], device=self.decoder.device))
            except Exception as err:
                self._remove(i)
                row.request._put(err)
                continue
            row.request._put(delta)
            if delta.finish_reason:
                self._remove(i)
            else:
                row.next_token = tok

    def _drop_cancelled(self) -> None:
        for i in reversed(range(len(self._running))):
            request = self._running[i].request
            if request._cancel and not request.done:
                self._remove(i)
                with self._lock:
                    self._finish_cancelled(request)

    def _remove(self, i: int) -> None:
        self._rows.remove(i)
        with self._lock:
            last = self._running.pop()
            if i < len(self._running):
                self._running[i] = last

    def _fail_all(self, err: BaseException, admitted=(), waiting: bool = False) -> None:
        """Fail the running requests (and the waiting ones if `waiting`) with `err`."""
        with self._lock:
            requests = [r.request for r in self._running] + list(admitted)
            if waiting:
                requests += self._waiting
                self._waiting.clear()
            self._running.clear()
            self._admitting = 0
        for request in requests:
            if not request.done:
                request._put(err)
