"""Request bodies: read within a byte limit, parsed as JSON, refused with a 4xx when they
are not what a JSON route takes.

Every route that takes a body reads it here (the OpenAI routes, the admin and explain
routes, the web chat's `/ui/` routes and the profile middleware), so the limits hold on all
of them: at most `MAX_DEPTH` levels of arrays and objects (a body nested 100,000 deep
would otherwise overflow the parser's recursion), and text that is valid Unicode (a lone
surrogate such as "\\ud800" is valid JSON but no tokenizer or database takes it).
"""

from __future__ import annotations

import json

from fastapi import Request

from lmforge.serve.auth import DRAIN_LIMIT
from lmforge.serve.errors import APIError

MAX_DEPTH = 32  # an OpenAI request nests 6 deep at most (messages.0.content.0.image_url.url)


async def read_json(request: Request, limit: int) -> dict:
    """The body as a JSON object: 413 beyond `limit` bytes, 400 if it is not one."""
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
    return parse_json(b"".join(chunks))


def parse_json(raw: bytes) -> dict:
    """`raw` as a JSON object within the limits above, else APIError 400 `invalid_json`."""
    if not raw.strip():
        raise APIError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        data = json.loads(raw)
    except RecursionError:
        data = None
        _too_deep()
    except ValueError as e:  # UnicodeDecodeError is a ValueError
        raise APIError(400, f"request body is not valid JSON ({e})", code="invalid_json") from e
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    check_json(data)
    return data


def check_json(data: object) -> None:
    """APIError 400 if `data` (parsed JSON) nests deeper than MAX_DEPTH or holds a string
    (a key or a value) that is not valid Unicode."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                _too_deep()
            if isinstance(value, dict):
                for key in value:
                    _check_text(key)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise APIError(
            400,
            f"the body holds text that is not valid Unicode ({e.reason}: "
            f"{text[e.start : e.end]!r}); send UTF-8 text",
            code="invalid_json",
        ) from None


def _too_deep() -> None:
    raise APIError(
        400,
        f"request body nests arrays and objects more than {MAX_DEPTH} deep",
        code="invalid_json",
    )
