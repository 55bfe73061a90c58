"""kill -9 during a store write: no half artifact, and the next write clears what was left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmforge
from lmforge.store import Store


def start(*args: str) -> subprocess.Popen:
    """`lmforge ARGS` in its own process, as a user runs it (the store is $LMFORGE_HOME's)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lmforge.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def leftovers(root: Path) -> list[Path]:
    """The store's temporary folders (`.tmp-*`)."""
    with contextlib.suppress(FileNotFoundError):
        return sorted(Path(e.path) for e in os.scandir(root) if e.name.startswith(".tmp-"))
    return []


def kill_while_writing(
    args: list[str], root: Path, prefix: str, timeout: float = 120
) -> Path | None:
    """Start `lmforge ARGS`; the moment its temporary folder `prefix*` appears, kill -9 it.

    The process is stopped (SIGSTOP) first, then the folder is looked at again: only a
    process caught with its folder still there is killed, so the kill lands mid-write.
    Returns the folder left behind; None when the write was done before it was caught.
    """
    proc = start(*args)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = [p for p in leftovers(root) if p.name.startswith(prefix)]
            if found:
                os.kill(proc.pid, signal.SIGSTOP)
                still = [p for p in found if p.is_dir()]
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return still[0] if still else None
            time.sleep(0.0005)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0]
    assert proc.returncode == 0, out
    return None


def test_kill_9_during_quantize_leaves_no_artifact_and_the_next_write_cleans_up(
    tiny_model_dir, lmforge_home
):
    lmforge.import_model(tiny_model_dir, "tiny")
    store = Store()
    left = None
    for attempt in range(5):  # a run that finishes before it is caught proves nothing: again
        out = f"q{attempt}"
        left = kill_while_writing(
            ["quantize", "tiny", "--type", "int8", "--out", out], store.root, f".tmp-{out}-"
        )
        if left is not None:
            break
        assert store.exists(out)  # it ran to the end: a whole artifact, no leftovers
        assert leftovers(store.root) == []
    assert left is not None, "quantize finished five times before its write could be caught"
    assert not store.exists(out) and not (store.root / out).exists()
    assert leftovers(store.root) == [left]  # what kill -9 leaves: nobody could remove it

    # Time passes (the folder is an hour old), then the next write removes what was left.
    then = time.time() - 3600
    os.utime(left, (then, then))
    from lmforge.cli import main

    main(["quantize", "tiny", "--type", "int8", "--out", out])  # in this process: it lives on
    assert leftovers(store.root) == []
    assert store.get(out).meta["step"] == "quantize"
    assert lmforge.load(out).generate("The quick", max_tokens=2) is not None
