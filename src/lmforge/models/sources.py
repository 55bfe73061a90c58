"""Where a model comes from: a store name, a local path, a GGUF file, or the embedded default.

`resolve` turns any of them into a model folder; a GGUF file (the default among them) is
converted once into a store artifact, and later calls take that.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from lmforge.errors import NotFoundError
from lmforge.models import formats
from lmforge.models.convert import import_model
from lmforge.models.default import DEFAULT_NAME, default_gguf_path
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
