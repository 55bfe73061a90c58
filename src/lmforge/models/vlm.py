"""Vision-language models (image-text-to-text: Idefics3/SmolVLM, LLaVA, Qwen2-VL ...).

`VisionModel` wraps `AutoModelForImageTextToText` and its `AutoProcessor`, loaded from a
local folder, and answers chat messages whose content may hold images. It decodes with
`transformers`' `generate`: lmforge's native engine (KV cache, batching scheduler) is
text-only, so a VLM runs at `generate()` speed; `lmforge serve` answers its requests one at
a time (`lmforge.vision.scheduler`). `lmforge.load` returns one for a VLM folder, artifact or
LoRA adapter of one (`models.loader`).

Messages are OpenAI-style: `content` is a string, or a list of parts
`{"type": "text", "text": ...}`, `{"type": "image", "image": PATH | bytes | data URL}` or
`{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`. Every image goes
through `lmforge.models.images.load_image`.

torch, transformers and peft load inside the functions that use them: `is_vlm_folder` runs
on every model folder that is imported, loaded or tuned, text models included.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.engine.params import SamplingParams
from lmforge.errors import InvalidInputError, ModelLoadError
from lmforge.models.formats import quiet_transformers
from lmforge.models.images import ImageInput, load_image

ROLES = ("system", "user", "assistant")


def is_vlm(config: Any) -> bool:
    """True for the config (a dict or a `PretrainedConfig`) of an image-text-to-text model."""
    if not isinstance(config, dict):
        config = config.to_dict()
    if "vision_config" not in config or "text_config" not in config:
        return False  # CLIP/SigLIP have both too, but are not in the mapping below
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def is_vlm_folder(folder: str | Path) -> bool:
    """True when `folder/config.json` describes an image-text-to-text model."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        return is_vlm(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError):
        return False  # formats.detect reports a broken config.json


def read_vlm(folder: str | Path, adapter: str | Path | None = None):
    """(model, processor) from a local folder in fp32 on the CPU; safetensors only.

    `adapter`: a peft LoRA folder to fold into the weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    quiet_transformers()
    try:
        processor = AutoProcessor.from_pretrained(str(folder))
        model = AutoModelForImageTextToText.from_pretrained(
            str(folder), dtype=torch.float32, use_safetensors=True
        )
    except Exception as e:
        raise ModelLoadError(
            f"could not load a vision-language model from {folder} "
            f"({type(e).__name__}: {str(e)[:200]})",
            "check that the folder holds config.json, *.safetensors and the processor files",
        ) from e
    if not hasattr(processor, "image_processor"):
        raise ModelLoadError(
            f"{folder} has no image processor (preprocessor_config.json/processor_config.json)",
            "save the model's processor into the folder: processor.save_pretrained(FOLDER)",
        )
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.eval(), processor


def split_content(content: Any, where: str, base: Path | None = None):
    """(processor parts, images) of one message's content: images become {"type": "image"}.

    `base`: the folder that relative image paths are read from (a JSONL's folder).
    """
    if isinstance(content, str):
        return [{"type": "text", "text": content}], []
    if not isinstance(content, list):
        raise InvalidInputError(
            f"{where}: content must be a string or a list of parts", "see the OpenAI chat format"
        )
    parts: list[dict] = []
    images: list[ImageInput] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
            continue
        if kind == "image_url":
            source = (part.get("image_url") or {}).get("url")
        elif kind == "image":
            source = part.get("image", part.get("path"))
        else:
            raise InvalidInputError(
                f"{where}: part {i} is not a text, image or image_url part",
                'use {"type": "text", "text": ...} or {"type": "image", "image": PATH}',
            )
        if isinstance(source, str) and not source.startswith("data:"):
            if source.startswith(("http://", "https://")):
                raise InvalidInputError(
                    f"{where}: part {i} is a web URL; lmforge never fetches images",
                    "download the image and pass its path, or a data: URL",
                )
            if base is not None and not Path(source).expanduser().is_absolute():
                source = str(base / source)
        if source is None:
            raise InvalidInputError(f"{where}: part {i} names no image", "add the image")
        images.append(load_image(source))
        parts.append({"type": "image"})
    return parts, images


def prepare(messages: Any, base: Path | None = None) -> tuple[list[dict], list[ImageInput]]:
    """Messages in the processor's chat format (content as parts) and their images in order."""
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(
            "messages must be a non-empty list", 'pass [{"role": "user", "content": ...}]'
        )
    out, images = [], []
    for n, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InvalidInputError(f"bad message {n}", "each needs role system|user|assistant")
        parts, found = split_content(m.get("content"), f"message {n}", base)
        out.append({"role": m["role"], "content": parts})
        images += found
    return out, images


def generate_kwargs(**sampling) -> tuple[dict, int | None]:
    """(`generate()` options, seed) from lmforge's sampling options (checked by SamplingParams)."""
    p = SamplingParams.from_kwargs(**sampling)
    kw: dict[str, Any] = {"max_new_tokens": p.max_tokens, "do_sample": p.temperature > 0}
    if p.temperature > 0:
        kw.update(temperature=p.temperature, top_p=p.top_p, top_k=p.top_k or None)
    if p.repetition_penalty != 1.0:
        kw["repetition_penalty"] = p.repetition_penalty
    if p.stop:
        kw["stop_strings"] = p.stop
    return kw, p.seed


class VisionModel:
    """An image-text-to-text model with its processor; build it with `lmforge.load(FOLDER)`."""

    can_see = True
    dtype = "fp32"

    def __init__(self, hf_model, processor, name: str | None = None, artifact=None):
        self.hf_model = hf_model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name or getattr(hf_model.config, "_name_or_path", "vlm")
        self.artifact = artifact
        from lmforge.models.model import eos_ids  # the engine (torch): not for is_vlm_folder

        self.eos_ids = eos_ids(self.tokenizer, hf_model)
        text = hf_model.config.get_text_config()
        self.context = int(getattr(text, "max_position_embeddings", 0) or 2048)  # in tokens

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (a prompt with no images)."""
        if not isinstance(text, str):
            raise InvalidInputError(
                f"prompt must be a string, not {type(text).__name__}", "pass text"
            )
        return self.tokenizer.encode(text)

    def __repr__(self) -> str:
        return f"VisionModel({self.name!r}, {self.hf_model.config.model_type})"

    @classmethod
    def from_folder(cls, folder, name=None, artifact=None, adapter=None) -> VisionModel:
        model, processor = read_vlm(folder, adapter)
        return cls(model, processor, name=name or Path(folder).name, artifact=artifact)

    def inputs(self, conversations: list[list[dict]]):
        """Processor tensors for a batch of conversations, each ready for the reply."""
        texts, images = [], []
        for messages in conversations:
            chat, found = prepare(messages)
            texts.append(
                self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            )
            images.append([im.image for im in found])
        self.tokenizer.padding_side = "left"  # rows end where generation starts
        if not any(images):
            return self.processor(text=texts, return_tensors="pt", padding=True)
        if not all(images):
            raise InvalidInputError(
                "in a batch, every conversation needs an image, or none", "split the batch"
            )
        return self.processor(text=texts, images=images, return_tensors="pt", padding=True)

    def chat_batch(self, conversations: list[list[dict]], **sampling) -> list[str]:
        """The replies to several conversations, generated as one batch."""
        import torch

        kw, seed = generate_kwargs(**sampling)
        batch = self.inputs(conversations)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = self.hf_model.generate(**batch, **kw, tokenizer=self.tokenizer)
        new = out[:, batch["input_ids"].shape[1] :]  # (B, new tokens)
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def chat(self, messages: list[dict], stream: bool = False, **sampling) -> str | Iterator[str]:
        """The reply to `messages` (content: text or parts with images); deltas if stream."""
        if stream:
            return self.stream(messages, **sampling)
        return self.chat_batch([messages], **sampling)[0]

    def stream(self, messages: list[dict], **sampling) -> Iterator[str]:
        """Text deltas of the reply as `generate()` makes them (in a thread of its own)."""
        import torch
        from transformers import TextIteratorStreamer

        kw, seed = generate_kwargs(**sampling)  # bad options and images fail here, not later
        batch = self.inputs([messages])
        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        failed: list[BaseException] = []

        def run() -> None:
            try:
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.no_grad():
                    self.hf_model.generate(
                        **batch, **kw, streamer=streamer, tokenizer=self.tokenizer
                    )
            except BaseException as e:  # re-raised in the reader's thread
                failed.append(e)
                streamer.end()

        def deltas() -> Iterator[str]:
            thread = threading.Thread(target=run, name="lmforge-vlm", daemon=True)
            thread.start()
            for text in streamer:
                if text:
                    yield text
            thread.join()
            if failed:
                raise failed[0]

        return deltas()

    def generate(self, prompt: str, images=(), **sampling) -> str:
        """A reply to one user turn: `prompt` about `images` (paths, bytes or data URLs)."""
        parts = [{"type": "image", "image": im} for im in images]
        return self.chat([{"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}],
                         **sampling)  # fmt: skip
