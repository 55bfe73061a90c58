"""OCR on images drawn here, reading order, and the pixel description."""

import shutil

import pytest

from lmforge.errors import InvalidInputError
from lmforge.vision import ocr
from lmforge.vision.describe import colour_name, describe, describe_layout, dominant_colours
from lmforge.vision.ocr import TextBox, group_lines, read_text

Image = pytest.importorskip("PIL.Image", reason="needs the vision extra")

ROWS = [("OPENING HOURS", None), ("Monday", "9.00"), ("Saturday", "10.30"), ("Sunday", "closed")]


def test_rapidocr_reads_drawn_text_in_reading_order(lines_image):
    result = read_text(lines_image(ROWS), engine="rapidocr")
    assert result.engine.startswith("rapidocr ")
    rows = [[b.text for b in row] for row in result.lines]
    assert [r[-1] for r in rows[1:]] == ["9.00", "10.30", "closed"]
    assert [r[0] for r in rows[1:]] == ["Monday", "Saturday", "Sunday"]
    assert rows[0][0].replace(" ", "") == "OPENINGHOURS"  # the PP-OCR model may drop the space
    assert all(0.5 < b.confidence <= 1 for b in result.boxes)


def test_tesseract_engine_reads_the_same_image(lines_image):
    image = lines_image(ROWS)
    if shutil.which("tesseract") is None:  # scripts/setup.sh installs it; without it: the error
        with pytest.raises(InvalidInputError, match="apt-get install tesseract-ocr"):
            read_text(image, engine="tesseract")
        return
    result = read_text(image, engine="tesseract")
    text = " ".join(b.text for b in result.boxes)
    assert result.engine.startswith("tesseract ")
    for word in ("OPENING", "Monday", "9.00", "Saturday", "10.30", "closed"):
        assert word in text


def test_a_blank_image_has_no_text():
    assert read_text(Image.new("RGB", (200, 100), "white")).boxes == []


def test_engine_choice_and_the_missing_extra(monkeypatch):
    with pytest.raises(InvalidInputError, match="unknown OCR engine 'paddle'"):
        ocr.available_engine("paddle")
    assert ocr.available_engine() == "rapidocr"
    monkeypatch.setattr(ocr, "_has_rapidocr", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InvalidInputError, match=r"pip install 'lmforge\[vision\]'"):
        ocr.available_engine()


def test_group_lines_joins_rows_and_sorts_columns():
    boxes = [
        TextBox("6.75", 300, 102, 340, 120, 1.0),  # a little lower than its label: same row
        TextBox("TOTAL", 20, 100, 90, 118, 1.0),
        TextBox("SHOP", 20, 10, 90, 28, 1.0),
        TextBox("Milk", 20, 55, 70, 73, 1.0),
        TextBox("1.15", 300, 54, 340, 72, 1.0),
    ]
    assert [[b.text for b in row] for row in group_lines(boxes)] == [
        ["SHOP"],
        ["Milk", "1.15"],
        ["TOTAL", "6.75"],
    ]


def test_colours_are_named_with_their_shares():
    img = Image.new("RGB", (100, 100), (250, 250, 250))
    img.paste((20, 60, 210), (0, 0, 100, 25))  # a blue band over a quarter
    img.paste((230, 30, 30), (0, 90, 100, 100))  # a red strip over a tenth
    colours = dict(dominant_colours(img))
    assert set(colours) == {"white", "blue", "red"}
    assert colours["white"] == pytest.approx(0.65, abs=0.02)
    assert colours["blue"] == pytest.approx(0.25, abs=0.02)
    assert colour_name((255, 250, 60)) == "yellow" and colour_name((10, 10, 10)) == "black"


def test_description_of_a_price_list(lines_image):
    img = lines_image(ROWS + [("Holiday", "11.00")])
    d = describe(img, read_text(img).lines, notes=["resized from 9000x10000 to 1843x2048"])
    assert (d.orientation, d.background) == ("landscape", "white")
    text = d.text()
    assert text.startswith("A landscape image, 420x240 pixels. Main colours: white (")
    assert "5 lines of text" in text and "labels on the left and numbers on the right" in text
    assert text.endswith("Resized from 9000x10000 to 1843x2048.")
    assert describe_layout([], 10, 10) == "No text was found in the image."
