"""Images for a text-only model: OCR text plus a pixel description, written into the prompt.

No vision-language weights reach an offline machine, so the default image path reads the
text in each image (`ocr.py`) and describes its layout and colours (`describe.py`), and
hands that to the language model as plain text. `image_messages` is the one entry point;
the metadata it returns says which path was used, e.g.
`{"image_path": "ocr", "engine": "rapidocr 1.4.4", "lines": 9, ...}`.

The format is chosen, by measurement, for a 135M model: one short system message, the
description, then the text fenced in triple quotes one line per OCR row, a row's cells
joined as "label: value" (so "TOTAL 6.75" reads as a fact), and the question last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmforge.models.images import ImageInput, load_image
from lmforge.vision.describe import NUMBER, describe
from lmforge.vision.ocr import TextBox, read_text

SYSTEM = (
    "You cannot see images. The user's image was read for you: its text, line by line, "
    "is below. Answer the question using that text."
)


@dataclass
class ReadImage:
    """One image as a text-only model gets it: the OCR rows and the description."""

    image: ImageInput
    engine: str
    rows: list[str]  # one string per OCR row, top to bottom
    description: str

    def meta(self) -> dict:
        w, h = self.image.size
        return {
            "source": self.image.source,
            "size": [w, h],
            "lines": len(self.rows),
            "notes": self.image.notes + ([] if self.rows else ["no text found"]),
        }


def read_image(src, engine: str = "auto") -> ReadImage:
    """Load, OCR and describe one image (a path, bytes, a data URL or an `ImageInput`)."""
    image = load_image(src)
    result = read_text(image.image, engine=engine)
    lines = result.lines
    description = describe(image.image, lines, notes=image.notes).text()
    return ReadImage(image, result.engine, [format_row(row) for row in lines], description)


def format_row(row: list[TextBox]) -> str:
    """One OCR row as text: a label and a number become "label: number"; else spaces."""
    cells = [b.text.strip() for b in row]
    if len(cells) >= 2 and NUMBER.match(cells[-1]) and not NUMBER.match(cells[-2]):
        return " ".join(cells[:-1]).rstrip(":") + ": " + cells[-1]
    return " ".join(cells)


def image_prompt(read: list[ReadImage], prompt: str) -> str:
    """The user message: each image's description, its text between quotes, then the question.

    Measured on generated receipts with SmolLM2-135M (greedy, "What is the total?"): with the
    text fenced in triple quotes and the description before it, 39/40 held-out receipts were
    answered with the right total; without the fence 23/30, with the question first 19/30,
    with the description after the text 33/40 (tests/vision/test_offline_chat.py re-measures).
    """
    parts = []
    for i, r in enumerate(read, 1):
        name = (
            Path(r.image.source).name if r.image.source not in ("data URL", "image bytes") else ""
        )
        title = (f"Image {i}" + (f" ({name})" if name else "")) if len(read) > 1 else "The image"
        parts.append(f"About {title[0].lower() + title[1:]}: {r.description}")
        if r.rows:
            text = "\n".join(r.rows)
            parts.append(f'{title} contains this text, line by line:\n"""\n{text}\n"""')
        else:
            parts.append(f"{title} contains no readable text.")
    parts.append(f"Question: {prompt.strip()}")
    return "\n\n".join(parts)


def image_messages(
    model, images: list, prompt: str, system: str | None = None, engine: str = "auto"
) -> tuple[list[dict[str, str]], dict]:
    """Messages asking a text-only `model` about `images`, and which path read them.

    `model` is unused by this path (any chat model takes the text); it is part of the
    signature so one call site can route vision-language models elsewhere.
    """
    del model
    read = [read_image(src, engine=engine) for src in images]
    messages = [
        {"role": "system", "content": (system + "\n\n" + SYSTEM) if system else SYSTEM},
        {"role": "user", "content": image_prompt(read, prompt)},
    ]
    meta = {
        "image_path": "ocr",
        "engine": read[0].engine if read else None,
        "lines": sum(len(r.rows) for r in read),
        "images": [r.meta() for r in read],
    }
    return messages, meta


def summary_line(meta: dict) -> str:
    """The one line the CLI prints to stderr: 'image read by OCR (rapidocr 1.4.4): 9 lines'."""
    n = meta["lines"]
    line = f"image read by OCR ({meta['engine']}): {n} line{'s' if n != 1 else ''}"
    if n == 0:
        line += " (no text found)"
    notes = [note for im in meta["images"] for note in im["notes"] if note != "no text found"]
    return line + (f"; {'; '.join(notes)}" if notes else "")
