"""Bring a model into the store: a GGUF file or a Hugging Face folder -> fp32 safetensors."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

from lmforge.errors import ModelLoadError
from lmforge.models import formats
from lmforge.models.formats import quiet_transformers
from lmforge.models.quantized import is_quantized, read_quantized
from lmforge.models.vlm import is_vlm_folder, read_vlm
from lmforge.store import Artifact, Store


def read_hf(source: Path, kind: str):
    """Load (model, tokenizer) from a checked source on the CPU in fp32; never via pickle."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    if kind == "hf" and is_quantized(source):  # lmforge quantize's folder
        return read_quantized(source)[:2]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            if kind == "gguf":
                folder, fname = str(source.parent), source.name
                tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
                model = AutoModelForCausalLM.from_pretrained(
                    folder, gguf_file=fname, dtype=torch.float32
                )
            else:
                tokenizer = AutoTokenizer.from_pretrained(str(source))
                model = AutoModelForCausalLM.from_pretrained(
                    str(source), dtype=torch.float32, use_safetensors=True
                )
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(
            f"could not load a causal language model from {source} ({type(e).__name__}: {str(e)[:200]})",
            "check that it is a complete text-generation model",
        ) from e
    return model.eval(), tokenizer


def _plain_copy(model):
    """Rebuild a GGUF-loaded model from its config and weights (save_pretrained refuses it)."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    return plain.eval()


def import_model(
    source: Path | str, name: str, store: Store | None = None, overwrite: bool = False
) -> Artifact:
    """Convert `source` into the store artifact `name` (fp32 safetensors + tokenizer), atomically."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    store = store or Store()
    source = Path(source).expanduser().resolve()
    kind = formats.detect(source)
    if kind == "gguf":
        formats.check_gguf(source)
    size = (
        source.stat().st_size
        if source.is_file()
        else sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    )
    config = {"source": str(source), "source_format": kind, "source_bytes": size, "dtype": "fp32"}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with (
        store.create(name, step="import", config=config, overwrite=overwrite) as draft,
        Progress(*columns, transient=True) as progress,
    ):
        timings = draft.meta["timings"]
        task = progress.add_task(f"reading {source.name} ({size / 1e6:.0f} MB)", total=3)
        t = time.perf_counter()
        if kind == "hf" and is_vlm_folder(source):  # the processor is saved as the tokenizer
            model, tokenizer = read_vlm(source)
        else:
            model, tokenizer = read_hf(source, kind)
        timings["read_s"] = round(time.perf_counter() - t, 3)
        progress.update(task, advance=1, description="writing fp32 safetensors")
        t = time.perf_counter()
        if kind == "gguf":
            model = _plain_copy(model)
        model.save_pretrained(draft.model_dir, safe_serialization=True)
        timings["write_s"] = round(time.perf_counter() - t, 3)
        progress.update(task, advance=1, description="writing tokenizer")
        tokenizer.save_pretrained(draft.model_dir)
        progress.update(task, advance=1)
        draft.meta["model"] = {
            "model_type": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()),
            "layers": getattr(model.config, "num_hidden_layers", None),
            "context": getattr(model.config, "max_position_embeddings", None),
        }
    return store.get(name)
