"""CLIP-style dual encoders (`CLIPModel`, SigLIP): zero-shot classification and image search.

`ClipModel.classify` scores an image against text labels (softmax over `logits_per_image`).
`ClipModel.index(folder)` embeds a folder's images into one safetensors file under
`$LMFORGE_HOME/clip-index/` (the embeddings, and in its metadata a JSON index of each file's
path, size, mtime and SHA-256, and the model it was made with), written atomically; a later
call re-embeds only files whose size or mtime changed and whose bytes changed too.
`ClipModel.search(query, k)` ranks the indexed images by cosine similarity to the text.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.errors import InvalidInputError, ModelLoadError, NotFoundError
from lmforge.models import formats
from lmforge.models.images import load_image

CLIP_TYPES = ("clip", "siglip", "siglip2")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
INDEX_VERSION = 1
BATCH = 16  # images embedded per forward pass


def is_clip(config: dict) -> bool:
    return config.get("model_type") in CLIP_TYPES


def is_clip_folder(folder: str | Path) -> bool:
    """True when `folder/config.json` describes a CLIP-style dual encoder."""
    path = Path(folder).expanduser() / "config.json"
    try:
        return path.is_file() and is_clip(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError):
        return False  # formats.detect reports a broken config.json


@dataclass
class Hit:
    path: str
    score: float  # cosine similarity of the image and the query, in [-1, 1]


@dataclass
class IndexStats:
    """What one `index()` call did."""

    embedded: int = 0  # new or changed files, run through the model
    kept: int = 0  # unchanged files, their stored embedding reused
    removed: int = 0  # files gone since the last index
    skipped: list[str] = field(default_factory=list)  # "path: why" for unreadable images


class ClipModel:
    """A dual image/text encoder and its processor, loaded from a local folder."""

    def __init__(self, hf_model, processor, name: str, key: str):
        self.hf_model, self.processor, self.name = hf_model, processor, name
        self.key = key  # identifies the weights: an index made by other weights is rebuilt
        self.entries: list[dict] = []  # the last index: {path, size, mtime_ns, sha256}
        self.embeddings = None  # (N, D) unit vectors, row i for entries[i]

    @classmethod
    def load(cls, folder: str | Path | None) -> ClipModel:
        if not folder:
            raise InvalidInputError(
                "no CLIP model given, and none ships with lmforge",
                "pass --model FOLDER: a local CLIPModel or SigLIP folder (config.json, "
                "*.safetensors, processor files)",
            )
        import torch
        from transformers import AutoModel, AutoProcessor

        path = Path(folder).expanduser()
        formats.detect(path)  # a missing folder, no safetensors, a truncated file: one line
        config = json.loads((path / "config.json").read_text())
        if not is_clip(config):
            raise ModelLoadError(
                f"{path} is a {config.get('model_type')!r} model, not a CLIP-style dual encoder",
                f"pass a folder of one of: {', '.join(CLIP_TYPES)}",
            )
        formats.quiet_transformers()
        try:
            processor = AutoProcessor.from_pretrained(str(path))
            model = AutoModel.from_pretrained(str(path), dtype=torch.float32, use_safetensors=True)
        except Exception as e:
            raise ModelLoadError(
                f"could not load {path} ({type(e).__name__}: {str(e)[:200]})",
                "check that the folder also holds the processor and tokenizer files",
            ) from e
        weights = sorted(path.glob("*.safetensors"))
        stamp = [(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]
        key = hashlib.sha256(json.dumps([str(path.resolve()), stamp]).encode()).hexdigest()[:16]
        return cls(model.eval(), processor, path.name, key)

    # -- embeddings --------------------------------------------------------------------------
    def embed_images(self, images: list):
        """(N, D) unit vectors for images (paths, bytes, data URLs or `ImageInput`s)."""
        import torch

        pixels = [load_image(im).image for im in images]
        with torch.no_grad():
            batch = self.processor(images=pixels, return_tensors="pt")
            out = self.hf_model.get_image_features(pixel_values=batch["pixel_values"])
        return _unit(out)

    def embed_texts(self, texts: list[str]):
        """(N, D) unit vectors for texts."""
        import torch

        with torch.no_grad():
            batch = self.processor(text=texts, return_tensors="pt", padding=_padding(self))
            out = self.hf_model.get_text_features(
                **{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            )
        return _unit(out)

    # -- zero-shot classification ------------------------------------------------------------
    def classify(self, image, labels: list[str], template: str = "a photo of a {}.") -> dict:
        """{label: probability} for `image`, most likely first; the probabilities sum to 1."""
        import torch

        labels = _check_labels(labels)
        if "{}" not in template:
            raise InvalidInputError(
                f"template {template!r} has no {{}}", 'use e.g. "a photo of a {}."'
            )
        pixels = load_image(image).image
        texts = [template.format(label) for label in labels]
        with torch.no_grad():
            batch = self.processor(
                text=texts, images=[pixels], return_tensors="pt", padding=_padding(self)
            )
            logits = self.hf_model(**batch).logits_per_image[0]  # (labels,)
        probs = torch.softmax(logits.double(), dim=-1).tolist()
        return dict(sorted(zip(labels, probs, strict=True), key=lambda kv: -kv[1]))

    # -- the folder index --------------------------------------------------------------------
    def index_path(self, folder: Path) -> Path:
        from lmforge.store import home

        digest = hashlib.sha256(f"{folder.resolve()}|{self.key}".encode()).hexdigest()[:16]
        return home() / "clip-index" / f"{folder.name or 'root'}-{digest}.safetensors"

    def index(self, folder: str | Path) -> IndexStats:
        """Embed the images under `folder` (re-embedding only changed files); save the index."""
        import torch

        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise NotFoundError(f"no folder {folder}", "pass a folder of images")
        old = {e["path"]: (e, row) for e, row in zip(*self._read(folder), strict=True)}
        stats, entries, rows, todo = IndexStats(), [], [], []
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            st = path.stat()
            entry = {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            before = old.get(rel)
            if before and (before[0]["size"], before[0]["mtime_ns"]) == (
                st.st_size,
                st.st_mtime_ns,
            ):
                entries.append(before[0])
                rows.append(before[1])
                stats.kept += 1
                continue
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            if before and before[0]["sha256"] == entry["sha256"]:  # touched, not changed
                entries.append(entry)
                rows.append(before[1])
                stats.kept += 1
                continue
            todo.append((entry, path))
        for start in range(0, len(todo), BATCH):
            chunk = []
            for entry, path in todo[start : start + BATCH]:
                try:
                    chunk.append((entry, load_image(path)))
                except (InvalidInputError, NotFoundError) as e:
                    stats.skipped.append(f"{entry['path']}: {e}")
            if chunk:
                vectors = self.embed_images([im for _, im in chunk])
                entries += [e for e, _ in chunk]
                rows += list(vectors)
                stats.embedded += len(chunk)
        stats.removed = len(set(old) - {e["path"] for e in entries})
        dim = self.hf_model.config.projection_dim if rows == [] else rows[0].shape[0]
        self.entries = entries
        self.embeddings = torch.stack(rows) if rows else torch.zeros(0, dim)
        self.folder = folder
        if stats.embedded or stats.removed or len(entries) != len(old) or not old:
            self._write(folder)
        return stats

    def search(self, query: str, k: int = 5, folder: str | Path | None = None) -> list[Hit]:
        """The `k` images most like `query`, best first (indexes `folder` first, if given)."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("the query is empty", "pass --query TEXT")
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}", "pass --k 5")
        if folder is not None:
            self.index(folder)
        if self.embeddings is None:
            raise InvalidInputError("nothing is indexed", "call index(folder) first")
        if not self.entries:
            return []
        scores = self.embeddings @ self.embed_texts([query])[0]  # (N,)
        top = scores.topk(min(k, len(self.entries)))
        base = self.folder
        return [
            Hit(str(base / self.entries[i]["path"]), round(float(s), 6))
            for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]

    def _read(self, folder: Path) -> tuple[list[dict], list]:
        """The stored (entries, embedding rows) for `folder`, or empty if none or unreadable."""
        path = self.index_path(folder)
        if not path.is_file():
            return [], []
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["index"])
                vectors = f.get_tensor("embeddings")
            if meta["version"] != INDEX_VERSION or meta["model"] != self.key:
                return [], []
            return meta["entries"], list(vectors)
        except Exception:  # a damaged index is rebuilt, not fatal
            return [], []

    def _write(self, folder: Path) -> None:
        """Write the index atomically: a temp file in the same folder, then rename."""
        from safetensors.torch import save_file

        path = self.index_path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": INDEX_VERSION, "model": self.key, "folder": str(folder.resolve()),
                "entries": self.entries}  # fmt: skip
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file(
                {"embeddings": self.embeddings.contiguous()},
                tmp,
                metadata={"index": json.dumps(meta)},
            )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _unit(out):
    """Unit vectors from `get_*_features` (a tensor, or an output whose pooler_output it is)."""
    vectors = out if hasattr(out, "norm") else out.pooler_output  # (N, D)
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _padding(model: ClipModel):
    # SigLIP was trained on texts padded to 64 tokens; CLIP pads to the longest
    return "max_length" if model.hf_model.config.model_type.startswith("siglip") else True


def _check_labels(labels) -> list[str]:
    if isinstance(labels, str):
        labels = labels.split(",")
    labels = [str(x).strip() for x in labels if str(x).strip()]
    if len(labels) < 2:
        raise InvalidInputError(
            "zero-shot classification needs at least two labels", "pass --labels a,b"
        )
    if len(set(labels)) != len(labels):
        raise InvalidInputError("the labels repeat", "pass each label once")
    return labels
