"""`load()`: a store name, a local path or nothing (the embedded default) -> a ready `Model`."""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import InvalidInputError
from lmforge.models import formats
from lmforge.models.adapters import apply_adapter
from lmforge.models.convert import read_hf
from lmforge.models.model import Model, check_dtype
from lmforge.models.quantized import is_quantized, read_quantized
from lmforge.models.sources import resolve
from lmforge.models.vlm import VisionModel, is_vlm_folder
from lmforge.store import Store


def load(
    name_or_path: str | Path | None = None,
    dtype: str | None = None,
    *,
    store: Store | None = None,
    allow_download: bool = False,
    compile: bool = False,
) -> Model:
    """Load a model by store name, local path (HF folder or .gguf), or the default (None).

    `dtype` (fp32, bf16, int8, int4): None means fp32, or a quantized artifact's own type.

    `compile=True` compiles the batch-1 decode step (fp32/int8/int4): ~1 minute once, then faster
    decoding. `allow_download=True` lets a hub id (`org/name`) that is not a local path be fetched by
    `transformers`; it is off by default and never used in tests.
    """
    if dtype is not None:
        check_dtype(dtype)
    # only a hub id (org/name, not a local path) is fetched: store names and the default
    # never contain a slash, so they are looked up as without allow_download
    hub_id = name_or_path is not None and str(name_or_path).count("/") == 1
    if allow_download and hub_id and not Path(str(name_or_path)).expanduser().exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(name_or_path))
        hf = AutoModelForCausalLM.from_pretrained(str(name_or_path), use_safetensors=True)
        return Model(hf.eval(), tok, dtype or "fp32", name=str(name_or_path), compile=compile)
    folder, name, artifact = resolve(name_or_path, store)
    vlm = load_if_vlm(folder, name, artifact, store or Store(), dtype, compile)
    if vlm is not None:
        return vlm
    if artifact is not None and artifact.kind == "adapter":
        hf, tok = apply_adapter(artifact, store or Store())
        prefix = None
        if hasattr(hf, "peft_config"):  # prompt/prefix tuning: a fixed key/value prefix
            from lmforge.engine.prefix import virtual_prefix  # torch, only for these adapters

            prefix, hf = virtual_prefix(hf), hf.get_base_model()
        return Model(
            hf, tok, dtype or "fp32", name=name, artifact=artifact, compile=compile, prefix=prefix
        )
    formats.detect(folder)
    if is_quantized(folder):  # the stored integers run as they are; dtype defaults to theirs
        hf, tok, parts, qtype = read_quantized(folder)
        return Model(
            hf, tok, dtype or qtype, name=name, artifact=artifact, compile=compile, quantized=parts
        )
    hf, tok = read_hf(folder, "hf")
    return Model(hf, tok, dtype or "fp32", name=name, artifact=artifact, compile=compile)


def load_if_vlm(folder: Path, name: str, artifact, store, dtype: str | None, compile=False):
    """A `VisionModel` when `folder` (or an adapter artifact's base) is a VLM, else None.

    `lmforge.load` calls this first, so a VLM folder, store artifact or LoRA adapter of one
    loads like any other model.
    """
    adapter = None
    if artifact is not None and artifact.kind == "adapter":
        if not artifact.parent:
            return None
        folder, _, _ = resolve(artifact.parent, store)
        adapter = artifact.path / "adapter"
    if not is_vlm_folder(folder):
        return None
    if dtype not in (None, "fp32"):
        raise InvalidInputError(
            f"vision-language models run in fp32 only, not {dtype}", "drop --dtype"
        )
    if compile:
        raise InvalidInputError(
            "--compile is for the native text engine; a vision-language model decodes with "
            "transformers' generate",
            "drop --compile",
        )
    return VisionModel.from_folder(folder, name=name, artifact=artifact, adapter=adapter)
