"""The server's settings: one dataclass, read by `create_app` and the `lmforge serve` flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmforge.errors import InvalidInputError


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

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"invalid {name}={getattr(self, name)}", "must be >= 1")
        if self.max_queue < 0:
            raise InvalidInputError(f"invalid max_queue={self.max_queue}", "must be >= 0")
        if not 0 <= self.port <= 65535:
            raise InvalidInputError(f"invalid port={self.port}", "use 0..65535 (0: any free port)")
        if self.context is not None and self.context < 2:
            raise InvalidInputError(f"invalid context={self.context}", "must be >= 2")
