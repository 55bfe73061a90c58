"""Request bodies of the OpenAI API as pydantic models: strict types, unknown fields refused.

Fields that OpenAI clients send but lmforge does not act on fall in two groups:
`IGNORED` change nothing about the answer (`user`, `metadata`, `store` ...) and are accepted;
`NEUTRAL_ONLY` would change it (`tools`, `response_format`, `frequency_penalty` ...) and are
accepted only at their neutral value, anything else is a 400 that names the field. Beyond
OpenAI, `top_k` and `repetition_penalty` reach the engine's sampler (as in vLLM's
`extra_body`). Log-probabilities (`logprobs`, `top_logprobs`; `echo` on completions) are
served: see `lmforge.serve.app`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lmforge.engine.params import MAX_SEED, MIN_PENALTY, SamplingParams

# field -> values that mean "off"; any other value is refused as unsupported
NEUTRAL_ONLY: dict[str, tuple] = {
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}, {"type": "json_object"}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "web_search_options": (None,),
    "suffix": (None, ""),
}
# why a NEUTRAL_ONLY field is refused, where there is more to say than its name
HINTS = {
    "response_format": 'structured outputs (json_schema) are not built; {"type": "text"} and '
    '{"type": "json_object"} (JSON mode) are',
}
MAX_TOP_LOGPROBS = 20
TopLogprobs = Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)]
IGNORED = (
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "reasoning_effort",
    "verbosity",
)

# Every number has a range, so no value can overflow what takes it further down (a seed
# past 2**64 once failed torch.Generator, and with it the batch it shared).
MAX_INT = 2**31 - 1
Count = Annotated[int, Field(ge=1, le=MAX_INT)]
TokenId = Annotated[int, Field(ge=0, le=MAX_INT)]  # and below the vocabulary (the scheduler)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # ignored: there is no obfuscation field


class _Generate(_Strict):
    """The fields both endpoints share."""

    model: str | None = None
    max_tokens: Count | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=64)] = 1
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    # the engine's own, beyond OpenAI
    top_k: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None
    repetition_penalty: Annotated[float, Field(ge=MIN_PENALTY, le=10)] | None = None
    # accepted, changes nothing
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    # accepted at their neutral value only (NEUTRAL_ONLY)
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, float] | None = None

    def unsupported(self) -> str | None:
        """The first field set to a value lmforge cannot honour, or None."""
        for name, neutral in NEUTRAL_ONLY.items():
            if name in type(self).model_fields and getattr(self, name) not in neutral:
                return name
        return None

    def sampling(self, max_tokens: int, choice: int = 0) -> SamplingParams:
        """SamplingParams for choice `choice` of n (a seed gives choice k the seed + k).

        Absent temperature and top_p take the OpenAI API's defaults (1 and 1).
        """
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else float(self.temperature),
            top_p=1.0 if self.top_p is None else float(self.top_p),
            top_k=self.top_k or 0,
            repetition_penalty=self.repetition_penalty or 1.0,
            seed=None if self.seed is None else self.seed + choice,
            stop=stop,
        )


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str  # only data: URLs are read (serve.images); the server never fetches a web URL
    detail: Literal["auto", "low", "high"] | None = None  # accepted; changes nothing


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part]
    name: str | None = None  # accepted; templates have no place for it

    def images(self) -> list[ImagePart]:
        return (
            []
            if isinstance(self.content, str)
            else [p for p in self.content if isinstance(p, ImagePart)]
        )

    def plain(self) -> dict[str, str]:
        """{role, content} for the chat template ("developer" is the newer "system");
        image parts are left out (serve.images turns them into text or refuses them)."""
        text = (
            self.content
            if isinstance(self.content, str)
            else "".join(p.text for p in self.content if isinstance(p, TextPart))
        )
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_Generate):
    """POST /v1/chat/completions."""

    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Count | None = None  # the newer name of max_tokens
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None  # needs logprobs: true
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None


class CompletionRequest(_Generate):
    """POST /v1/completions: one prompt or several, as text or token ids."""

    prompt: str | list[str] | list[TokenId] | list[list[TokenId]]
    max_tokens: Annotated[int, Field(ge=0, le=MAX_INT)] | None = (
        None  # 0: only the prompt (with echo)
    )
    logprobs: TopLogprobs | None = None  # the chosen token's and this many most likely
    echo: bool | None = None  # the answer opens with the prompt (and its logprobs)
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1, le=64)] | None = None
