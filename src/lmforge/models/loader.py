"""`load()`: a store name, a local path or nothing (the embedded default) -> a ready `Model`."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from lmforge.errors import NotFoundError
from lmforge.models import formats
from lmforge.models.convert import import_model, read_hf
from lmforge.models.default import DEFAULT_NAME, default_gguf_path
from lmforge.models.model import Model, check_dtype
from lmforge.store import Artifact, Store, check_name


def ensure_default(store: Store | None = None) -> Artifact:
    """The default model's artifact, converted from the shipped GGUF on first use."""
    store = store or Store()
    if store.exists(DEFAULT_NAME):
        return store.get(DEFAULT_NAME)
    return import_model(default_gguf_path(), DEFAULT_NAME, store)


def gguf_artifact_name(path: Path) -> str:
    """A stable store name for a GGUF file: its stem plus a digest of its path, size, mtime."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem.lower()).strip(".-_")[:60] or "gguf"
    return f"{stem}-{hashlib.sha256(key).hexdigest()[:8]}"


def resolve(
    name_or_path: str | Path | None, store: Store | None = None
) -> tuple[Path, str, Artifact | None]:
    """(model folder, display name, artifact or None) for a name, a path, or None."""
    store = store or Store()
    if name_or_path is None or name_or_path in ("", "default"):
        art = ensure_default(store)
        return art.model_dir, art.name, art
    text = str(name_or_path)
    looks_like_path = "/" in text or text.startswith(("~", ".")) or Path(text).suffix == ".gguf"
    if not looks_like_path:
        check_name(text)
        if store.exists(text):
            art = store.get(text)
            return art.model_dir, art.name, art
        if text == DEFAULT_NAME:
            art = ensure_default(store)
            return art.model_dir, art.name, art
        if not Path(text).exists():
            raise NotFoundError(
                f"no artifact or path named {text!r}",
                "run `lmforge models list`, or pass a path to a model folder or .gguf file",
            )
    path = Path(text).expanduser()
    kind = formats.detect(path)
    if kind == "gguf":  # convert once into the store, then reuse
        name = gguf_artifact_name(path)
        art = store.get(name) if store.exists(name) else import_model(path, name, store)
        return art.model_dir, art.name, art
    return path, path.name, None


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
    from lmforge.vision.vlm import load_if_vlm  # image-text-to-text: transformers' generate

    vlm = load_if_vlm(folder, name, artifact, store or Store(), dtype, compile)
    if vlm is not None:
        return vlm
    if artifact is not None and artifact.kind == "adapter":
        from lmforge.tune.merge import apply_adapter

        hf, tok = apply_adapter(artifact, store or Store())
        prefix = None
        if hasattr(hf, "peft_config"):  # prompt/prefix tuning: a fixed key/value prefix
            from lmforge.engine.prefix import virtual_prefix

            prefix, hf = virtual_prefix(hf), hf.get_base_model()
        return Model(
            hf, tok, dtype or "fp32", name=name, artifact=artifact, compile=compile, prefix=prefix
        )
    formats.detect(folder)
    from lmforge.compress.quantize import is_quantized, read_quantized

    if is_quantized(folder):  # the stored integers run as they are; dtype defaults to theirs
        hf, tok, parts, qtype = read_quantized(folder)
        return Model(
            hf, tok, dtype or qtype, name=name, artifact=artifact, compile=compile, quantized=parts
        )
    hf, tok = read_hf(folder, "hf")
    return Model(hf, tok, dtype or "fp32", name=name, artifact=artifact, compile=compile)
