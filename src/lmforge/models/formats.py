"""Recognise and check model files before `transformers` touches them.

Each check turns a confusing library traceback into one line that says what is wrong.
Weights are only ever read from safetensors or GGUF: never from pickle.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from lmforge.errors import ModelLoadError, NotFoundError

GGUF_MAGIC = b"GGUF"


def quiet_transformers() -> None:
    """Silence `transformers`' warnings and progress bars before it reads a folder."""
    from transformers.utils import logging as hf_logging  # heavy: only when a model loads

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def detect(path: Path) -> str:
    """'gguf' for a GGUF file, 'hf' for a Hugging Face folder; raise a clear error otherwise."""
    if not path.exists():
        raise NotFoundError(
            f"no such file or folder: {path}",
            "check the path, or give an artifact name (see `lmforge models list`)",
        )
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(4)
        if head == GGUF_MAGIC:
            return "gguf"
        if path.suffix == ".gguf":
            raise ModelLoadError(
                f"{path} is not a GGUF file (bad magic bytes)", "re-export or re-download it"
            )
        if path.suffix == ".safetensors":
            raise ModelLoadError(
                f"{path} is a bare .safetensors file",
                "pass the folder that holds it together with config.json and the tokenizer files",
            )
        raise ModelLoadError(
            f"{path} is not a model",
            "pass a Hugging Face folder (config.json + *.safetensors) or a .gguf file",
        )
    if not (path / "config.json").is_file():
        if list(path.glob("*.gguf")):
            raise ModelLoadError(f"{path} is a folder of GGUF files", "pass the .gguf file itself")
        raise ModelLoadError(
            f"{path} has no config.json, so it is not a Hugging Face model folder",
            "pass a folder with config.json + *.safetensors, or a .gguf file",
        )
    try:
        json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(
            f"{path / 'config.json'} is not valid JSON ({e})", "fix or replace it"
        ) from e
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        if list(path.glob("*.bin")) or list(path.glob("*.pt")):
            raise ModelLoadError(
                f"{path} holds only pickle weights (.bin/.pt), which lmforge never loads",
                "convert them to safetensors first",
            )
        raise ModelLoadError(f"{path} has no *.safetensors weights", "add the weight files")
    for w in weights:
        check_safetensors(w)
    return "hf"


def check_safetensors(path: Path) -> None:
    """Check a safetensors file's header and that the file holds every byte it declares."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n <= 0 or 8 + n > size:
                raise ValueError("header length runs past the end of the file")
            header = json.loads(f.read(n))
        end = max(
            (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
        )
        if 8 + n + end > size:
            raise ValueError(f"file is {size} bytes, header declares {8 + n + end}")
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ModelLoadError(
            f"{path} is truncated or corrupt ({e})", "re-download or re-export the weights"
        ) from e


def check_gguf(path: Path) -> None:
    """Parse a GGUF file's header and tensor table; catch truncation before a long load."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        size = path.stat().st_size
        for t in reader.tensors:
            if t.data_offset + t.n_bytes > size:
                raise ValueError(f"tensor {t.name} runs past the end of the file")
    except Exception as e:  # gguf raises many kinds of errors on a bad file
        raise ModelLoadError(
            f"{path} is truncated or corrupt ({type(e).__name__}: {e})",
            "re-download or re-export the GGUF file",
        ) from e
