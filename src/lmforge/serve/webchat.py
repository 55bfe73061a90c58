"""The web chat: the page at `/`, its JSON routes under `/ui/`, and the profile in the prompt.

The page (templates/chat.html, plain JS, nothing fetched from elsewhere) streams answers
from `/v1/chat/completions` like any client and keeps conversations, feedback and the
user's profile through the `/ui/` routes, which read and write a `FeedbackStore`:

    GET    /ui/conversations?user=U          the user's conversations, latest first
    POST   /ui/conversations                 {user, system, model, title} -> a new one
    GET    /ui/conversations/{id}            with its messages and their feedback
    PATCH  /ui/conversations/{id}            {system?, title?}
    DELETE /ui/conversations/{id}
    POST   /ui/conversations/{id}/messages   {role, content, stopped}
    POST   /ui/messages/{id}/feedback        {rating: "up" | "down" | null, edited?}
    GET    /ui/profile?user=U, PUT /ui/profile {user, facts, preferences}

A chat request that names a `user` with a saved profile gets the profile's facts and
preferences added to its system prompt, server-side (`ProfileMiddleware`), so any client
that sends `user` is personalised the same way.
"""

from __future__ import annotations

import json
from functools import cache

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict

from lmforge.errors import NotFoundError
from lmforge.serve.errors import APIError
from lmforge.serve.feedback import FeedbackStore


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewConversation(_Body):
    user: str
    system: str = ""
    model: str = ""
    title: str = ""


class ConversationChange(_Body):
    system: str | None = None
    title: str | None = None


class NewMessage(_Body):
    role: str
    content: str
    stopped: bool = False


class Profile(_Body):
    user: str
    facts: list[str] = []
    preferences: list[str] = []


def install(app: FastAPI, store: FeedbackStore | None = None) -> None:
    """Mount the web chat on `app`; `app.state.feedback` is its store (replaceable in tests)."""
    app.state.feedback = store or FeedbackStore()
    app.include_router(router())
    app.add_middleware(ProfileMiddleware)


def router() -> APIRouter:
    """The page and the `/ui/` routes; the store is `request.app.state.feedback`."""
    routes = APIRouter()

    async def call(request: Request, method: str, *args, **kwargs):
        store: FeedbackStore = request.app.state.feedback
        try:  # sqlite blocks: run it off the event loop
            return await run_in_threadpool(getattr(store, method), *args, **kwargs)
        except NotFoundError as e:
            raise APIError(404, str(e), code="not_found") from e

    @routes.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_template().render())

    @routes.get("/ui/conversations")
    async def list_conversations(request: Request, user: str) -> dict:
        return {"data": await call(request, "conversations", user)}

    @routes.post("/ui/conversations")
    async def new_conversation(request: Request, body: NewConversation) -> dict:
        return await call(request, "create_conversation", **body.model_dump())

    @routes.get("/ui/conversations/{conversation}")
    async def get_conversation(request: Request, conversation: str) -> dict:
        return await call(request, "conversation", conversation)

    @routes.patch("/ui/conversations/{conversation}")
    async def change_conversation(
        request: Request, conversation: str, body: ConversationChange
    ) -> dict:
        return await call(request, "update_conversation", conversation, **body.model_dump())

    @routes.delete("/ui/conversations/{conversation}")
    async def delete_conversation(request: Request, conversation: str) -> dict:
        await call(request, "delete_conversation", conversation)
        return {"id": conversation, "deleted": True}

    @routes.post("/ui/conversations/{conversation}/messages")
    async def add_message(request: Request, conversation: str, body: NewMessage) -> dict:
        return await call(request, "add_message", conversation, **body.model_dump())

    @routes.post("/ui/messages/{message}/feedback")
    async def feedback(request: Request, message: int) -> dict:
        body = await request.json()
        if not isinstance(body, dict):
            raise APIError(400, "feedback must be a JSON object {rating, edited}")
        return await call(request, "set_feedback", message, **body)

    @routes.get("/ui/profile")
    async def get_profile(request: Request, user: str) -> dict:
        return await call(request, "profile", user)

    @routes.put("/ui/profile")
    async def put_profile(request: Request, body: Profile) -> dict:
        return await call(request, "set_profile", **body.model_dump())

    return routes


@cache
def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("lmforge.serve", "templates"), autoescape=select_autoescape()
    )
    return env.get_template("chat.html")


class ProfileMiddleware:
    """Adds the saved profile of a chat request's `user` to its system prompt.

    Pure ASGI: reads the body of `POST /v1/chat/completions` or `/v1/explain` (up to the server's body
    limit), rewrites it if the user has a profile, and hands it on; anything else, and
    any body it cannot read as a chat request, passes through untouched for the route to
    judge.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in ("/v1/chat/completions", "/v1/explain")
        ):
            return await self.app(scope, receive, send)
        app = scope["app"]
        limit = app.state.config.max_body_bytes
        received, size, complete = [], 0, False
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
            if size > limit:
                break
        if complete and size <= limit:
            body = b"".join(m.get("body", b"") for m in received)
            rewritten = await run_in_threadpool(_with_profile, body, app.state.feedback)
            if rewritten is not None:
                received = [{"type": "http.request", "body": rewritten, "more_body": False}]
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
                headers.append((b"content-length", str(len(rewritten)).encode()))
                scope = {**scope, "headers": headers}

        async def replay():
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)


def _with_profile(body: bytes, store: FeedbackStore) -> bytes | None:
    """The chat request with the user's profile in its system prompt; None: leave it be."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("user"), str) or not data["user"]:
        return None
    messages = data.get("messages")
    if not isinstance(messages, list):
        return None
    profile = store.profile_prompt(data["user"])
    if not profile:
        return None
    first = messages[0] if messages else None
    if (
        isinstance(first, dict)
        and first.get("role") in ("system", "developer")
        and isinstance(first.get("content"), str)
    ):
        joined = f"{first['content']}\n\n{profile}" if first["content"].strip() else profile
        messages = [{**first, "content": joined}, *messages[1:]]
    else:
        messages = [{"role": "system", "content": profile}, *messages]
    return json.dumps({**data, "messages": messages}).encode()
