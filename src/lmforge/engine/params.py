"""Sampling options: the one schema for the API, the CLI flags and (later) the server."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmforge.errors import InvalidInputError, check_known

MIN_PENALTY = 1e-3  # logits divided by less overflow float32 (a NaN distribution)
MAX_SEED = 2**63 - 1  # torch.Generator takes seeds below 2**64; n choices add up to 63 to one


@dataclass
class SamplingParams:
    """How to pick each next token and when to stop."""

    max_tokens: int = field(default=256, metadata={"help": "Most new tokens to generate (>= 1)."})
    temperature: float = field(
        default=0.0,
        metadata={"help": "0 means greedy (argmax); higher flattens the distribution (0..5)."},
    )
    top_k: int = field(
        default=0, metadata={"help": "Keep only the k most likely tokens; 0 turns it off."}
    )
    top_p: float = field(
        default=1.0,
        metadata={
            "help": "Keep the smallest set of tokens whose probability sums to top_p (0 < top_p <= 1)."
        },
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata={
            "help": "> 1 discourages tokens already in the prompt or the answer (CTRL-style; 1 is off)."
        },
    )
    seed: int | None = field(
        default=None,
        metadata={"help": "Seed for sampling; the same seed and inputs give the same tokens."},
    )
    stop: list[str] = field(
        default_factory=list,
        metadata={"help": "Strings that end generation; the stop string itself is not returned."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = [s for s in self.stop if s]
        self.validate()

    def validate(self) -> SamplingParams:
        def bad(name: str, want: str) -> InvalidInputError:
            return InvalidInputError(
                f"invalid {name}={getattr(self, name)!r}", f"{name} must be {want}"
            )

        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(name, "a number")
        if (
            not isinstance(self.max_tokens, int)
            or isinstance(self.max_tokens, bool)
            or self.max_tokens < 1
        ):
            raise bad("max_tokens", "an integer >= 1")
        if not 0.0 <= float(self.temperature) <= 5.0:
            raise bad("temperature", "between 0 and 5 (0 = greedy)")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad("top_k", "an integer >= 0 (0 = off)")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise bad("top_p", "in (0, 1] (1 = off)")
        if not MIN_PENALTY <= float(self.repetition_penalty) <= 10.0:
            raise bad("repetition_penalty", f"in [{MIN_PENALTY}, 10] (1 = off)")
        if self.seed is not None and (
            not isinstance(self.seed, int)
            or isinstance(self.seed, bool)
            or not 0 <= self.seed <= MAX_SEED
        ):
            raise bad("seed", f"an integer in 0..{MAX_SEED}")
        return self

    @classmethod
    def from_kwargs(cls, **kwargs) -> SamplingParams:
        """Build from keyword arguments, rejecting unknown names with a clear error."""
        check_known(kwargs, cls, "sampling")
        return cls(**{k: v for k, v in kwargs.items() if v is not None})

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0
