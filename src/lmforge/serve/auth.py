"""Who may call the server and how much: API keys, a per-key rate limit, body size, CORS.

Keys are held only as SHA-256 digests (`hash_key`); a request's key is hashed and compared
with each of them in constant time. When any key is set, every route but the open ones
(`/` the chat page, `/health`, `/metrics`) needs `Authorization: Bearer KEY`; a missing or
wrong key gets 401 `invalid_api_key` (`/admin/*` takes only an admin key when some are set:
a client key gets 403), a key over its rate (a token bucket of `rate_limit`
requests a minute, refilled continuously) 429 with Retry-After, both as OpenAI answers them.
Everything here is pure ASGI middleware, so streaming and disconnect detection pass through.

Order of the layers (outermost first): request counting, CORS (a browser's preflight is
answered before any key is asked for), keys and rate, body size, then the app.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from starlette.exceptions import HTTPException

from lmforge.errors import InvalidInputError
from lmforge.serve.config import ServeConfig
from lmforge.serve.errors import APIError

OPEN_PATHS = frozenset({"/", "/health", "/metrics"})  # never need a key
DRAIN_LIMIT = 16 << 20  # read (and drop) at most this much of a too-large body, then close
OWNER = "lmforge.owner"  # the scope key KeyCheck sets to the digest of a request's valid key


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is kept."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_keys(keys: Iterable[str] = (), files: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """Digests of `keys` and of the keys in `files` (one a line; blank lines and `#`
    comments skipped; a line `sha256:HEX` is a digest already, so a file need not hold
    the keys themselves)."""
    keys = list(keys)
    if any(not k.strip() for k in keys):
        raise InvalidInputError("an API key is empty", "give a non-empty --api-key")
    digests = [hash_key(k) for k in keys]
    for path in files:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as err:
            raise InvalidInputError(f"cannot read the API keys file {path}: {err}") from None
        for line in (raw.strip() for raw in lines):
            if not line or line.startswith("#"):
                continue
            digests.append(line[7:].lower() if line.startswith("sha256:") else hash_key(line))
    return tuple(dict.fromkeys(digests))  # unique, in order


def install(app, config: ServeConfig) -> None:
    """Add the body limit, the key check and CORS (if origins are set) to `app`."""
    from fastapi.middleware.cors import CORSMiddleware

    app.add_middleware(JsonOnly)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    if config.api_key_hashes or config.admin_key_hashes:
        app.add_middleware(
            KeyCheck,
            digests=config.api_key_hashes,
            per_minute=config.rate_limit,
            admin=config.admin_key_hashes,
        )
    if config.cors_origins:  # added after the key check: outside it, so preflights need no key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    app.add_middleware(  # outermost: a request from another site is refused before anything
        CrossSiteCheck, hosts=allowed_hosts(config), origins=frozenset(config.cors_origins)
    )


def warn_if_open(config: ServeConfig) -> None:
    """On stderr: a server without keys that listens beyond this machine."""
    if config.api_key_hashes or _is_loopback(config.host):
        return
    print(
        f"warning: serving on {config.host} with no API key: anyone who can reach it may use "
        "it; add --api-key KEY (or --api-keys-file FILE), or listen on 127.0.0.1",
        file=sys.stderr,
        flush=True,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_hosts(config: ServeConfig) -> frozenset[str] | None:
    """The names a request's Host header may give (without the port); None: any.

    On a loopback address: the loopback names and `allowed_hosts`, so that a web page whose
    name resolves to 127.0.0.1 (DNS rebinding) cannot reach the server. Beyond loopback:
    `allowed_hosts` if given (with the bound address), else any ("*" also means any).
    """
    given = {h.strip().lower() for h in config.allowed_hosts}
    if "*" in given:
        return None
    if _is_loopback(config.host):
        return frozenset(LOOPBACK_NAMES | given)
    return frozenset(given | {config.host.lower()}) if given else None


class CrossSiteCheck:
    """ASGI middleware: what a web page in the user's browser could send is refused.

    - a Host header outside `hosts` (DNS rebinding): 400 `host_not_allowed`;
    - a write (POST, PUT, PATCH, DELETE) from a page of another origin (its `Origin` header
      is neither this server nor one of the CORS `origins`): 403 `cross_origin`.

    (`JsonOnly` refuses the bodies a page may send anywhere without asking, after the key.)
    """

    def __init__(self, app, hosts: frozenset[str] | None, origins: frozenset[str] = frozenset()):
        self.app, self.hosts, self.origins = app, hosts, origins

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = self.refusal(scope)
        if error is not None:
            await _drain(receive)  # so that the client reads the answer rather than a reset
            return await error.response()(scope, receive, send)
        await self.app(scope, receive, send)

    def refusal(self, scope) -> APIError | None:
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 or "]:" in host else host
        if self.hosts is not None and host and name not in self.hosts:
            return APIError(
                400,
                f"this server does not answer to the host name {name!r}; if it is yours, "
                f"start it with --allowed-host {name}",
                code="host_not_allowed",
            )
        method = scope["method"]
        origin = headers.get(b"origin", b"").decode("latin-1").strip()
        if (
            method in WRITES
            and origin
            and origin not in self.origins
            and origin.partition("://")[2].lower() != host
        ):
            return APIError(
                403,
                f"requests from the web page {origin!r} are refused; an operator may allow its "
                f"origin with --cors-origin {origin}",
                code="cross_origin",
                type="permission_error",
            )
        return None


class JsonOnly:
    """ASGI middleware: a POST, PUT or PATCH whose body is not `application/json` gets 415
    `unsupported_media_type`. A web page may send a form or `text/plain` to any server
    without asking the browser's CORS check first; JSON it may not."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            header = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
            media = header.partition(";")[0].strip()
            if media.lower() != "application/json":
                await _drain(receive)
                error = APIError(
                    415,
                    "the body must be JSON, sent as Content-Type: application/json (got "
                    f"{media or 'none'!r})",
                    code="unsupported_media_type",
                )
                return await error.response()(scope, receive, send)
        await self.app(scope, receive, send)


class TokenBucket:
    """`per_minute` requests a minute per key, in bursts of up to `per_minute`."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity, self.rate, self.clock = float(per_minute), per_minute / 60.0, clock
        self.buckets: dict[str, tuple[float, float]] = {}  # digest -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 if `key` may go now (and counts it), else the seconds until it may."""
        with self._lock:
            now = self.clock()
            tokens, when = self.buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - when) * self.rate)
            if tokens >= 1.0:
                self.buckets[key] = (tokens - 1.0, now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class KeyCheck:
    """ASGI middleware: `Authorization: Bearer KEY` with a known key, within its rate.

    `admin`: digests of the keys for `/admin/*`; when given, only they open those routes (a
    client key gets 403) and they open every other route too. With no client `digests`,
    only the admin routes need a key.
    """

    def __init__(
        self,
        app,
        digests: tuple[str, ...],
        per_minute: int | None = None,
        admin: tuple[str, ...] = (),
    ):
        self.app, self.digests, self.admin = app, tuple(digests), tuple(admin)
        self.anyone = self.digests + self.admin  # keys of the other routes
        self.bucket = TokenBucket(per_minute) if per_minute else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        if self.admin and scope["path"].startswith("/admin/"):
            error = self.refusal(header, self.admin, admin=True)
        elif self.digests:
            error = self.refusal(header, self.anyone)
        else:
            error = None
        if error is not None:
            return await error.response()(scope, receive, send)
        digest = _digest(header)
        if digest is not None and _known(digest, self.anyone):  # whose data this request reads
            scope[OWNER] = digest
        await self.app(scope, receive, send)

    def refusal(
        self, header: bytes, digests: tuple[str, ...], admin: bool = False
    ) -> APIError | None:
        """None if the header carries one of `digests` within its rate, else the error."""
        digest = _digest(header)
        if digest is None:
            return _unauthorized(
                "no API key given: send the header 'Authorization: Bearer YOUR_KEY'"
            )
        if not _known(digest, digests):
            if admin and _known(digest, self.digests):
                return APIError(
                    403,
                    "this API key may not manage adapters: /admin/ needs an admin key",
                    code="permission_denied",
                    type="permission_error",
                )
            return _unauthorized("incorrect API key provided")
        wait = self.bucket.take(digest) if self.bucket else 0.0
        if wait:
            return APIError(
                429,
                f"rate limit of {int(self.bucket.capacity)} requests a minute reached for this "
                f"key; retry in {math.ceil(wait)} s",
                code="rate_limit_exceeded",
                type="rate_limit_error",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        return None


def owner(scope) -> str:
    """Who a request acts for: the digest of its API key, or "" on a server without keys
    (one local user). Data the server keeps for a client (web-chat conversations, profiles,
    feedback) belongs to this owner, and no other owner can read or change it."""
    return scope.get(OWNER, "")


def _digest(header: bytes) -> str | None:
    scheme, _, key = header.decode("latin-1").strip().partition(" ")
    return hash_key(key.strip()) if scheme.lower() == "bearer" and key.strip() else None


def _known(digest: str, digests: tuple[str, ...]) -> bool:
    known = False
    for stored in digests:  # every one, so the time taken does not tell which matched
        known |= hmac.compare_digest(digest, stored)
    return known


def _unauthorized(message: str) -> APIError:
    return APIError(
        401,
        message,
        code="invalid_api_key",
        type="invalid_request_error",
        headers={"WWW-Authenticate": "Bearer"},
    )


class BodyTooLarge(HTTPException):
    """Raised when a body passes the limit while a route reads it (FastAPI lets an
    HTTPException through its body parsing, where it would turn others into a 400)."""

    code = "body_too_large"

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: 413 for any request whose body passes `limit` bytes, on every route.

    A declared Content-Length over the limit is answered before the app sees the request;
    a chunked body is counted as the app reads it. Either way the rest of the body is read
    and dropped (up to DRAIN_LIMIT), so the client reads the answer rather than a reset.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await _drain(receive)
            return await self.too_large().response()(scope, receive, send)
        size, started = 0, False

        async def counted_receive():
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.limit:
                    if message.get("more_body", False):
                        await _drain(receive)
                    raise BodyTooLarge(self.limit)
            return message

        async def watched_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:  # raised where no exception handler sits (another middleware)
            if started:
                raise
            await self.too_large().response()(scope, receive, send)

    def too_large(self) -> APIError:
        return APIError(413, f"request body larger than {self.limit} bytes", code="body_too_large")


async def _drain(receive) -> None:
    size = 0
    while size <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
