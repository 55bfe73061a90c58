"""The server's settings: one dataclass, read by `create_app` and the `lmforge serve` flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmforge.errors import InvalidInputError

# A request that does not say how long to answer holds a batch row at most this long
# (about 20 s at one row's speed on 2 cores), not until the 8k-token context is full.
MAX_TOKENS_LIMIT = 2048


@dataclass
class ServeConfig:
    """How `lmforge serve` listens and how much work it takes on."""

    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on."})
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    max_batch: int = field(
        default=16, metadata={"help": "Requests decoded together (rows of the running batch)."}
    )
    max_queue: int = field(
        default=64,
        metadata={"help": "Requests that may wait for a row; more are refused (429, Retry-After)."},
    )
    max_body_bytes: int = field(
        default=1 << 20, metadata={"help": "Largest request body in bytes; larger get 413."}
    )
    context: int | None = field(
        default=None,
        metadata={"help": "Most prompt + completion tokens per request [default: the model's]."},
    )
    model_name: str | None = field(
        default=None,
        metadata={"help": "The name clients send as `model` [default: the model's own name]."},
    )
    api_key_hashes: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "SHA-256 hex digests of the accepted API keys (`auth.hash_key`); none: "
            "no key needed. The keys themselves are never kept."
        },
    )
    admin_key_hashes: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "SHA-256 hex digests of the keys that may call /admin/* (load, unload, "
            "swap adapters); when set, a client key gets 403 there [default: any client key]."
        },
    )
    rate_limit: int | None = field(
        default=None,
        metadata={"help": "Requests per minute per API key; more get 429 [default: no limit]."},
    )
    max_tokens_limit: int | None = field(
        default=MAX_TOKENS_LIMIT,
        metadata={
            "help": "Most tokens one answer may have: the default of a request without "
            f"max_tokens, and the most it may ask for (more get 400); 0: up to the context "
            f"[default: {MAX_TOKENS_LIMIT}]."
        },
    )
    allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Host names clients may reach the server by (the Host header), beyond the "
            "loopback names a loopback server answers to; '*': any [default: on a loopback "
            "address only loopback names, elsewhere any]."
        },
    )
    cors_origins: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Origins browsers may call from (CORS); none: no CORS headers."},
    )
    prompt_cache_mb: float = field(
        default=64,
        metadata={
            "help": "Memory for the keys and values of recent prompts, reused by prompts that "
            "open the same way (a system prompt, earlier turns); 0: off."
        },
    )
    guard: str = field(
        default="off",
        metadata={
            "help": "Checks on prompts and answers: one action for all (off|flag|redact|block) "
            "or per check, e.g. injection=block,pii=redact,toxicity=flag."
        },
    )
    embeddings: bool = field(
        default=False,
        metadata={"help": "Also serve POST /v1/embeddings with MiniLM (lmforge[embeddings])."},
    )
    image_ocr: bool = field(
        default=False,
        metadata={
            "help": "Answer image parts sent to a text-only model by reading the images as text "
            "(OCR and a description, lmforge[vision]); off: such requests get 400 model_cannot_see."
        },
    )

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"invalid {name}={getattr(self, name)}", "must be >= 1")
        if self.guard != "off":
            from lmforge.guard.policy import GuardPolicy

            self.guard = str(GuardPolicy.parse(self.guard))  # checked, in its canonical form
        if self.prompt_cache_mb < 0:
            raise InvalidInputError(
                f"invalid prompt_cache_mb={self.prompt_cache_mb}", "must be >= 0"
            )
        if self.max_queue < 0:
            raise InvalidInputError(f"invalid max_queue={self.max_queue}", "must be >= 0")
        if not 0 <= self.port <= 65535:
            raise InvalidInputError(f"invalid port={self.port}", "use 0..65535 (0: any free port)")
        if self.context is not None and self.context < 2:
            raise InvalidInputError(f"invalid context={self.context}", "must be >= 2")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise InvalidInputError(f"invalid rate_limit={self.rate_limit}", "must be >= 1")
        if self.max_tokens_limit is not None and self.max_tokens_limit < 0:
            raise InvalidInputError(
                f"invalid max_tokens_limit={self.max_tokens_limit}", "must be >= 0 (0: no limit)"
            )
        if self.max_tokens_limit == 0:
            self.max_tokens_limit = None
        self.api_key_hashes = tuple(self.api_key_hashes)
        self.admin_key_hashes = tuple(self.admin_key_hashes)
        self.cors_origins = tuple(self.cors_origins)
        self.allowed_hosts = tuple(self.allowed_hosts)
        for name in ("api_key_hashes", "admin_key_hashes"):
            for digest in getattr(self, name):
                if not (len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                    raise InvalidInputError(
                        f"{name} holds something that is not a SHA-256 hex digest",
                        "pass keys through lmforge.serve.auth.hash_key, never the keys themselves",
                    )
        if self.rate_limit is not None and not self.api_key_hashes:
            raise InvalidInputError(
                "a rate limit is counted per API key, and no key is set", "add --api-key KEY"
            )
