import json
import shutil

import pytest
import torch

import lmforge
from lmforge import LmforgeError, Store
from lmforge.models.default import default_gguf_path
from lmforge.models.sources import gguf_artifact_name


def test_load_hf_folder_generates(tiny_model_dir):
    model = lmforge.load(str(tiny_model_dir))
    assert isinstance(model, lmforge.Model)
    assert type(model.decoder).__name__ == "NativeDecoder"
    text = model.generate("The quick brown", max_tokens=8)
    assert isinstance(text, str) and text
    assert model.generate(["Paris is", "Rome"], max_tokens=4) == [
        model.generate("Paris is", max_tokens=4),
        model.generate("Rome", max_tokens=4),
    ]


def test_import_then_load_by_name_matches_the_source(tiny_model_dir):
    art = lmforge.import_model(tiny_model_dir, "tiny")
    assert art.meta["step"] == "import" and art.meta["config"]["source_format"] == "hf"
    assert (art.model_dir / "model.safetensors").is_file()
    assert any(k.endswith("model.safetensors") for k in art.meta["hashes"])
    by_name, by_path = lmforge.load("tiny"), lmforge.load(str(tiny_model_dir))
    ids = torch.tensor([by_path.encode("hello, how are you")])
    with torch.no_grad():
        assert torch.equal(by_name.hf_model(ids).logits, by_path.hf_model(ids).logits)
    assert by_name.artifact.name == "tiny"


def test_allow_download_still_loads_store_names_and_paths(tiny_model_dir):
    """Only a hub id (org/name) would be fetched; a store name or a local folder loads as
    it does without the option (the download branch once ran before the store lookup)."""
    lmforge.import_model(tiny_model_dir, "tiny-dl")
    assert lmforge.load("tiny-dl", allow_download=True).artifact.name == "tiny-dl"
    assert lmforge.load(str(tiny_model_dir), allow_download=True).name


def test_chat_uses_the_template_and_streams(tiny_model_dir):
    model = lmforge.load(str(tiny_model_dir))
    msgs = [{"role": "user", "content": "hello"}]
    ids = model.chat_prompt(msgs)
    assert model.tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    whole = model.chat(msgs, max_tokens=12)
    assert "".join(model.chat(msgs, stream=True, max_tokens=12)) == whole


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8", "int4"])
def test_every_dtype_loads_and_runs(tiny_model_dir, dtype):
    model = lmforge.load(str(tiny_model_dir), dtype=dtype)
    assert model.decoder.dtype == dtype
    assert model.complete([model.encode("Rome is")], max_tokens=5)[0].completion_tokens >= 1


# -- bad input: one clear error each ------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(LmforgeError, match="no such file or folder"):
        lmforge.load(str(tmp_path / "nowhere"))


def test_unknown_name():
    with pytest.raises(LmforgeError, match="no artifact or path named 'nope'"):
        lmforge.load("nope")


def test_file_that_is_not_a_model(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with pytest.raises(LmforgeError, match="is not a model"):
        lmforge.load(str(f))


def test_folder_without_config(tmp_path):
    with pytest.raises(LmforgeError, match="no config.json"):
        lmforge.load(str(tmp_path))


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(LmforgeError, match="pickle"):
        lmforge.load(str(tmp_path))


def test_truncated_safetensors(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(LmforgeError, match="truncated or corrupt"):
        lmforge.load(str(bad))


def test_garbage_safetensors_header(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(LmforgeError, match="truncated or corrupt"):
        lmforge.load(str(bad))


def test_gguf_with_bad_magic(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"NOPE" + b"\x00" * 100)
    with pytest.raises(LmforgeError, match="not a GGUF file"):
        lmforge.load(str(f))


def test_truncated_gguf_leaves_no_artifact(tmp_path):
    real = default_gguf_path()
    f = tmp_path / "cut.gguf"
    with real.open("rb") as src:
        f.write_bytes(src.read(5_000_000))  # the header and tensor table, but not the data
    with pytest.raises(LmforgeError, match="truncated or corrupt"):
        lmforge.load(str(f))
    assert Store().list() == []


def test_failed_conversion_leaves_no_artifact(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "no-such-architecture"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LmforgeError, match="could not load"):
        lmforge.import_model(bad, "bad")
    assert not Store().exists("bad")
    assert list(Store().root.iterdir()) == []


def test_bad_dtype(tiny_model_dir):
    with pytest.raises(LmforgeError, match="unknown dtype 'int3'"):
        lmforge.load(str(tiny_model_dir), dtype="int3")


def test_bad_messages(tiny_model_dir):
    model = lmforge.load(str(tiny_model_dir))
    with pytest.raises(LmforgeError, match="bad message"):
        model.chat([{"role": "robot", "content": "hi"}])
    with pytest.raises(LmforgeError, match="non-empty list"):
        model.chat([])


def test_gguf_artifact_name_is_stable(tmp_path):
    f = tmp_path / "My Model.Q4.gguf"
    f.write_bytes(b"GGUF")
    assert gguf_artifact_name(f) == gguf_artifact_name(f)
    assert gguf_artifact_name(f).startswith("my-model.q4-")


def test_compile_is_refused_for_dtypes_it_does_not_cover(tiny_model_dir):
    with pytest.raises(LmforgeError, match="--compile supports fp32, int8, int4, not bf16"):
        lmforge.load(str(tiny_model_dir), dtype="bf16", compile=True)
