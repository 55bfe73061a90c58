"""Read the text in an image offline, with an engine whose weights are already on the machine.

Two engines, registered by name, each a function `(RGB PIL image) -> list[TextBox]`:

- `rapidocr`: PP-OCRv4 detection + recognition as ONNX models shipped inside the PyPI wheel
  `rapidocr-onnxruntime` (~15 MB; `pip install 'lmforge[vision]'`). The default.
- `tesseract`: Debian's `tesseract-ocr` binary, used when it is on PATH.

`read_text` returns the boxes, and `group_lines` puts them in reading order: rows top to
bottom, boxes left to right within a row (a receipt's "TOTAL ... 6.75" becomes one line).
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata

from lmforge.errors import InvalidInputError
from lmforge.models.images import EXTRA_FIX


@dataclass(frozen=True)
class TextBox:
    """One piece of text the engine found and where: pixel edges in the image."""

    text: str
    left: int
    top: int
    right: int
    bottom: int
    confidence: float  # 0..1

    @property
    def middle_y(self) -> float:
        return (self.top + self.bottom) / 2

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True)
class OcrResult:
    """What an engine read: its name and version, and the boxes in reading order."""

    engine: str  # "rapidocr 1.4.4"
    boxes: list[TextBox]

    @property
    def lines(self) -> list[list[TextBox]]:
        return group_lines(self.boxes)


ENGINES: dict[str, Callable] = {}


def register(name: str):
    def add(fn):
        ENGINES[name] = fn
        return fn

    return add


def available_engine(name: str = "auto") -> str:
    """The engine `name` resolves to here; a one-line error if none can run."""
    if name != "auto":
        if name not in ENGINES:
            raise InvalidInputError(
                f"unknown OCR engine {name!r}", f"use one of: auto, {', '.join(ENGINES)}"
            )
        return name
    if _has_rapidocr():
        return "rapidocr"
    if shutil.which("tesseract"):
        return "tesseract"
    raise InvalidInputError(
        "no OCR engine is installed, so the text in images cannot be read",
        EXTRA_FIX + " (or apt-get install tesseract-ocr)",
    )


def read_text(image, engine: str = "auto") -> OcrResult:
    """OCR an RGB PIL image; boxes come back sorted into reading order."""
    name = available_engine(engine)
    boxes = [b for b in ENGINES[name](image) if b.text.strip()]
    ordered = [b for line in group_lines(boxes) for b in line]
    return OcrResult(engine=f"{name} {engine_version(name)}", boxes=ordered)


def group_lines(boxes: list[TextBox]) -> list[list[TextBox]]:
    """Rows of boxes, top to bottom; within a row, left to right.

    A box joins a row when its vertical middle lies within the row's first box's extent
    (half a text height either way), so a slightly tilted scan still lines up.
    """
    rows: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: (b.middle_y, b.left)):
        for row in rows:
            anchor = row[0]
            if abs(box.middle_y - anchor.middle_y) <= max(anchor.height, box.height) / 2:
                row.append(box)
                break
        else:
            rows.append([box])
    rows.sort(key=lambda r: min(b.top for b in r))
    return [sorted(r, key=lambda b: b.left) for r in rows]


def engine_version(name: str) -> str:
    if name == "rapidocr":
        return metadata.version("rapidocr-onnxruntime")
    if name == "tesseract":
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
        first = (out.stdout or out.stderr).split("\n", 1)[0]  # "tesseract 5.3.0"
        return first.split()[-1] if first else "unknown"
    return "unknown"


def _has_rapidocr() -> bool:
    try:
        metadata.version("rapidocr-onnxruntime")
    except metadata.PackageNotFoundError:
        return False
    return True


@cache
def _rapidocr_engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


@register("rapidocr")
def _rapidocr(image) -> list[TextBox]:
    import numpy as np

    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # OpenCV order
    result, _ = _rapidocr_engine()(bgr)
    boxes = []
    for quad, text, score in result or []:  # quad: four [x, y] corners
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        boxes.append(
            TextBox(
                text, round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys)), float(score)
            )
        )
    return boxes


@register("tesseract")
def _tesseract(image) -> list[TextBox]:
    """One box per line tesseract found (its TSV output has a box per word)."""
    if not shutil.which("tesseract"):
        raise InvalidInputError("tesseract is not installed", "apt-get install tesseract-ocr")
    png = io.BytesIO()
    image.save(png, format="PNG")
    out = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "3", "tsv"],
        input=png.getvalue(),
        capture_output=True,
        check=False,
    )
    if out.returncode != 0:
        raise InvalidInputError(f"tesseract failed: {out.stderr.decode(errors='replace').strip()}")
    lines: dict[tuple, list[dict]] = {}
    for row in csv.DictReader(
        io.StringIO(out.stdout.decode()), delimiter="\t", quoting=csv.QUOTE_NONE
    ):
        if row.get("level") == "5" and (row.get("text") or "").strip():
            key = (row["block_num"], row["par_num"], row["line_num"])
            lines.setdefault(key, []).append(row)
    boxes = []
    for words in lines.values():
        left = min(int(w["left"]) for w in words)
        top = min(int(w["top"]) for w in words)
        right = max(int(w["left"]) + int(w["width"]) for w in words)
        bottom = max(int(w["top"]) + int(w["height"]) for w in words)
        conf = sum(float(w["conf"]) for w in words) / len(words) / 100
        boxes.append(TextBox(" ".join(w["text"] for w in words), left, top, right, bottom, conf))
    return boxes
