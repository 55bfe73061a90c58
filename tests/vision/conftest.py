"""Images made here for the tests: text drawn with Pillow's built-in scalable font."""

from __future__ import annotations

import random

import pytest

ITEMS = ["Bread", "Milk", "Apples", "Coffee", "Eggs", "Cheese", "Rice", "Tea", "Butter", "Soap"]
SHOPS = ["CORNER SHOP", "GREEN GROCER", "CITY MARKET", "FRESH FOODS", "THE PANTRY"]


def draw_lines(rows, size=(420, 0), font_size=22, bg="white", fg="black", right_x=320):
    """An image with one row per (left text, right text or None), top to bottom."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    height = size[1] or 40 + 40 * len(rows)
    img = Image.new("RGB", (size[0], height), bg)
    draw = ImageDraw.Draw(img)
    for i, (left, right) in enumerate(rows):
        y = 20 + 40 * i
        draw.text((20, y), left, fill=fg, font=font)
        if right is not None:
            draw.text((right_x, y), right, fill=fg, font=font)
    return img


def make_receipt(seed: int, tax: bool = True):
    """A shop receipt with 3-5 priced items (and subtotal + tax); returns (image, total)."""
    rng = random.Random(seed)
    items = rng.sample(ITEMS, rng.randint(3, 5))
    prices = [rng.randint(50, 1999) for _ in items]  # cents
    rows = [(rng.choice(SHOPS), None), (f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}", None)]
    rows += [(name, f"{p / 100:.2f}") for name, p in zip(items, prices, strict=True)]
    subtotal = sum(prices)
    total = subtotal
    if tax:
        vat = round(subtotal * 0.08)
        total = subtotal + vat
        rows += [("SUBTOTAL", f"{subtotal / 100:.2f}"), ("TAX 8%", f"{vat / 100:.2f}")]
    rows += [("TOTAL", f"{total / 100:.2f}"), ("Thank you!", None)]
    return draw_lines(rows), f"{total / 100:.2f}"


@pytest.fixture(scope="session")
def receipt_factory():
    return make_receipt


@pytest.fixture(scope="session")
def lines_image():
    return draw_lines
