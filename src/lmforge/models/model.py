"""`Model`: a loaded model and tokenizer with generate / stream / chat."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lmforge.engine import make_decoder
from lmforge.engine.compiled import COMPILABLE
from lmforge.engine.generate import Completion, generate_batch, stream_batch
from lmforge.engine.params import SamplingParams
from lmforge.engine.quant_linear import DTYPES
from lmforge.errors import InvalidInputError

Message = dict[str, str]

_FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise InvalidInputError(f"unknown dtype {dtype!r}", f"use one of: {', '.join(DTYPES)}")
    return dtype


def check_messages(messages: Any) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(
            "messages must be a non-empty list", 'pass [{"role": "user", "content": "..."}]'
        )
    for m in messages:
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("content"), str)
            or m.get("role")
            not in (
                "system",
                "user",
                "assistant",
            )
        ):
            raise InvalidInputError(
                f"bad message {m!r}",
                "each message needs role system|user|assistant and string content",
            )
    return messages


def eos_ids(tokenizer, hf_model) -> frozenset[int]:
    """Every token id that ends an answer: the tokenizer's, the generation config's, the model's."""
    ids: set[int] = set()
    for source in (tokenizer, getattr(hf_model, "generation_config", None), hf_model.config):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)


class Model:
    """A causal LM ready to generate. Build it with `lmforge.load`."""

    def __init__(
        self,
        hf_model,
        tokenizer,
        dtype: str = "fp32",
        name: str | None = None,
        artifact=None,
        compile: bool = False,
        prefix=None,
        quantized=None,
    ):
        """`prefix`: per-layer keys and values of a prompt/prefix adapter's virtual tokens;
        `quantized`: a quantized artifact's stored weights, by module name."""
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.dtype = check_dtype(dtype)
        self.name = name or getattr(hf_model.config, "_name_or_path", "model")
        self.artifact = artifact
        if compile and self.dtype not in COMPILABLE:
            raise InvalidInputError(
                f"--compile supports {', '.join(COMPILABLE)}, not {self.dtype}",
                "drop --compile or change --dtype",
            )
        try:
            self.decoder = make_decoder(hf_model, self.dtype, compile=compile, quantized=quantized)
        except ValueError as e:
            raise InvalidInputError(str(e), "drop --compile") from e
        if prefix is not None:
            from lmforge.engine.prefix import PrefixDecoder

            self.decoder = PrefixDecoder(self.decoder, prefix)
        self.eos_ids = eos_ids(tokenizer, hf_model)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, dtype={self.dtype!r}, engine={type(self.decoder).__name__})"

    # -- prompts ---------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise InvalidInputError(
                f"prompt must be a string, not {type(text).__name__}", "pass text"
            )
        return self.tokenizer.encode(text)

    def chat_prompt(self, messages: list[Message]) -> list[int]:
        """Token ids of `messages` under the tokenizer's chat template, ready for the reply."""
        check_messages(messages)
        template = None if getattr(self.tokenizer, "chat_template", None) else _FALLBACK_TEMPLATE
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, chat_template=template
        )
        return self.tokenizer.encode(text, add_special_tokens=False)

    # -- generation ------------------------------------------------------------------------
    def complete(self, prompts: list[list[int]], **sampling) -> list[Completion]:
        """Generate from token-id prompts as one batch; Completions carry tokens and timings."""
        params = SamplingParams.from_kwargs(**sampling)
        return generate_batch(self.decoder, self.tokenizer, prompts, params, self.eos_ids)

    def generate(self, prompt: str | list[str], **sampling) -> str | list[str]:
        """Raw completion of a prompt (or a list of prompts, run as one batch)."""
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts:
            raise InvalidInputError(
                "prompt must be a string or a non-empty list of strings", "pass text"
            )
        texts = [c.text for c in self.complete([self.encode(p) for p in prompts], **sampling)]
        return texts[0] if isinstance(prompt, str) else texts

    def stream_ids(self, prompt_ids: list[int], **sampling) -> Iterator[str]:
        """Text deltas for a token-id prompt; options are checked before the first token."""
        params = SamplingParams.from_kwargs(**sampling)
        steps = stream_batch(self.decoder, self.tokenizer, [prompt_ids], params, self.eos_ids)
        return (d.text for deltas in steps for d in deltas if d.text)

    def stream(self, prompt: str, **sampling) -> Iterator[str]:
        """Text deltas of a raw completion as they are generated."""
        return self.stream_ids(self.encode(prompt), **sampling)

    def chat(
        self, messages: list[Message], stream: bool = False, **sampling
    ) -> str | Iterator[str]:
        """The assistant's reply to `messages` (a list of {role, content}); deltas if stream."""
        ids = self.chat_prompt(messages)
        if stream:
            return self.stream_ids(ids, **sampling)
        return self.complete([ids], **sampling)[0].text
