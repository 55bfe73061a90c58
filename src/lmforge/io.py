"""The bottom of lmforge's file handling: one JSONL reader and one atomic write.

`read_jsonl` turns a bad line into one error naming the file and line; `write_text_atomic`
writes through a temp file and a rename, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError


def read_text(path: Path) -> str:
    """A file's text as UTF-8 (a leading BOM dropped); other bytes are one error with the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{path}:{line}: not UTF-8 text", "save the file as UTF-8"
        ) from None


def read_jsonl(path: Path, fix: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file; a line that is not
    a JSON object is one error naming the file and line, with `fix` as what to do."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidInputError(
                f"{where}: not valid JSON ({err.msg} at column {err.colno})", fix
            ) from None
        if not isinstance(obj, dict):
            raise InvalidInputError(
                f"{where}: expected a JSON object, got {type(obj).__name__}", fix
            )
        yield number, obj


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to a temp file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    """`data` as indented JSON (a final newline), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
