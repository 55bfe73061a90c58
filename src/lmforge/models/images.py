"""The one image loader of lmforge: a path, bytes or a data URL in, a checked RGB image out.

Every image that reaches a model (OCR, a VLM, CLIP) comes through `load_image`, so bad input
is caught in one place with one clear line: a file that is not an image, a truncated one, a
format we do not read, a decompression bomb. Large images are scaled down (with a note).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.errors import InvalidInputError, NotFoundError

EXTRA_FIX = "install the image extra with: pip install 'lmforge[vision]'"
MAX_SIDE = 2048  # the longest side an image keeps; larger ones are resized (a note says so)
# Formats read; others Pillow may identify (EPS needs Ghostscript, PSD is partial) are refused.
SUPPORTED = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "TGA")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<b64>;base64)?,(?P<data>.*)$", re.S)


@dataclass
class ImageInput:
    """A checked image ready for a model, and where it came from."""

    image: object  # PIL.Image.Image, mode RGB
    source: str  # the path, "data URL" or "bytes"
    format: str  # the file's format as Pillow named it: PNG, JPEG ...
    original_size: tuple[int, int]  # (width, height) before any resize
    notes: list[str] = field(default_factory=list)  # what was changed: resized, alpha removed...

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def pillow():
    """`PIL.Image`, or a one-line error naming the extra to install."""
    try:
        from PIL import Image
    except ImportError as e:
        raise InvalidInputError(
            "reading images needs Pillow, which is not installed", EXTRA_FIX
        ) from e
    return Image


def load_image(src: str | Path | bytes | ImageInput, max_side: int = MAX_SIDE) -> ImageInput:
    """Open `src` (a file path, raw bytes, or a `data:image/...;base64,` URL) as RGB.

    Raises `NotFoundError` for a missing file and `InvalidInputError` for anything that is not
    a readable image of a supported format.
    """
    if isinstance(src, ImageInput):
        return src
    data, source = _read_bytes(src)
    return decode_image(data, source, max_side=max_side)


def decode_image(data: bytes, source: str, max_side: int = MAX_SIDE) -> ImageInput:
    """Check and decode image bytes; `source` names them in messages."""
    Image = pillow()
    from PIL import ImageOps, UnidentifiedImageError

    fix_any = f"pass a {', '.join(SUPPORTED[:6])} image"
    if not data:
        raise InvalidInputError(f"{source} is empty (0 bytes)", fix_any)
    # Pass 1: identify and verify the file's structure (checksums, chunk order) without
    # decoding the pixels. verify() leaves the image unusable, so it is opened again below.
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or "unknown"
            if fmt not in SUPPORTED:
                raise InvalidInputError(
                    f"{source} is a {fmt} image, which lmforge does not read", fix_any
                )
            probe.verify()
    except UnidentifiedImageError as e:
        raise InvalidInputError(
            f"{source} is not an image (Pillow cannot identify it)", fix_any
        ) from e
    except Image.DecompressionBombError as e:
        raise InvalidInputError(
            f"{source} is too large to decode safely ({e})", "pass a smaller image"
        ) from e
    except InvalidInputError:
        raise
    except Exception as e:  # SyntaxError, OSError, struct.error... from a broken file
        raise InvalidInputError(
            f"{source} is a truncated or damaged {_fmt(data)} file ({e})", fix_any
        ) from e
    # Pass 2: decode the pixels; a truncated file fails here ("image file is truncated").
    try:
        img = Image.open(io.BytesIO(data))
        if fmt == "JPEG":  # let the decoder skip detail we would throw away anyway
            img.draft("RGB", (max_side, max_side))
        img.load()
    except Image.DecompressionBombError as e:
        raise InvalidInputError(
            f"{source} is too large to decode safely ({e})", "pass a smaller image"
        ) from e
    except Exception as e:
        raise InvalidInputError(
            f"{source} is a truncated or damaged {fmt} file ({e})", fix_any
        ) from e

    original = img.size
    notes: list[str] = []
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"first of {img.n_frames} frames used")
    if min(img.size) < 1:
        raise InvalidInputError(f"{source} has no pixels ({img.size[0]}x{img.size[1]})", fix_any)
    if _exif_orientation(img) not in (None, 1):  # a phone photo taken sideways
        img = ImageOps.exif_transpose(img)
        notes.append("rotated upright from its EXIF orientation")
    img = _to_rgb(img, notes)
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        new = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
        notes.append(
            f"resized from {original[0]}x{original[1]} to {new[0]}x{new[1]} (longest side {max_side})"
        )
        img = img.resize(new, Image.Resampling.LANCZOS)
    return ImageInput(image=img, source=source, format=fmt, original_size=original, notes=notes)


def _read_bytes(src: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(src, bytes | bytearray | memoryview):
        return bytes(src), "image bytes"
    if isinstance(src, str) and src.startswith("data:"):
        return _data_url_bytes(src), "data URL"
    if not isinstance(src, str | Path):
        raise InvalidInputError(
            f"an image must be a path, bytes or a data URL, not {type(src).__name__}",
            "pass a file path",
        )
    path = Path(src).expanduser()
    if not path.exists():
        raise NotFoundError(f"image {src} does not exist", "check the path")
    if path.is_dir():
        raise InvalidInputError(f"image {src} is a folder", "pass an image file")
    return path.read_bytes(), str(src)


def _data_url_bytes(url: str) -> bytes:
    m = _DATA_URL.match(url)
    fix = "use data:image/png;base64,<base64 of the file>"
    if not m:
        raise InvalidInputError("the data URL is malformed", fix)
    mime = m["mime"] or "text/plain"
    if not mime.startswith("image/"):
        raise InvalidInputError(f"the data URL holds {mime}, not an image", fix)
    if not m["b64"]:
        raise InvalidInputError("the image data URL is not base64-encoded", fix)
    try:
        return base64.b64decode(re.sub(r"\s+", "", m["data"]), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInputError(f"the image data URL is not valid base64 ({e})", fix) from e


def _to_rgb(img, notes: list[str]):
    """RGB, with transparency flattened onto white (text on a transparent PNG stays legible)."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent areas shown on white")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit/float greyscale: scale to 8 bits, or convert() would clip to white
        import numpy as np

        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype("uint8"), "L").convert("RGB")
    return img.convert("RGB")


def _exif_orientation(img) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:
        return None


def _fmt(data: bytes) -> str:
    """A name for a file's type from its first bytes, for error messages."""
    for magic, name in (
        (b"\x89PNG", "PNG"),
        (b"\xff\xd8", "JPEG"),
        (b"GIF8", "GIF"),
        (b"BM", "BMP"),
    ):
        if data.startswith(magic):
            return name
    return "image"
