"""The OpenAI-compatible HTTP app: `create_app(model)` and `serve(model)`.

Routes turn a request into token-id prompts and `SamplingParams`, submit them to the
engine's `Scheduler` (continuous batching in its own thread) and answer with its deltas,
whole or streamed as server-sent events (`data: {...}` ... `data: [DONE]`). A client that
goes away has its requests cancelled, which frees their rows at the next token.

Log-probabilities come from the scheduler (on each Delta, and `Request.prompt_logprobs` for
`echo`): those of the model's raw distribution, before the repetition penalty, temperature,
top-k and top-p. Chat answers them as `choices[].logprobs.content[]` ({token, logprob,
bytes, top_logprobs}); completions in the legacy shape ({tokens, token_logprobs,
top_logprobs, text_offset}), where each `top_logprobs` entry also holds the chosen token, a
prompt's first token has null entries, and `text_offset` counts characters of the choice's
token strings from its start (the echoed prompt included).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from lmforge.engine.scheduler import Request as Handle
from lmforge.engine.scheduler import Scheduler
from lmforge.errors import InvalidInputError
from lmforge.serve import adapters as lora_routes
from lmforge.serve import (
    auth,
    embeddings,
    errors,
    explaining,
    guarding,
    images,
    openapi,
    webchat,
)
from lmforge.serve.bodies import read_json
from lmforge.serve.config import ServeConfig
from lmforge.serve.errors import APIError
from lmforge.serve.metrics import CONTENT_TYPE, CountRequests, Metrics
from lmforge.serve.schemas import HINTS, ChatRequest, CompletionRequest

COMPLETIONS_MAX_TOKENS = 16  # the OpenAI default for /v1/completions; chat runs to the context


def create_app(model, config: ServeConfig | None = None, adapters: Sequence[str] = ()) -> FastAPI:
    """An app serving `model` (a loaded `lmforge.Model`); its scheduler runs while the app does.

    `adapters`: LoRA adapter artifacts of the model, loaded now; a request picks one as
    `model: "NAME:ADAPTER"`, and `/admin/adapters` loads and unloads them at run time.
    """
    config = config or ServeConfig()
    sees = getattr(model, "can_see", False)  # a vision-language model: one request at a time
    if sees and adapters:
        raise InvalidInputError(
            "a vision-language model is served without per-request adapters",
            "merge the adapter (lmforge merge ADAPTER --out NAME) and serve that",
        )
    name = config.model_name or model.name or "lmforge"
    loras = lora_routes.Adapters(model, model.artifact.name if model.artifact else model.name)
    for adapter in adapters:
        loras.load(adapter)
    guard = None
    if config.guard != "off":
        from lmforge.guard import Guard

        guard = Guard(config.guard)
    metrics = Metrics(
        waiting=lambda: scheduler.waiting,
        running=lambda: scheduler.running,
        cached=lambda: scheduler.cached_tokens,
        guard=guard,
    )
    if sees:
        from lmforge.vision.scheduler import VisionScheduler

        scheduler = VisionScheduler(
            model, max_queue=config.max_queue, context=config.context, on_token=metrics.on_token
        )
    else:
        scheduler = Scheduler.for_model(
            model,
            max_batch=config.max_batch,
            max_queue=config.max_queue,
            context=config.context,
            prompt_cache_mb=config.prompt_cache_mb,
            on_token=metrics.on_token,
        )
    created = int(time.time())

    @lru_cache(maxsize=1 << 16)
    def token_text(token_id: int) -> str:
        return model.tokenizer.decode([token_id])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler.start()
        try:
            yield
        finally:
            scheduler.close()

    app = FastAPI(title="lmforge", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.scheduler = scheduler
    app.state.config = config
    app.state.metrics = metrics
    app.state.guard = guard
    errors.install(app)
    webchat.install(app)  # the web chat at / with its /ui/ routes and feedback store
    auth.install(app, config)  # body limit, API keys and rate, CORS
    app.add_middleware(CountRequests, metrics=metrics)
    embeddings.install(app, config, read_json)  # POST /v1/embeddings, if config.embeddings
    app.state.adapters = loras
    lora_routes.install(app, loras, lambda request: read_json(request, config.max_body_bytes))

    def model_card(model_id: str = name) -> dict:
        return {"id": model_id, "object": "model", "created": created, "owned_by": "lmforge"}

    def check_model(requested: str | None):
        """The LoraAdapter that `requested` ("NAME" or "NAME:ADAPTER") names, or None."""
        if requested is None or requested == name:
            return None
        served, _, adapter = requested.partition(":")
        loaded = loras.get(adapter) if served == name and adapter else None
        if loaded is None:
            raise APIError(
                404,
                f"model {requested!r} is not served here; GET /v1/models lists those served",
                param="model",
                code="model_not_found",
            )
        return loaded

    def default_max_tokens(asked: int | None, default: int | None) -> int | None:
        """`default` under the server's max_tokens cap; 400 if `asked` passes the cap."""
        cap = config.max_tokens_limit
        if cap is not None and asked is not None and asked > cap:
            raise APIError(
                400, f"max_tokens={asked} is more than this server allows ({cap})", "max_tokens"
            )
        return default if cap is None else min(default or cap, cap)

    explaining.install(
        app, model, lambda request: read_json(request, config.max_body_bytes), check_model
    )

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": name,
            "running": scheduler.running,
            "waiting": scheduler.waiting,
            "max_batch": scheduler.max_batch,
            "max_queue": scheduler.max_queue,
        }

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models() -> dict:
        extra = [embeddings.card(created)] if config.embeddings else []
        loaded = [model_card(f"{name}:{a}") for a in loras.names()]
        return {"object": "list", "data": [model_card(), *loaded, *extra]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict:
        if config.embeddings and model_id == embeddings.MODEL_ID:
            return embeddings.card(created)
        check_model(model_id)
        return model_card(model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = ChatRequest.model_validate(await read_json(request, config.max_body_bytes))
        adapter = check_model(body.model)
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", "top_logprobs")
        max_tokens = body.max_completion_tokens or body.max_tokens
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        guarding.refuse_logprobs(guard, logprobs)
        if sees:  # the processor places the images; the guard reads the text
            checked = await guarding.check_messages(guard, [m.plain() for m in body.messages])
            prompt = await images.vision_prompt(model, body.messages, checked)
        else:
            plain = await images.chat_messages(model, body.messages, config.image_ocr)
            messages = await guarding.check_messages(guard, plain)
            prompt = model.chat_prompt(messages)
        default = default_max_tokens(max_tokens, None)
        job = _Job(
            scheduler,
            body,
            [prompt],
            max_tokens,
            default,
            "messages",
            logprobs,
            adapter=adapter,
            guard=guard,
        )
        return await job.respond(request, body.model or name, token_text, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = CompletionRequest.model_validate(await read_json(request, config.max_body_bytes))
        adapter = check_model(body.model)
        if body.best_of not in (None, body.n):
            raise APIError(400, "best_of other than n is not supported", param="best_of")
        given = _prompt_list(body.prompt)
        guarding.refuse_logprobs(guard, body.logprobs, body.echo)
        if guard is not None and guard.policy.active:  # check the text, ids decoded
            for i, p in enumerate(given):
                text = p if isinstance(p, str) else model.tokenizer.decode(p)
                checked = await guarding.check_prompt(guard, text, "prompt")
                if checked != text:
                    given[i] = checked
        prompts = [p if isinstance(p, list) else model.encode(p) for p in given]
        if sees:
            prompts = [images.text_prompt(p) for p in prompts]
        job = _Job(
            scheduler,
            body,
            prompts,
            body.max_tokens,
            default_max_tokens(body.max_tokens, COMPLETIONS_MAX_TOKENS),
            "prompt",
            body.logprobs,
            echo=[p if isinstance(p, str) else model.tokenizer.decode(p) for p in given]
            if body.echo
            else None,
            adapter=adapter,
            guard=guard,
        )
        return await job.respond(request, body.model or name, token_text, chat=False)

    openapi.install(
        app,
        {
            ("POST", "/v1/chat/completions"): ChatRequest,
            ("POST", "/v1/completions"): CompletionRequest,
            ("POST", "/v1/embeddings"): embeddings.EmbeddingRequest,
            ("POST", "/v1/explain"): explaining.ExplainRequest,
            ("POST", "/admin/adapters"): lora_routes.AdapterLoad,
        },
    )
    return app


def serve(model, config: ServeConfig | None = None, adapters: Sequence[str] = ()) -> None:
    """Serve `model` (and its LoRA `adapters`) over HTTP until interrupted (uvicorn)."""
    import uvicorn

    config = config or ServeConfig()
    app = create_app(model, config, adapters)
    auth.warn_if_open(config)
    if app.state.guard is not None:  # every guard decision goes to the log, as uvicorn's do
        log = logging.getLogger("lmforge.guard")
        log.setLevel(logging.INFO)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        print(f"guard: {config.guard}", flush=True)
    if getattr(getattr(model, "decoder", None), "compiled", False):  # now, not in a request
        print("compiling the decode steps (2-3 minutes the first time) ...", flush=True)
        try:
            model.decoder.warm_up()
        except Exception as e:  # no C++ compiler, say: serve what runs
            model.decoder.compile_failed(e)
    print(f"lmforge serving {model.name!r} on http://{config.host}:{config.port}/v1", flush=True)
    # The engine loop runs here, in the thread that loaded the model (see Scheduler.run: a
    # second thread decodes at half speed); uvicorn serves from a thread of its own.
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="info")
    )
    http = threading.Thread(target=server.run, name="lmforge-http", daemon=True)
    scheduler = app.state.scheduler
    scheduler.manual = True  # the app's lifespan must not start a loop of its own
    http.start()
    try:
        scheduler.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        http.join(timeout=10)


def _prompt_list(prompt) -> list:
    """A completions `prompt` as a list of prompts (text or token ids)."""
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        return [prompt]
    return prompt


class _Job:
    """One API request: its prompts times n, submitted to the scheduler, answered."""

    def __init__(
        self,
        scheduler: Scheduler,
        body,
        prompts: list[list[int]],
        max_tokens: int | None,
        default_max_tokens: int | None,
        what: str,
        logprobs: int | None = None,
        echo: list[str] | None = None,
        adapter=None,
        guard=None,
    ):
        """`max_tokens` as asked (more than fits the context is a 400; 0 generates nothing);
        if not asked, `default_max_tokens` or, if None, the room left in the context.
        `logprobs`: None, or how many alternatives to give with each token's logprob;
        `echo`: the prompts' texts, to open each choice with its prompt (and its logprobs)."""
        field = body.unsupported()
        if field:
            raise APIError(
                400, f"{field} is not supported: {HINTS.get(field, '')}".rstrip(": "), field
            )
        if not prompts or not all(prompts):
            raise APIError(400, f"{what} must not be empty", what)
        context = scheduler.context
        longest = max(len(p) for p in prompts)
        if longest >= context:
            raise APIError(
                400,
                f"this model's context is {context} tokens; the {what} take {longest}",
                what,
                "context_length_exceeded",
            )
        if max_tokens is not None and longest + max_tokens > context:
            raise APIError(
                400,
                f"this model's context is {context} tokens; {longest} in the {what} plus "
                f"max_tokens={max_tokens} exceed it",
                "max_tokens",
                "context_length_exceeded",
            )
        if len(prompts) * body.n > scheduler.max_batch + scheduler.max_queue:
            raise APIError(400, f"n={body.n} is more than this server takes at once", "n")
        self.body, self.prompts = body, prompts
        self.logprobs, self.echo = logprobs, echo
        self.guard = guard  # a Guard whose output checks each answer, or None

        def most(prompt: list[int]) -> int:
            room = context - len(prompt)
            return max_tokens if max_tokens is not None else min(default_max_tokens or room, room)

        generate = max_tokens != 0
        self.items = [
            (p, body.sampling(max(most(p), 1), choice)) for p in prompts for choice in range(body.n)
        ]
        try:
            self.handles: list[Handle] = scheduler.submit_many(
                self.items,
                logprobs=logprobs,
                echo=echo is not None,
                generate=generate,
                adapter=adapter,  # a LoraAdapter, or None: the base
                json_mode=getattr(body, "response_format", None) == {"type": "json_object"},
            )
        except InvalidInputError as e:  # e.g. token ids outside the vocabulary
            raise APIError(400, str(e), what) from e
        self.id = uuid.uuid4().hex
        self.created = int(time.time())

    def usage(self) -> dict:
        prompt = sum(len(p) for p in self.prompts)
        completion = sum(h.completion_tokens for h in self.handles)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(h.cached_tokens for h in self.handles)},
        }

    async def respond(self, request: Request, name: str, token_text, chat: bool):
        head = {
            "id": ("chatcmpl-" if chat else "cmpl-") + self.id,
            "created": self.created,
            "model": name,
        }
        if self.body.stream:
            return _EventStream(self._events(request, head, token_text, chat), self.handles)
        texts = [[] for _ in self.handles]
        logs = [_Logprobs(token_text, chat) for _ in self.handles]
        echoed: set[int] = set()
        for i in range(len(self.handles)):
            if self.echo is not None:
                texts[i].append(self.echo[i // self.body.n])
        async for i, delta in _merged(self.handles, request):
            if self.echo is not None and i not in echoed:  # its first delta
                echoed.add(i)
                logs[i].add_prompt(self.handles[i])
            texts[i].append(delta.text)
            logs[i].add(delta)
        choices = []
        for i, handle in enumerate(self.handles):
            answer = guarding.AnswerGuard(self.guard)
            text = answer.feed("".join(texts[i]))
            tail, reason = answer.finish(handle.finish_reason)
            text = "" if reason == "content_filter" else text + tail
            logprobs = logs[i].take() if self.logprobs is not None else None
            if chat:
                message = {"role": "assistant", "content": text}
                choices.append(
                    {"index": i, "message": message, "logprobs": logprobs, "finish_reason": reason}
                )
            else:
                choices.append(
                    {"index": i, "text": text, "logprobs": logprobs, "finish_reason": reason}
                )
        kind = "chat.completion" if chat else "text_completion"
        return JSONResponse({**head, "object": kind, "choices": choices, "usage": self.usage()})

    async def _events(
        self, request: Request, head: dict, token_text, chat: bool
    ) -> AsyncIterator[str]:
        kind = "chat.completion.chunk" if chat else "text_completion"
        logs = [_Logprobs(token_text, chat) for _ in self.handles]
        answers = [guarding.AnswerGuard(self.guard) for _ in self.handles]
        echoed: set[int] = set()

        def event(choices: list, **extra) -> str:
            return f"data: {json.dumps({**head, 'object': kind, 'choices': choices, **extra})}\n\n"

        def choice(i: int, text: str | None, reason: str | None = None) -> dict:
            logprobs = logs[i].take() if self.logprobs is not None and text is not None else None
            if chat:
                delta = {} if text is None else {"content": text}
                return {"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
            return {"index": i, "text": text or "", "logprobs": logprobs, "finish_reason": reason}

        try:
            if chat:
                for i in range(len(self.handles)):
                    opening = {"role": "assistant", "content": ""}
                    yield event(
                        [{"index": i, "delta": opening, "logprobs": None, "finish_reason": None}]
                    )
            async for i, delta in _merged(self.handles, request):
                if self.echo is not None and i not in echoed:  # its first delta
                    echoed.add(i)
                    logs[i].add_prompt(self.handles[i])
                    yield event([choice(i, self.echo[i // self.body.n])])
                logs[i].add(delta)
                answer = answers[i]
                if answer.blocked:  # the guard stopped this answer: its row is freed below
                    continue
                text = answer.feed(delta.text)
                if text or delta.logprob is not None:
                    yield event([choice(i, text)])
                finish = delta.finish_reason  # (the Delta is the scheduler's: never changed)
                if answer.blocked:
                    self.handles[i].cancel()
                    finish = "content_filter"
                if finish in ("stop", "length", "content_filter"):
                    tail, reason = answer.finish(finish)
                    if tail:
                        yield event([choice(i, tail)])
                    yield event([choice(i, None, reason)])
            options = self.body.stream_options
            if options is not None and options.include_usage:
                yield event([], usage=self.usage())
        except Exception as err:  # headers are sent: report it in the stream, as OpenAI does
            yield f"data: {json.dumps({'error': errors.from_exception(err).body()})}\n\n"
        yield "data: [DONE]\n\n"


class _Logprobs:
    """One choice's log-probabilities as the API shows them, gathered until `take()`:
    chat's `{"content": [...]}`, or the legacy completions lists."""

    def __init__(self, token_text: Callable[[int], str], chat: bool):
        self.text, self.chat = token_text, chat
        self.offset = 0  # legacy text_offset: characters of token strings so far
        self.entries: list[tuple[int, tuple | None]] = []  # (token id, (logprob, top) | None)

    def add(self, delta) -> None:
        if delta.token_id is not None and delta.logprob is not None:
            self.entries.append((delta.token_id, (delta.logprob, delta.top_logprobs or [])))

    def add_prompt(self, handle: Handle) -> None:
        self.entries += zip(handle.prompt, handle.prompt_logprobs, strict=True)

    def take(self) -> dict:
        entries, self.entries = self.entries, []
        if self.chat:  # a chat answer has no prompt entries, so every entry has a logprob
            return {
                "content": [
                    {**self._token(tok, lp), "top_logprobs": [self._token(t, v) for t, v in top]}
                    for tok, (lp, top) in entries
                ],
                "refusal": None,
            }
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for tok, scored in entries:
            text = self.text(tok)
            out["tokens"].append(text)
            out["text_offset"].append(self.offset)
            self.offset += len(text)
            lp, top = scored if scored is not None else (None, None)
            out["token_logprobs"].append(lp)
            # as OpenAI: the k most likely and the chosen token (so up to k + 1 entries);
            # tokens with the same text (byte pieces shown as U+FFFD) keep the likeliest
            alts = None
            if top is not None:
                alts = {}
                for t, v in [*top, (tok, lp)]:
                    alts.setdefault(self.text(t), v)
            out["top_logprobs"].append(alts)
        return out

    def _token(self, tok: int, logprob: float) -> dict:
        text = self.text(tok)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}


async def _merged(handles: list[Handle], request: Request) -> AsyncIterator[tuple[int, object]]:
    """(index, Delta) from every handle as they come; cancels them all if the client leaves
    (or if the caller stops reading)."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, handle: Handle) -> None:
        try:
            async for delta in handle:
                queue.put_nowait((i, delta))
        except Exception as err:
            queue.put_nowait((i, err))
        queue.put_nowait((i, None))

    async def watch() -> None:  # the ASGI server says http.disconnect when the client is gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        for handle in handles:
            handle.cancel()

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
    watcher = asyncio.create_task(watch())
    try:
        left = len(handles)
        while left:
            i, item = await queue.get()
            if item is None:
                left -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        watcher.cancel()
        for task in tasks:
            task.cancel()
        for handle in handles:
            handle.cancel()


class _EventStream(StreamingResponse):
    """Server-sent events that cancel their requests whenever the response ends: a dropped
    connection frees its rows at once, not when the generator is garbage collected (nor
    never, if it never started)."""

    def __init__(self, events: AsyncIterator[str], handles: list[Handle]):
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.handles = handles

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self.body_iterator.aclose()
            for handle in self.handles:
                handle.cancel()
