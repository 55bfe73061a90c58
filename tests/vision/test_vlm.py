"""Vision-language models: a tiny random LLaVA (CLIP vision tower + 2-layer Llama) from a folder."""

from __future__ import annotations

import base64
import io
import json

import pytest

import lmforge
from lmforge.errors import InvalidInputError, LmforgeError


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory, tiny_tokenizer, vlm_factory):
    return vlm_factory(tmp_path_factory.mktemp("tiny-llava"), tiny_tokenizer)


@pytest.fixture(scope="module")
def vlm(vlm_dir):
    return lmforge.load(str(vlm_dir))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("pngs")
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        Image.new("RGB", (40, 30), colour).save(folder / f"{name}.png")
    return folder


def test_is_vlm(vlm_dir, tiny_model_dir):
    from lmforge.models.vlm import is_vlm, is_vlm_folder

    assert is_vlm_folder(vlm_dir) and not is_vlm_folder(tiny_model_dir)
    assert not is_vlm({"model_type": "clip", "text_config": {}, "vision_config": {}})


def test_load_returns_a_vision_model(vlm):
    from lmforge.vision import VisionModel

    assert isinstance(vlm, VisionModel) and vlm.can_see
    assert "llava" in repr(vlm)


def test_chat_with_an_image_is_deterministic(vlm, pngs):
    messages = [{"role": "user", "content": [
        {"type": "image", "image": str(pngs / "red.png")}, {"type": "text", "text": "Colour?"},
    ]}]  # fmt: skip
    a = vlm.chat(messages, max_tokens=6)
    assert isinstance(a, str) and a == vlm.chat(messages, max_tokens=6)
    assert "".join(vlm.chat(messages, stream=True, max_tokens=6)).strip() == a


def test_data_url_part_and_text_only_turn(vlm, pngs):
    url = "data:image/png;base64," + base64.b64encode((pngs / "blue.png").read_bytes()).decode()
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Hi"}]
    assert isinstance(vlm.chat([{"role": "user", "content": parts}], max_tokens=3), str)
    assert isinstance(vlm.chat([{"role": "user", "content": "hello"}], max_tokens=3), str)


def test_batch_matches_single(vlm, pngs):
    convs = [
        [{"role": "user", "content": [{"type": "image", "image": str(pngs / f"{c}.png")},
                                      {"type": "text", "text": q}]}]
        for c, q in (("red", "What colour is this?"), ("blue", "Hi"))
    ]  # fmt: skip
    batch = vlm.chat_batch(convs, max_tokens=5)
    assert len(batch) == 2
    assert batch == [vlm.chat(c, max_tokens=5) for c in convs]


def test_chat_with_images_routes_to_the_vlm(vlm, pngs):
    from lmforge.vision import chat_with_images, image_summary

    reply, meta = chat_with_images(
        vlm, [str(pngs / "red.png")], "What?", stream=False, max_tokens=4
    )
    assert isinstance(reply, str) and meta["image_path"] == "vlm"
    assert "1 image seen by the vision-language model (llava)" in image_summary(meta)


def test_bad_inputs(vlm, pngs, tmp_path):
    bad = tmp_path / "not.png"
    bad.write_text("hello")
    for part in (
        {"type": "image", "image": str(bad)},  # not an image
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},  # never fetched
        {"type": "audio", "audio": "x"},  # unknown part
    ):
        with pytest.raises(InvalidInputError):
            vlm.chat([{"role": "user", "content": [part]}], max_tokens=2)
    with pytest.raises(LmforgeError):
        vlm.chat([{"role": "user", "content": [{"type": "image", "image": "missing.png"}]}])
    with pytest.raises(InvalidInputError):
        vlm.chat([{"role": "user", "content": "hi"}], max_tokens=0)


def test_cli_chat_with_image(vlm_dir, pngs):
    from click.testing import CliRunner

    from lmforge.cli import cli

    args = ["chat", str(vlm_dir), "--image", str(pngs / "red.png"), "-p", "Hi", "--max-tokens", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "seen by the vision-language model" in result.output


def test_import_into_the_store(vlm_dir):
    from lmforge.models.convert import import_model

    art = import_model(vlm_dir, "tiny-vlm")
    assert (art.model_dir / "config.json").is_file()
    model = lmforge.load("tiny-vlm")
    assert model.can_see and model.artifact.name == "tiny-vlm"


def test_lora_step_saves_and_reloads(vlm_dir, pngs, tmp_path):
    from lmforge.tune.config import TuneConfig
    from lmforge.tune.trainer import tune

    rows = [
        {"messages": [
            {"role": "user", "content": [{"type": "image", "image": f"{c}.png"},
                                         {"type": "text", "text": "What colour?"}]},
            {"role": "assistant", "content": c},
        ]}
        for c in ("red", "blue", "red", "blue")
    ]  # fmt: skip
    data = pngs / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    config = TuneConfig(data=str(data), out="vlm-lora", max_steps=2, micro_batch=2, rank=4)
    art = tune(str(vlm_dir), config, quiet=True)
    assert art.kind == "adapter" and (art.path / "adapter" / "adapter_config.json").is_file()
    losses = [h["loss"] for h in art.meta["history"]]
    assert len(losses) == 2 and all(x == x and x < 1e4 for x in losses)  # finite
    targets = json.loads((art.path / "adapter" / "adapter_config.json").read_text())
    assert "language_model" in str(targets["target_modules"])
    tuned = lmforge.load("vlm-lora")
    assert tuned.can_see
    msg = [{"role": "user", "content": [{"type": "image", "image": str(pngs / "red.png")}]}]
    assert isinstance(tuned.chat(msg, max_tokens=3), str)


def test_tune_rejects_images_for_a_text_model(tiny_model_dir, pngs, tmp_path):
    from lmforge.tune.config import TuneConfig
    from lmforge.tune.trainer import tune

    data = tmp_path / "d.jsonl"
    row = {"messages": [{"role": "user", "content": [{"type": "image", "image": "x.png"}]},
                        {"role": "assistant", "content": "x"}]}  # fmt: skip
    data.write_text(json.dumps(row))
    with pytest.raises(LmforgeError):
        tune(str(tiny_model_dir), TuneConfig(data=str(data), out="nope", max_steps=1), quiet=True)


def test_a_huge_image_is_resized_with_a_note(vlm):
    from PIL import Image

    from lmforge.vision import chat_with_images

    big = Image.new("RGB", (3000, 40), (0, 120, 0))
    buf = io.BytesIO()
    big.save(buf, "PNG")
    reply, meta = chat_with_images(vlm, [buf.getvalue()], "Hi", stream=False, max_tokens=2)
    assert isinstance(reply, str)
    assert any("resized from 3000x40" in note for note in meta["images"][0]["notes"])
