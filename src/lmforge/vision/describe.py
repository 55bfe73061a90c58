"""Describe an image from its pixels alone: size, orientation, named colours, text layout.

This is what a text-only model gets to "see" besides the OCR text: plain sentences it can
repeat, e.g. "A portrait image, 400x620 pixels. Colours: white (81%), black (12%).
Text: 9 lines down the middle, set as a two-column table (labels left, numbers right)."
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lmforge.vision.ocr import TextBox

# Reference colours for naming (sRGB). Nearest by a weighted RGB distance; coarse on purpose:
# "dark blue" is what a person would say, not "#1f3a6b".
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "light grey": (200, 200, 200),
    "grey": (128, 128, 128),
    "dark grey": (64, 64, 64),
    "black": (0, 0, 0),
    "red": (220, 30, 30),
    "dark red": (128, 0, 0),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 40),
    "beige": (235, 220, 180),
    "brown": (130, 80, 30),
    "green": (40, 170, 60),
    "dark green": (0, 90, 30),
    "light green": (150, 230, 150),
    "teal": (0, 128, 128),
    "cyan": (0, 220, 230),
    "light blue": (150, 200, 250),
    "blue": (30, 80, 220),
    "dark blue": (10, 30, 110),
    "purple": (120, 50, 170),
    "pink": (245, 160, 200),
    "magenta": (220, 0, 200),
}
MIN_SHARE = 0.03  # colours covering less of the image are not named
NUMBER = re.compile(r"^[-+$€£¥]?\s*\d[\d.,]*\s*[%$€£¥]?$")


@dataclass
class Description:
    """What the pixels and the text boxes show, and the sentences that say it."""

    width: int
    height: int
    orientation: str  # landscape | portrait | square
    colours: list[tuple[str, float]]  # (name, share of pixels), largest first
    background: str  # the name of the largest colour
    layout: str  # one sentence on where the text is and how it is arranged
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        shares = ", ".join(f"{name} ({share:.0%})" for name, share in self.colours)
        parts = [
            f"A {self.orientation} image, {self.width}x{self.height} pixels.",
            f"Main colours: {shares}.",
            self.layout,
        ]
        return " ".join(parts + [n[0].upper() + n[1:] + "." for n in self.notes])


def describe(
    image, lines: list[list[TextBox]] | None = None, notes: list[str] | None = None
) -> Description:
    """Describe an RGB PIL image; `lines` are OCR rows in reading order (see `group_lines`)."""
    w, h = image.size
    ratio = w / h
    orientation = "square" if 0.9 <= ratio <= 1.1 else "landscape" if ratio > 1 else "portrait"
    colours = dominant_colours(image)
    return Description(
        width=w,
        height=h,
        orientation=orientation,
        colours=colours,
        background=colours[0][0] if colours else "unknown",
        layout=describe_layout(lines or [], w, h),
        notes=list(notes or []),
    )


def dominant_colours(image, k: int = 8) -> list[tuple[str, float]]:
    """Named colours covering at least MIN_SHARE of the image, largest share first."""
    small = image.convert("RGB")
    small.thumbnail((160, 160))
    # Median-cut to k colours, then name each; several clusters may share one name.
    quant = small.quantize(colors=k, method=0)
    palette = quant.getpalette()[: 3 * k]
    counts = quant.getcolors() or []
    total = sum(c for c, _ in counts) or 1
    shares: dict[str, float] = {}
    for count, index in counts:
        rgb = tuple(palette[3 * index : 3 * index + 3])
        name = colour_name(rgb)
        shares[name] = shares.get(name, 0.0) + count / total
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    return [(n, s) for n, s in ranked if s >= MIN_SHARE]


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The nearest of NAMED_COLOURS, by the 'redmean' weighted distance (close to perceived)."""
    r1, g1, b1 = rgb

    def distance(ref):
        r2, g2, b2 = ref
        rm = (r1 + r2) / 2
        return (
            (2 + rm / 256) * (r1 - r2) ** 2
            + 4 * (g1 - g2) ** 2
            + (2 + (255 - rm) / 256) * (b1 - b2) ** 2
        )

    return min(NAMED_COLOURS, key=lambda name: distance(NAMED_COLOURS[name]))


def describe_layout(lines: list[list[TextBox]], width: int, height: int) -> str:
    """Where the text sits (thirds of the image) and whether its rows form a table."""
    if not lines:
        return "No text was found in the image."
    boxes = [b for row in lines for b in row]
    top, bottom = min(b.top for b in boxes), max(b.bottom for b in boxes)
    left, right = min(b.left for b in boxes), max(b.right for b in boxes)
    vertical = _span(top / height, bottom / height, ("top", "middle", "bottom"))
    horizontal = _span(left / width, right / width, ("left", "centre", "right"))
    n = len(lines)
    where = f"{n} line{'s' if n != 1 else ''} of text, {vertical}, {horizontal}"
    two_cells = [row for row in lines if len(row) >= 2]
    priced = [row for row in two_cells if NUMBER.match(row[-1].text.strip())]
    if len(two_cells) >= 2 and len(two_cells) >= n / 3:
        kind = "a table"
        if len(priced) >= 0.6 * len(two_cells):
            kind += " of labels on the left and numbers on the right (like a receipt or price list)"
        return f"Text: {where}; {len(two_cells)} rows are set as {kind}."
    return f"Text: {where}."


def _span(start: float, end: float, names: tuple[str, str, str]) -> str:
    """'at the top', 'from the top to the middle' ... for a span given as fractions 0..1."""
    first = names[min(2, int(start * 3))]
    last = names[min(2, int(max(start, end - 1e-9) * 3))]
    if first == last:
        return f"at the {first}" if first != names[1] else f"in the {first}"
    return f"from the {first} to the {last}"
