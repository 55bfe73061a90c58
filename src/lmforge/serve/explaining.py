"""`POST /v1/explain`: which input tokens drove an answer (lmforge.explain), over the API.

    {"model": "NAME", "messages": [...] | "prompt": "...", "target": "...",
     "method": "input_x_gradient", "contrast": "...", "format": "json" | "html"}

`messages` go through the model's chat template (with the `user`'s profile, as a chat
request), so the web chat's "Explain" shows the prompt the model really read. Without a
target the model's greedy answer is explained. The answer is `lmforge explain`'s JSON, plus
the self-contained page under `html` when `format` is "html". It runs on the base model
(gradients need the float weights), one request at a time, off the event loop.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from lmforge.errors import InvalidInputError
from lmforge.serve import guarding
from lmforge.serve.errors import APIError
from lmforge.serve.schemas import Message


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = None
    target: str | None = None
    contrast: str | None = None
    method: str = "input_x_gradient"
    max_new_tokens: Annotated[int, Field(ge=1, le=256)] = 16  # one request holds the model
    steps: Annotated[int, Field(ge=2, le=1024)] = 32
    format: Literal["json", "html"] = "json"
    user: str | None = None


def install(app: FastAPI, model, read_json, check_model) -> None:
    """Add the route; `read_json(request)` reads a body, `check_model(name)` 404s others."""
    lock = threading.Lock()  # explain switches the model to eager attention while it runs

    def run(config):
        from lmforge.explain import explain

        with lock:
            return explain(model, config=config)

    @app.post("/v1/explain")
    async def explain_route(request: Request) -> dict:
        body = ExplainRequest.model_validate(await read_json(request))
        if getattr(model, "can_see", False):
            raise APIError(
                400,
                "explain runs on text-only models; this one is a vision-language model",
                "model",
                "unsupported",
            )
        if check_model(body.model) is not None:
            raise APIError(
                400, "explain runs on the base model, not on an adapter", "model", "unsupported"
            )
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "give either prompt or messages", "prompt")
        guard = app.state.guard
        if body.target is None and guarding.output_checked(guard):
            raise APIError(  # the greedy answer would reach the client unchecked
                400, "explain needs a target while the server checks answers (--guard)", "target"
            )
        if body.messages is not None:
            messages = await guarding.check_messages(guard, [m.plain() for m in body.messages])
            try:
                prompt = model.tokenizer.decode(model.chat_prompt(messages))
            except InvalidInputError as e:
                raise APIError(400, str(e), "messages") from e
        else:
            prompt = await guarding.check_prompt(guard, body.prompt, "prompt")
        from lmforge.explain import ExplainConfig, render_html

        options = body.model_dump(
            include={"target", "contrast", "method", "max_new_tokens", "steps"}
        )
        try:
            config = ExplainConfig.from_dict({"prompt": prompt, **options})
            explanation = await run_in_threadpool(run, config)
        except InvalidInputError as e:
            raise APIError(400, str(e), "prompt") from e
        out: dict[str, Any] = explanation.to_json()
        if body.format == "html":
            out["html"] = render_html(explanation)
        return out
