"""The artifact store: one folder per artifact under `$LMFORGE_HOME/store/<name>/`.

An artifact folder holds `artifact.json` (kind, parent, step, config, file hashes, library
versions, timings) and `model/` in Hugging Face layout. Artifacts are written into a
temporary folder beside the store and renamed into place, so a failed step never leaves a
half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError, NotFoundError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TMP_PREFIX = ".tmp-"


def home() -> Path:
    """The lmforge home folder: `$LMFORGE_HOME`, else `~/.lmforge`."""
    return Path(os.environ.get("LMFORGE_HOME") or Path.home() / ".lmforge").expanduser()


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidInputError(
            f"invalid artifact name {name!r}",
            "use letters, digits, '.', '_' or '-', starting with a letter or digit (max 100)",
        )
    return name


def versions() -> dict[str, str]:
    """Versions of the libraries that shape a result, for `artifact.json`."""
    out = {"python": platform.python_version()}
    for dist in ("lmforge", "torch", "transformers", "safetensors", "gguf"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def hash_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, keyed by its path relative to `folder`."""
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        hashes[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return hashes


@dataclass
class Artifact:
    """One folder of the store, read from its `artifact.json`."""

    name: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "model")

    @property
    def parent(self) -> str | None:
        return self.meta.get("parent")

    @property
    def step(self) -> str | None:
        return self.meta.get("step")

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def size_bytes(self) -> int:
        """Bytes on disk of what the artifact ships: everything but its `evals/` results."""
        evals = self.path / "evals"
        return sum(
            p.stat().st_size for p in self.path.rglob("*") if p.is_file() and evals not in p.parents
        )


class Store:
    """Artifacts on disk. Every write goes through `create`, which is atomic."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else home() / "store"

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / "artifact.json").is_file()

    def get(self, name: str) -> Artifact:
        path = self.path(name)
        meta_file = path / "artifact.json"
        if not meta_file.is_file():
            raise NotFoundError(
                f"no artifact named {name!r} in {self.root}",
                "run `lmforge models list` to see the names, or `lmforge models import PATH --name NAME`",
            )
        return Artifact(name, path, json.loads(meta_file.read_text()))

    def list(self) -> list[Artifact]:
        if not self.root.is_dir():
            return []
        names = sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / "artifact.json").is_file()
        )
        return [self.get(n) for n in names]

    @contextlib.contextmanager
    def create(
        self,
        name: str,
        *,
        kind: str = "model",
        step: str,
        parent: str | None = None,
        config: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Iterator[ArtifactDraft]:
        """Yield a draft whose folder the caller fills; commit it by renaming on success.

        On any exception the temporary folder is removed and nothing appears in the store.
        """
        check_name(name)
        if self.exists(name) and not overwrite:
            raise InvalidInputError(
                f"an artifact named {name!r} already exists",
                "choose another --name, or remove it with `lmforge models rm NAME`",
            )
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=self.root))
        draft = ArtifactDraft(
            tmp,
            {
                "name": name,
                "kind": kind,
                "parent": parent,
                "step": step,
                "config": config or {},
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "versions": versions(),
                "timings": {},
            },
        )
        started = time.perf_counter()
        # Every step records its energy: the step's own reading if it took one (tune, distill),
        # else this one over the whole block. Imported here: the meter lives with the
        # efficiency metric, which store users need not load.
        from lmforge.evaluate.metrics.efficiency import EnergyMeter

        meter = EnergyMeter().__enter__()
        try:
            yield draft
            draft.meta["timings"].setdefault("total_s", round(time.perf_counter() - started, 3))
            meter.__exit__(None, None, None)
            draft.meta.setdefault("energy", meter.result)
            draft.meta["hashes"] = hash_files(tmp)
            _write_json_atomic(tmp / "artifact.json", draft.meta)
            swap_in(tmp, self.root / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, name: str) -> None:
        artifact = self.get(name)
        # Rename first so a crash mid-delete never leaves a half-artifact that looks valid.
        doomed = self.root / f"{_TMP_PREFIX}rm-{name}-{os.getpid()}"
        artifact.path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def update_meta(self, name: str, **fields: Any) -> Artifact:
        """Merge `fields` into an artifact's `artifact.json`, atomically."""
        artifact = self.get(name)
        artifact.meta.update(fields)
        _write_json_atomic(artifact.path / "artifact.json", artifact.meta)
        return artifact


@dataclass
class ArtifactDraft:
    """An artifact being written: fill `path` (e.g. `path / "model"`) and `meta`."""

    path: Path
    meta: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


def swap_in(tmp: Path, target: Path) -> None:
    """Rename folder `tmp` to `target`; an existing `target` is moved aside first, then removed.

    `target` is never half-written: it is the old folder until one rename makes it the new.
    """
    if target.exists():
        old = target.parent / f"{_TMP_PREFIX}old-{target.name}-{os.getpid()}"
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
