"""Serving a vision-language model: the scheduler's requests, answered one at a time.

`lmforge serve` puts every request through a scheduler (`engine.scheduler`). For a
`VisionModel` that is `VisionScheduler`: the same `Request` handles, bounded queue, sampling
and finish rules, but each request runs alone through `transformers`' `generate`, which
knows how each architecture feeds its image features and positions (LLaVA, Idefics3,
Qwen2-VL's multimodal rotary positions ...). lmforge's own pieces choose the tokens: a
logits processor hands the raw logits to the one `Sampler` (seed, temperature, top-k/p,
repetition penalty; JSON mode through `JsonSampler`) and lets `generate` keep only its
pick; a streamer turns each pick into the request's `Delta` through `RowText` (EOS, stop
strings, max_tokens); a stopping criterion ends `generate` when the row finished or its
client left.

A prompt is a `VisionPrompt`: the processor's input ids (what the context and the usage
count) with the processor's tensors (pixel values ...) attached.
"""

from __future__ import annotations

import threading
from collections import deque

import torch

from lmforge.engine.generate import Delta, RowText
from lmforge.engine.json_mode import JsonSampler, token_texts
from lmforge.engine.params import SamplingParams
from lmforge.engine.sampling import Sampler
from lmforge.engine.scheduler import Request, SchedulerClosed, enqueue, token_logprobs
from lmforge.errors import InvalidInputError


class VisionPrompt(list):
    """A prompt's token ids (a list, as the scheduler counts them) and the processor's
    tensors for `generate` (`inputs`: input_ids, attention_mask, pixel_values ...)."""

    def __init__(self, ids: list[int], inputs: dict):
        super().__init__(ids)
        self.inputs = inputs


class VisionScheduler:
    """Requests for a `VisionModel`, run one after another in one thread."""

    max_batch = 1  # one row: `generate` runs one conversation at a time here

    def __init__(self, model, max_queue: int = 64, context: int | None = None, on_token=None):
        if max_queue < 0:
            raise InvalidInputError(f"invalid max_queue={max_queue}", "use max_queue >= 0")
        self.model = model
        longest = model.context
        self.context = min(context or longest, longest)
        self.max_queue = max_queue
        self.eos_ids = model.eos_ids
        self.on_token = on_token  # (first, seconds) at each token, as engine.scheduler's
        self.cancelled = 0
        self.cached_tokens = 0  # no prompt cache here (the metrics read it)
        self.manual = False
        self._waiting: deque[Request] = deque()
        self._current: Request | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._texts: list[str] | None = None

    @property
    def running(self) -> int:
        return int(self._current is not None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # -- life cycle (as engine.scheduler.Scheduler) ----------------------------------------
    def start(self) -> VisionScheduler:
        if self._thread is None and not self.manual:
            self._thread = threading.Thread(target=self.run, name="lmforge-vlm", daemon=True)
            self._thread.start()
        return self

    def run(self) -> None:
        """Answer requests in the calling thread until `close()`."""
        self._thread = self._thread or threading.current_thread()
        while True:
            with self._lock:
                while not (self._closing or self._waiting):
                    self._wake.wait()
                if self._closing:
                    return
                self._current = request = self._waiting.popleft()
            try:
                self._answer(request)
            except Exception as err:  # this request failed; the server goes on
                if not request.done:
                    request._put(err)
            finally:
                with self._lock:
                    self._current = None

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake.notify_all()
            left = list(self._waiting) + ([self._current] if self._current else [])
            self._waiting.clear()
        for request in left:
            request._cancel = True  # the one running stops at its next token
            if not request.done:
                request._put(SchedulerClosed("the server is shutting down", "retry later"))
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and not self.manual:
            thread.join(timeout=30)

    # -- requests --------------------------------------------------------------------------
    def submit_many(
        self,
        items: list[tuple[VisionPrompt, SamplingParams]],
        logprobs: int | None = None,
        echo: bool = False,
        generate: bool = True,
        adapter=None,
        json_mode: bool = False,
    ) -> list[Request]:
        """Queue generations, all or none, as `Scheduler.submit_many` (no echo, no adapter)."""
        if echo or adapter is not None:
            raise InvalidInputError(
                "a vision-language model is served for chat only (no echo, no adapters)",
                "send a plain chat request",
            )
        if logprobs is not None and logprobs < 0:
            raise InvalidInputError(f"invalid logprobs={logprobs}", "use an integer >= 0")
        requests = []
        for prompt, params in items:
            if len(prompt) >= self.context:
                raise InvalidInputError(
                    f"prompt of {len(prompt)} tokens does not fit the context of {self.context}",
                    "shorten the prompt, or send a smaller image",
                )
            params.validate()
            room = self.context - len(prompt)
            requests.append(
                Request(self, prompt, params, room, logprobs, False, generate, None, json_mode)
            )
        return enqueue(self, requests, lambda: 1 - self.running)

    def _cancel(self, request: Request) -> None:
        with self._lock:
            if request in self._waiting:  # never ran: gone at once
                self._waiting.remove(request)
                self.cancelled += 1
                request._put(Delta(0, "", None, "cancelled"))
        # the running one sees request._cancel at its next token (_Stop)

    # -- the answering thread ----------------------------------------------------------------
    def _answer(self, request: Request) -> None:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        if request._cancel:
            self.cancelled += 1
            request._put(Delta(0, "", None, "cancelled"))
            return
        if request.max_new == 0:
            request._put(Delta(0, "", None, "length"))
            return
        hf, tokenizer = self.model.hf_model, self.model.tokenizer
        inputs = request.prompt.inputs
        vocab = hf.get_output_embeddings().weight.shape[0]
        sampler = Sampler(request.params, 1, vocab, torch.device("cpu"))
        sampler.observe(inputs["input_ids"])
        if request.json_mode:
            if self._texts is None:
                self._texts = token_texts(tokenizer, vocab)
            sampler = JsonSampler(sampler, self._texts, self.eos_ids)
        row = _Row(request, sampler, RowText(tokenizer, request.params.stop, request.max_new,
                                             self.eos_ids))  # fmt: skip
        eos = sorted(self.eos_ids)
        config = GenerationConfig(
            max_new_tokens=request.max_new,
            do_sample=False,  # the logits processor has already picked: keep its one token
            eos_token_id=eos or None,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        )
        with torch.inference_mode():
            hf.generate(
                **inputs,
                generation_config=config,
                logits_processor=LogitsProcessorList([row.pick]),
                stopping_criteria=StoppingCriteriaList([row.stop]),
                streamer=row,
            )
        if not request.done:  # cancelled, or generate stopped before RowText said so
            if request._cancel:
                self.cancelled += 1
                request._put(Delta(0, "", None, "cancelled"))
            else:
                request._put(Delta(0, "", None, "length"))


class _Row:
    """One request inside `generate`: its logits processor, streamer and stopping rule."""

    def __init__(self, request: Request, sampler, text: RowText):
        self.request, self.sampler, self.text = request, sampler, text
        self.prompt_seen = False  # a streamer's first `put` is the prompt
        self.scored = None  # (logprob, top) of the last pick, if logprobs were asked
        self.finished = False

    def pick(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Logits processor: sample with lmforge's Sampler; only that token stays finite."""
        logits = scores.float()  # (1, vocab), the model's raw next-token logits
        token = self.sampler(logits)  # (1,)
        k = self.request.logprobs
        if k is not None:
            lp, top = token_logprobs(logits, token, k)[0]
            self.scored = (lp, top[:k])
        only = torch.full_like(scores, float("-inf"))
        only[0, int(token)] = 0.0
        return only

    def put(self, value: torch.Tensor) -> None:
        """Streamer: `generate` hands over the prompt first, then each new token."""
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        if self.finished:
            return
        tok = int(value.reshape(-1)[0])
        delta = self.text.push(tok)
        if self.scored is not None and delta.token_id is not None:
            delta.logprob, delta.top_logprobs = self.scored
        if self.sampler.seen is not None:
            self.sampler.observe(torch.tensor([[tok]]))
        self.request._put(delta)
        self.finished = delta.finish_reason is not None

    def end(self) -> None:
        pass

    def stop(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        """Stopping criterion: the row finished (EOS, stop string, max_tokens) or was cancelled."""
        done = self.finished or self.request._cancel
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool)
