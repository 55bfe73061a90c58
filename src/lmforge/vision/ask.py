"""`chat_with_images`: the one place that decides how a chat model gets images.

A vision-language model (`VisionModel`) sees the pixels; any other chat model gets the
images read for it as text (OCR and a description, `lmforge.vision.offline`).
"""

from __future__ import annotations

from collections.abc import Iterator

from lmforge.models.images import load_image


def chat_with_images(
    model, images: list, prompt: str, system: str | None = None, stream: bool = True, **sampling
) -> tuple[str | Iterator[str], dict]:
    """(the reply, or its deltas if `stream`; metadata saying which path read the images)."""
    if getattr(model, "can_see", False):
        loaded = [load_image(src) for src in images]
        parts = [{"type": "image", "image": im} for im in loaded]
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": [*parts, {"type": "text", "text": prompt}]})
        meta = {
            "image_path": "vlm",
            "architecture": model.hf_model.config.model_type,
            "images": [
                {"source": im.source, "size": list(im.size), "notes": im.notes} for im in loaded
            ],
        }
        return model.chat(messages, stream=stream, **sampling), meta
    from lmforge.vision.offline import image_messages

    messages, meta = image_messages(model, images, prompt, system=system)
    return model.chat(messages, stream=stream, **sampling), meta


def image_summary(meta: dict) -> str:
    """One line for stderr saying how the images were read."""
    if meta.get("image_path") != "vlm":
        from lmforge.vision.offline import summary_line

        return summary_line(meta)
    n = len(meta["images"])
    notes = [note for im in meta["images"] for note in im["notes"]]
    line = f"{n} image{'s' if n != 1 else ''} seen by the vision-language model ({meta['architecture']})"
    return line + (f"; {'; '.join(notes)}" if notes else "")
