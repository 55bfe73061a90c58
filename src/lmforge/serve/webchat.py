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

Everything these routes keep belongs to the request's owner (`auth.owner`: its API key, or
"" on a server without keys); `user` only names sub-users within one owner. An id another
owner holds answers 404, as one nobody holds does. Every body is parsed here against a
schema (unknown fields, wrong types, text SQLite cannot keep: 400), and a malformed id is a
400 before the store sees it.

A chat request that names a `user` with a saved profile gets the profile's facts and
preferences added to its system prompt, server-side (`ProfileMiddleware`), so any client
that sends `user` is personalised the same way; the profile looked up is the one of the
request's own owner, and its items are quoted as data (`FeedbackStore.profile_prompt`).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from lmforge.errors import NotFoundError
from lmforge.serve import auth
from lmforge.serve.bodies import parse_json, read_json
from lmforge.serve.errors import APIError
from lmforge.serve.feedback import (
    MAX_ID,
    MAX_NAME_CHARS,
    MAX_PROFILE_ITEM_CHARS,
    MAX_PROFILE_ITEMS,
    FeedbackStore,
)

CONVERSATION_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as the store makes them
MESSAGE_ID = re.compile(r"[1-9][0-9]{0,18}")  # 1 .. 2**63-1, checked again as a number


def _storable(text: str) -> str:
    """`text` without a NUL character (a lone surrogate never gets here: bodies.parse_json
    refuses it for every body)."""
    if "\x00" in text:
        raise ValueError("the text holds a NUL character")
    return text


Text = Annotated[str, AfterValidator(_storable)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS), AfterValidator(_storable)]
ProfileItem = Annotated[str, Field(max_length=MAX_PROFILE_ITEM_CHARS), AfterValidator(_storable)]


class _Body(BaseModel):
    # strict: JSON's types as they are ("true" is no bool, 1 no string)
    model_config = ConfigDict(extra="forbid", strict=True)


class NewConversation(_Body):
    """POST /ui/conversations."""

    user: Name
    system: Text = ""
    model: Annotated[str, Field(max_length=MAX_NAME_CHARS), AfterValidator(_storable)] = ""
    title: Text = ""


class ConversationChange(_Body):
    """PATCH /ui/conversations/{id}."""

    system: Text | None = None
    title: Text | None = None


class NewMessage(_Body):
    """POST /ui/conversations/{id}/messages."""

    role: Literal["user", "assistant"]
    content: Text
    stopped: bool = False


class Feedback(_Body):
    """POST /ui/messages/{id}/feedback: a field left out keeps its value, null clears it."""

    rating: Literal["up", "down"] | None = None
    edited: Text | None = None


class Profile(_Body):
    """PUT /ui/profile."""

    user: Name
    facts: Annotated[list[ProfileItem], Field(max_length=MAX_PROFILE_ITEMS)] = []
    preferences: Annotated[list[ProfileItem], Field(max_length=MAX_PROFILE_ITEMS)] = []


def install(app: FastAPI, store: FeedbackStore | None = None) -> None:
    """Mount the web chat on `app`; `app.state.feedback` is its store (replaceable in tests)."""
    app.state.feedback = store or FeedbackStore()
    app.include_router(router())
    app.add_middleware(ProfileMiddleware)


def _documented(model: type[BaseModel]) -> dict:
    """The OpenAPI entry of a body the route parses itself (so FastAPI does not)."""
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


B = TypeVar("B", bound=BaseModel)


async def _body(request: Request, model: type[B]) -> B:
    """The request's body as `model`: 400 (OpenAI-style) for a body that is not JSON, nests
    too deep, or does not fit the schema (pydantic's ValidationError is answered as 400)."""
    data = await read_json(request, request.app.state.config.max_body_bytes)
    return model.model_validate(data)


def _conversation_id(text: str) -> str:
    if not CONVERSATION_ID.fullmatch(text):
        raise APIError(
            400,
            f"conversation: {text[:80]!r} is not a conversation id (32 hex digits)",
            param="conversation",
            code="invalid_id",
        )
    return text


def _message_id(text: str) -> int:
    if not MESSAGE_ID.fullmatch(text) or int(text) > MAX_ID:
        raise APIError(
            400,
            f"message: {text[:80]!r} is not a message id (a whole number from 1 to {MAX_ID})",
            param="message",
            code="invalid_id",
        )
    return int(text)


def _user(user: str | None) -> str:
    """The `user` query parameter, checked as a body's `user` is."""
    if not user:
        raise APIError(400, "user: this query parameter is required", param="user")
    if len(user) > MAX_NAME_CHARS or "\x00" in user:
        raise APIError(400, f"user: at most {MAX_NAME_CHARS} characters, no NUL", param="user")
    return user


def router() -> APIRouter:
    """The page and the `/ui/` routes; the store is `request.app.state.feedback`."""
    routes = APIRouter()

    async def call(request: Request, method: str, *args, **kwargs):
        store: FeedbackStore = request.app.state.feedback
        owner = auth.owner(request.scope)  # whose data: the key's, "" without keys
        try:  # sqlite blocks: run it off the event loop
            return await run_in_threadpool(getattr(store, method), *args, owner=owner, **kwargs)
        except NotFoundError as e:
            raise APIError(404, str(e), code="not_found") from e

    @routes.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_template().render())

    @routes.get("/ui/conversations")
    async def list_conversations(request: Request, user: str | None = None) -> dict:
        return {"data": await call(request, "conversations", _user(user))}

    @routes.post("/ui/conversations", openapi_extra=_documented(NewConversation))
    async def new_conversation(request: Request) -> dict:
        body = await _body(request, NewConversation)
        return await call(request, "create_conversation", **body.model_dump())

    @routes.get("/ui/conversations/{conversation}")
    async def get_conversation(request: Request, conversation: str) -> dict:
        return await call(request, "conversation", _conversation_id(conversation))

    @routes.patch("/ui/conversations/{conversation}", openapi_extra=_documented(ConversationChange))
    async def change_conversation(request: Request, conversation: str) -> dict:
        conversation = _conversation_id(conversation)
        body = await _body(request, ConversationChange)
        return await call(request, "update_conversation", conversation, **body.model_dump())

    @routes.delete("/ui/conversations/{conversation}")
    async def delete_conversation(request: Request, conversation: str) -> dict:
        await call(request, "delete_conversation", _conversation_id(conversation))
        return {"id": conversation, "deleted": True}

    @routes.post("/ui/conversations/{conversation}/messages", openapi_extra=_documented(NewMessage))
    async def add_message(request: Request, conversation: str) -> dict:
        conversation = _conversation_id(conversation)
        body = await _body(request, NewMessage)
        return await call(request, "add_message", conversation, **body.model_dump())

    @routes.post("/ui/messages/{message}/feedback", openapi_extra=_documented(Feedback))
    async def feedback(request: Request, message: str) -> dict:
        message_id = _message_id(message)
        body = await _body(request, Feedback)
        # only the fields sent: one left out keeps its value (a rating does not clear an edit)
        return await call(
            request, "set_feedback", message_id, **body.model_dump(exclude_unset=True)
        )

    @routes.get("/ui/profile")
    async def get_profile(request: Request, user: str | None = None) -> dict:
        return await call(request, "profile", _user(user))

    @routes.put("/ui/profile", openapi_extra=_documented(Profile))
    async def put_profile(request: Request) -> dict:
        body = await _body(request, Profile)
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
            owner = auth.owner(scope)  # the key's profiles only: KeyCheck ran before this
            rewritten = await run_in_threadpool(_with_profile, body, app.state.feedback, owner)
            if rewritten is not None:
                received = [{"type": "http.request", "body": rewritten, "more_body": False}]
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
                headers.append((b"content-length", str(len(rewritten)).encode()))
                scope = {**scope, "headers": headers}

        async def replay():
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)


def _with_profile(body: bytes, store: FeedbackStore, owner: str) -> bytes | None:
    """The chat request with the profile of `owner`'s user in its system prompt; None:
    leave it be (also a body the route will refuse: not JSON, too deep, bad Unicode)."""
    try:
        data = parse_json(body)
    except APIError:
        return None
    user = data.get("user")
    if not isinstance(user, str) or not user or "\x00" in user or len(user) > MAX_NAME_CHARS:
        return None  # no profile is saved under such a name
    messages = data.get("messages")
    if not isinstance(messages, list):
        return None
    profile = store.profile_prompt(user, owner=owner)
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
