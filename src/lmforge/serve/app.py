"""The OpenAI-compatible HTTP app: `create_app(model)` and `serve(model)`.

Routes turn a request into token-id prompts and `SamplingParams`, submit them to the
engine's `Scheduler` (continuous batching in its own thread) and answer with its deltas,
whole or streamed as server-sent events (`data: {...}` ... `data: [DONE]`). A client that
goes away has its requests cancelled, which frees their rows at the next token.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from lmforge.engine.scheduler import Request as Handle
from lmforge.engine.scheduler import Scheduler
from lmforge.errors import InvalidInputError
from lmforge.serve import errors
from lmforge.serve.config import ServeConfig
from lmforge.serve.errors import APIError
from lmforge.serve.schemas import ChatRequest, CompletionRequest

COMPLETIONS_MAX_TOKENS = 16  # the OpenAI default for /v1/completions; chat runs to the context
DRAIN_LIMIT = 16 << 20  # read (and drop) at most this much of a too-large body, then close


def create_app(model, config: ServeConfig | None = None) -> FastAPI:
    """An app serving `model` (a loaded `lmforge.Model`); its scheduler runs while the app does."""
    config = config or ServeConfig()
    name = config.model_name or model.name or "lmforge"
    scheduler = Scheduler.for_model(
        model, max_batch=config.max_batch, max_queue=config.max_queue, context=config.context
    )
    created = int(time.time())

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
    errors.install(app)

    def model_card() -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "lmforge"}

    def check_model(requested: str | None) -> None:
        if requested is not None and requested != name:
            raise APIError(
                404,
                f"model {requested!r} is not served here; this server serves {name!r}",
                param="model",
                code="model_not_found",
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

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict:
        check_model(model_id)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = ChatRequest.model_validate(await read_json(request, config.max_body_bytes))
        check_model(body.model)
        prompt = model.chat_prompt([m.plain() for m in body.messages])
        max_tokens = body.max_completion_tokens or body.max_tokens
        job = _Job(scheduler, body, [prompt], max_tokens, None, "messages")
        return await job.respond(request, name, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = CompletionRequest.model_validate(await read_json(request, config.max_body_bytes))
        check_model(body.model)
        if body.best_of not in (None, body.n):
            raise APIError(400, "best_of other than n is not supported", param="best_of")
        prompts = [p if isinstance(p, list) else model.encode(p) for p in _prompt_list(body.prompt)]
        job = _Job(scheduler, body, prompts, body.max_tokens, COMPLETIONS_MAX_TOKENS, "prompt")
        return await job.respond(request, name, chat=False)

    return app


def serve(model, config: ServeConfig | None = None) -> None:
    """Serve `model` over HTTP until interrupted (uvicorn, one process)."""
    import uvicorn

    config = config or ServeConfig()
    app = create_app(model, config)
    print(f"lmforge serving {model.name!r} on http://{config.host}:{config.port}/v1", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")


async def read_json(request: Request, limit: int) -> dict:
    """The body as a JSON object: 413 beyond `limit` bytes, 400 if it is not JSON."""
    size, chunks = 0, []
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    async for chunk in request.stream():
        size += len(chunk)
        too_large = too_large or size > limit
        if too_large:  # drain it, so that the client reads our answer rather than a reset
            if size > DRAIN_LIMIT:
                break
            continue
        chunks.append(chunk)
    if too_large:
        raise APIError(413, f"request body larger than {limit} bytes", code="body_too_large")
    try:
        data = json.loads(b"".join(chunks))
    except ValueError as e:  # UnicodeDecodeError is a ValueError
        raise APIError(400, f"request body is not valid JSON ({e})", code="invalid_json") from e
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return data


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
    ):
        """`max_tokens` as asked (more than fits the context is a 400); if not asked,
        `default_max_tokens` or, if None, the room left in the context."""
        if body.unsupported():
            raise APIError(400, f"{body.unsupported()} is not supported", body.unsupported())
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

        def most(prompt: list[int]) -> int:
            room = context - len(prompt)
            return max_tokens or min(default_max_tokens or room, room)

        self.items = [
            (p, body.sampling(most(p), choice)) for p in prompts for choice in range(body.n)
        ]
        try:
            self.handles: list[Handle] = scheduler.submit_many(self.items)
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
        }

    async def respond(self, request: Request, name: str, chat: bool):
        head = {
            "id": ("chatcmpl-" if chat else "cmpl-") + self.id,
            "created": self.created,
            "model": name,
        }
        if self.body.stream:
            return _EventStream(self._events(request, head, chat), self.handles)
        texts = [[] for _ in self.handles]
        async for i, delta in _merged(self.handles, request):
            texts[i].append(delta.text)
        choices = []
        for i, handle in enumerate(self.handles):
            text, reason = "".join(texts[i]), handle.finish_reason
            if chat:
                message = {"role": "assistant", "content": text}
                choices.append(
                    {"index": i, "message": message, "logprobs": None, "finish_reason": reason}
                )
            else:
                choices.append(
                    {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
                )
        kind = "chat.completion" if chat else "text_completion"
        return JSONResponse({**head, "object": kind, "choices": choices, "usage": self.usage()})

    async def _events(self, request: Request, head: dict, chat: bool) -> AsyncIterator[str]:
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list, **extra) -> str:
            return f"data: {json.dumps({**head, 'object': kind, 'choices': choices, **extra})}\n\n"

        def choice(i: int, text: str | None, reason: str | None = None) -> dict:
            if chat:
                delta = {} if text is None else {"content": text}
                return {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {"index": i, "text": text or "", "logprobs": None, "finish_reason": reason}

        try:
            if chat:
                for i in range(len(self.handles)):
                    opening = {"role": "assistant", "content": ""}
                    yield event(
                        [{"index": i, "delta": opening, "logprobs": None, "finish_reason": None}]
                    )
            async for i, delta in _merged(self.handles, request):
                if delta.text:
                    yield event([choice(i, delta.text)])
                if delta.finish_reason in ("stop", "length"):
                    yield event([choice(i, None, delta.finish_reason)])
            options = self.body.stream_options
            if options is not None and options.include_usage:
                yield event([], usage=self.usage())
        except Exception as err:  # headers are sent: report it in the stream, as OpenAI does
            yield f"data: {json.dumps({'error': errors.from_exception(err).body()})}\n\n"
        yield "data: [DONE]\n\n"


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
