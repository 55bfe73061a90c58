"""The artifact store: one folder per artifact under `$LMFORGE_HOME/store/<name>/`.

An artifact folder holds `artifact.json` (kind, parent, step, config, file hashes, library
versions, timings) and `model/` in Hugging Face layout. Artifacts are written into a
temporary folder beside the store and renamed into place, so a failed step never leaves a
half-written artifact behind. A writer holds an OS lock on its temporary folder until the
rename; a process killed outright (kill -9, power loss) cannot remove its folder, so the next
store write removes every temporary folder whose lock is free and which is past a grace age.
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

from lmforge.energy import EnergyMeter
from lmforge.errors import InvalidInputError, NotFoundError
from lmforge.io import write_text_atomic

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TMP_PREFIX = ".tmp-"
# A temporary folder younger than this is never removed: its writer may be between `mkdtemp`
# and taking the lock. Taking it is two system calls, so a minute is ample.
STALE_AFTER_S = 60.0

try:  # POSIX; elsewhere no folder can be proven abandoned, so none is removed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


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
        self.remove_stale()
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=self.root))
        meter = None
        with _held(tmp):  # till the swap: a folder whose lock is free has a dead writer
            try:
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
                # Every step records its energy: the step's own reading if it took one (tune,
                # distill), else this one over the whole block.
                meter = EnergyMeter().__enter__()
                yield draft
                total = round(time.perf_counter() - started, 3)
                draft.meta["timings"].setdefault("total_s", total)
                meter, running = None, meter
                running.__exit__(None, None, None)
                draft.meta.setdefault("energy", running.result)
                draft.meta["hashes"] = hash_files(tmp)
                _write_json_atomic(tmp / "artifact.json", draft.meta)
                swap_in(tmp, self.root / name)
            except BaseException:
                if meter is not None:  # the step failed: stop metering (a sampling thread)
                    meter.__exit__(None, None, None)
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    def remove_stale(self, older_than_s: float = STALE_AFTER_S) -> list[Path]:
        """Remove the temporary folders left by writers that died; return those removed.

        A folder is removed only when its lock can be taken (no live process holds it) and it
        is older than `older_than_s`, so a folder whose writer has not locked it yet survives.
        """
        if fcntl is None or not self.root.is_dir():
            return []
        removed = []
        now = time.time()
        for entry in os.scandir(self.root):
            if not entry.name.startswith(_TMP_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime < older_than_s:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:  # gone already: its writer finished, or another cleaner was first
                continue
            try:
                if not _try_lock(fd):
                    continue  # a live writer holds it, or this file system cannot tell
                # A writer that finished meanwhile has renamed the folder into the store: the
                # name must still lead to the folder now locked, else it is not ours to remove.
                if not _same_folder(entry.path, fd):
                    continue
                shutil.rmtree(entry.path, ignore_errors=True)  # under the lock: nobody re-takes it
                removed.append(Path(entry.path))
            finally:
                os.close(fd)
        return removed

    def remove(self, name: str) -> None:
        artifact = self.get(name)
        self.remove_stale()
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


@contextlib.contextmanager
def _held(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` for the block; the OS drops it if the process dies.

    The lock is on the folder itself (its file descriptor), so the lock travels with it through
    the rename into the store and no lock file ends up inside the artifact.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY) if fcntl is not None else None
    try:
        if fd is not None:
            # Not being able to lock (a file system without flock) must not stop a write: the
            # cleaner cannot lock such a folder either, so it leaves it alone.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def _try_lock(fd: int) -> bool:
    """Take `fd`'s exclusive lock without waiting: True when taken, False otherwise."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live writer, or no flock on this file system: keep the folder
        return False
    return True


def _same_folder(path: str, fd: int) -> bool:
    """Whether `path` still names the folder open as `fd`."""
    try:
        here, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))
