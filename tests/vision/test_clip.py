"""CLIP: zero-shot classification, a folder index that re-embeds only changed files, eval."""

from __future__ import annotations

import json
import math
import os

import pytest

from lmforge.errors import InvalidInputError, LmforgeError, ModelLoadError


def make_clip(folder, tokenizer):
    """Save a tiny random CLIPModel (28x28 images, 16-dim embeddings) and its processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64,
                bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, image_size=28, patch_size=14)  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(
        CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    ).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, tiny_tokenizer):
    return make_clip(tmp_path_factory.mktemp("tiny-clip"), tiny_tokenizer)


@pytest.fixture(scope="module")
def clip(clip_dir):
    from lmforge.vision import ClipModel

    return ClipModel.load(clip_dir)


@pytest.fixture
def photos(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    colours = {"red": (220, 20, 20), "green": (20, 200, 20), "sub/blue": (20, 20, 220)}
    for name, colour in colours.items():
        Image.new("RGB", (40, 30), colour).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_classify_gives_probabilities(clip, photos):
    probs = clip.classify(photos / "red.png", ["red", "green", "blue"])
    assert set(probs) == {"red", "green", "blue"}
    assert all(0 <= p <= 1 for p in probs.values())
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
    assert list(probs.values()) == sorted(probs.values(), reverse=True)  # most likely first
    assert clip.classify(photos / "red.png", "red, green,blue") == probs


def test_classify_bad_input(clip, photos, tmp_path):
    with pytest.raises(InvalidInputError, match="two labels"):
        clip.classify(photos / "red.png", ["red"])
    with pytest.raises(InvalidInputError, match="repeat"):
        clip.classify(photos / "red.png", ["red", "red"])
    with pytest.raises(InvalidInputError, match="not an image"):
        clip.classify(photos / "notes.txt", ["a", "b"])
    truncated = tmp_path / "cut.png"
    truncated.write_bytes((photos / "red.png").read_bytes()[:40])
    with pytest.raises(InvalidInputError):
        clip.classify(truncated, ["a", "b"])


def test_search_ranks_and_reindexes_only_changes(clip, clip_dir, photos):
    from PIL import Image

    stats = clip.index(photos)
    assert (stats.embedded, stats.kept, stats.removed) == (3, 0, 0)
    hits = clip.search("a red square", k=2)
    assert len(hits) == 2 and hits[0].score >= hits[1].score
    assert all(os.path.isfile(h.path) for h in hits)
    everything = clip.search("a red square", k=10)
    assert sorted(h.path for h in everything) == sorted(
        str(photos / p) for p in ("red.png", "green.png", "sub/blue.png")
    )
    # a fresh model object reads the stored index: nothing re-embedded
    from lmforge.vision import ClipModel

    again = ClipModel.load(clip_dir)
    stats = again.index(photos)
    assert (stats.embedded, stats.kept) == (0, 3)
    assert again.search("a red square", k=10) == everything
    # touched but unchanged: kept (hash compare); changed: re-embedded; deleted: removed
    os.utime(photos / "green.png", ns=(1, 1))
    Image.new("RGB", (40, 30), (250, 250, 0)).save(photos / "red.png")
    (photos / "sub" / "blue.png").unlink()
    stats = again.index(photos)
    assert (stats.embedded, stats.kept, stats.removed) == (1, 1, 1)


def test_index_skips_broken_images(clip, photos):
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    stats = clip.index(photos)
    assert stats.embedded == 3 and len(stats.skipped) == 1 and "broken.png" in stats.skipped[0]
    with pytest.raises(InvalidInputError, match="empty"):
        clip.search("   ")


def test_load_needs_a_clip_folder(tiny_model_dir, tmp_path):
    from lmforge.vision import ClipModel

    with pytest.raises(InvalidInputError, match="--model"):
        ClipModel.load(None)
    with pytest.raises(ModelLoadError, match="not a CLIP"):
        ClipModel.load(tiny_model_dir)
    with pytest.raises(LmforgeError):
        ClipModel.load(tmp_path / "nothing")


def test_zero_shot_eval_writes_a_result(clip, clip_dir, photos, tmp_path):
    from click.testing import CliRunner

    from lmforge.cli import cli

    task = photos / "colours.jsonl"
    rows = [{"image": "red.png", "label": "red"}, {"image": "green.png", "label": "green"},
            {"image": "sub/blue.png", "label": "blue"}]  # fmt: skip
    task.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        cli, ["clip", "eval", str(task), "--model", str(clip_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    acc = doc["tasks"]["colours"]["accuracy"]
    assert acc["n"] == 3 and 0 <= acc["acc"] <= 1 and doc["summary"]["acc"] == acc["acc"]
    assert len(doc["records"]) == 3
    # the evaluation harness's own command takes the same task for a CLIP folder
    again = tmp_path / "again.json"
    result = CliRunner().invoke(
        cli, ["eval", str(clip_dir), "--suite", str(task), "--out", str(again)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(again.read_text())["records"] == doc["records"]


def test_cli_classify_and_search(clip_dir, photos):
    from click.testing import CliRunner

    from lmforge.cli import cli

    runner = CliRunner()
    r = runner.invoke(cli, ["clip", "classify", str(photos / "red.png"), "--labels", "red,blue",
                            "--model", str(clip_dir)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "red" in r.output and "blue" in r.output
    r = runner.invoke(cli, ["clip", "search", str(photos), "--query", "red", "--k", "2",
                            "--model", str(clip_dir)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "indexed 3 images" in r.output and str(photos) in r.output


def test_cli_needs_a_model(photos, capsys):
    from lmforge.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["clip", "classify", str(photos / "red.png"), "--labels", "a,b"])
    assert exit.value.code == 2 and "--model FOLDER" in capsys.readouterr().err
