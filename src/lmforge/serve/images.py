"""Image parts of chat messages (`{"type": "image_url", "image_url": {"url": "data:..."}}`).

Only data URLs are read: the server never fetches a web URL. What happens to an image
depends on the served model:

- a vision-language model (`VisionModel`) sees it: `vision_prompt` hands the messages, with
  their images, to the model's processor, and `lmforge.vision.scheduler` answers;
- a text-only model cannot see: 400 `model_cannot_see`, unless the server was started with
  `--image-ocr`; then each image is read as text (OCR and a description,
  `lmforge.vision.offline`) and that text replaces the image in its message.
"""

from __future__ import annotations

import asyncio

from lmforge.errors import LmforgeError
from lmforge.serve.errors import APIError


def _only_data_urls(messages: list) -> dict[int, list]:
    """The image parts of each message that has some; 400 for anything but a data URL."""
    with_images = {i: m.images() for i, m in enumerate(messages) if m.images()}
    for i, parts in with_images.items():
        for part in parts:
            if not part.image_url.url.startswith("data:"):
                raise APIError(
                    400,
                    f"messages.{i}: only data URLs (data:image/png;base64,...) are accepted; "
                    "this server never fetches images from the web",
                    param=f"messages.{i}.content",
                    code="invalid_image_url",
                )
    return with_images


async def vision_prompt(model, messages: list, checked: list[dict]):
    """The `VisionPrompt` of a chat for a vision-language model.

    `checked`: each message as {role, content} text after the guard; a message whose text the
    guard changed keeps its images, followed by the changed text.
    """
    from lmforge.vision.scheduler import VisionPrompt

    with_images = _only_data_urls(messages)
    conversation = []
    for i, (message, plain) in enumerate(zip(messages, checked, strict=True)):
        if i not in with_images:
            conversation.append(plain)
        elif plain["content"] == message.plain()["content"]:  # as sent, parts in their order
            parts = [p.model_dump(exclude_none=True) for p in message.content]
            conversation.append({"role": plain["role"], "content": parts})
        else:
            images = [p.model_dump(exclude_none=True) for p in with_images[i]]
            text = {"type": "text", "text": plain["content"]}
            conversation.append({"role": plain["role"], "content": [*images, text]})

    def build() -> VisionPrompt:
        try:
            inputs = model.inputs([conversation])
        except LmforgeError as e:  # not an image, truncated, unsupported format ...
            raise APIError(400, str(e), param="messages", code="invalid_image") from e
        return VisionPrompt(inputs["input_ids"][0].tolist(), dict(inputs))

    return await asyncio.to_thread(build)


def text_prompt(ids: list[int]):
    """A `VisionPrompt` of plain token ids (a completion, or a chat without images)."""
    import torch

    from lmforge.vision.scheduler import VisionPrompt

    tensor = torch.tensor([ids])
    return VisionPrompt(ids, {"input_ids": tensor, "attention_mask": torch.ones_like(tensor)})


async def chat_messages(model, messages: list, ocr: bool) -> list[dict[str, str]]:
    """{role, content} messages for the chat template, the images read as text or refused."""
    plain = [m.plain() for m in messages]
    with_images = _only_data_urls(messages)
    if not with_images:
        return plain
    if not ocr:
        raise APIError(
            400,
            f"the model {model.name!r} cannot see images: it is a text-only model. Send text "
            "only, or start the server with --image-ocr to have images read as text (OCR)",
            param="messages",
            code="model_cannot_see",
        )
    return await asyncio.to_thread(_read_as_text, model, plain, with_images)


def _read_as_text(model, plain: list[dict], with_images: dict) -> list[dict[str, str]]:
    from lmforge.vision.offline import image_messages

    system = None
    for i, parts in with_images.items():
        try:
            msgs, _ = image_messages(model, [p.image_url.url for p in parts], plain[i]["content"])
        except LmforgeError as e:  # not an image, truncated, unsupported, no OCR installed
            raise APIError(
                400, f"messages.{i}: {e}", param=f"messages.{i}.content", code="invalid_image"
            ) from e
        system = msgs[0]["content"]
        plain[i] = {"role": plain[i]["role"], "content": msgs[1]["content"]}
    if plain[0]["role"] == "system":  # the OCR note joins the client's own system prompt
        plain[0] = {"role": "system", "content": f"{plain[0]['content']}\n\n{system}"}
    else:
        plain.insert(0, {"role": "system", "content": system})
    return plain
