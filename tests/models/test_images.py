"""The one image loader: paths, bytes and data URLs in; every bad input is one clear error."""

import base64
import io

import pytest

from lmforge.errors import InvalidInputError, NotFoundError
from lmforge.models.images import MAX_SIDE, ImageInput, load_image

Image = pytest.importorskip("PIL.Image", reason="needs the vision extra")


def png_bytes(img, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_path_bytes_and_data_url_give_the_same_rgb_image(tmp_path):
    img = Image.new("RGB", (30, 20), (200, 10, 10))
    path = tmp_path / "red.png"
    img.save(path)
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    loaded = [
        load_image(path),
        load_image(str(path)),
        load_image(path.read_bytes()),
        load_image(url),
    ]
    for x in loaded:
        assert isinstance(x, ImageInput) and x.image.mode == "RGB" and x.size == (30, 20)
        assert x.format == "PNG" and x.notes == [] and x.image.getpixel((0, 0)) == (200, 10, 10)
    assert [x.source for x in loaded[2:]] == ["image bytes", "data URL"]
    assert load_image(loaded[0]) is loaded[0]


def test_transparency_is_flattened_on_white_with_a_note():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    x = load_image(png_bytes(img))
    assert x.image.getpixel((5, 5)) == (255, 255, 255) and x.image.getpixel((0, 0)) == (0, 0, 255)
    assert x.notes == ["transparent areas shown on white"]


def test_greyscale_palette_and_16_bit_become_rgb():
    grey16 = Image.new("I;16", (8, 8), 1000)
    grey16.putpixel((0, 0), 60000)
    x = load_image(png_bytes(grey16))
    assert x.image.mode == "RGB" and x.image.getpixel((0, 0)) == (255, 255, 255)
    assert x.image.getpixel((1, 1)) == (0, 0, 0)  # scaled to 8 bits, not clipped to white
    assert load_image(png_bytes(Image.new("P", (4, 4), 3))).image.mode == "RGB"


def test_a_huge_image_is_resized_with_a_note():
    x = load_image(png_bytes(Image.new("RGB", (3 * MAX_SIDE, 300), "white")))
    assert x.size == (MAX_SIDE, 100) and x.original_size == (3 * MAX_SIDE, 300)
    assert x.notes == [
        f"resized from {3 * MAX_SIDE}x300 to {MAX_SIDE}x100 (longest side {MAX_SIDE})"
    ]


def test_jpeg_and_an_animated_gif():
    assert load_image(png_bytes(Image.new("RGB", (16, 16), "blue"), "JPEG")).format == "JPEG"
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert load_image(buf.getvalue()).notes == ["first of 3 frames used"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("hello, not a picture"), "is not an image"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (
            lambda p: p.write_bytes(png_bytes(Image.new("RGB", (64, 64), "red"))[:60]),
            "truncated or damaged",
        ),
        (
            lambda p: p.write_bytes(png_bytes(Image.new("RGB", (8, 8)), "PCX")),
            "is a PCX image, which lmforge does not read",
        ),
        (lambda p: p.mkdir(), "is a folder"),
    ],
    ids=["text-file", "empty", "truncated", "unsupported-format", "folder"],
)
def test_bad_files_are_one_line_errors(tmp_path, make, message):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(InvalidInputError, match=message) as e:
        load_image(path)
    assert "\n" not in str(e.value) and e.value.fix


def test_a_damaged_png_chunk_is_caught():
    data = bytearray(png_bytes(Image.new("RGB", (32, 32), "green")))
    data[-20] ^= 0xFF  # inside the IDAT chunk: its CRC no longer matches
    with pytest.raises(InvalidInputError, match="damaged"):
        load_image(bytes(data))


def test_missing_file_and_bad_data_urls(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InvalidInputError, match="holds text/plain, not an image"):
        load_image("data:text/plain;base64,aGVsbG8=")
    with pytest.raises(InvalidInputError, match="not valid base64"):
        load_image("data:image/png;base64,@@@not-base64@@@")
    with pytest.raises(InvalidInputError, match="not base64-encoded"):
        load_image("data:image/png,rawdata")
    with pytest.raises(InvalidInputError, match="must be a path"):
        load_image(42)
