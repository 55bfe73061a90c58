"""Speech out: write an answer as a WAV file with eSpeak NG (Debian package `espeak-ng`).

Nothing is played: a machine without a sound device is the common case here, and a file
can be played, attached or checked. The WAV is written to a temporary file and renamed, so
a failed run never leaves half a file behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lmforge.errors import InvalidInputError

FIX = "install it with: apt-get install espeak-ng (scripts/setup.sh does this)"


def check_available() -> str:
    """The path of espeak-ng, or a one-line error saying how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise InvalidInputError("speaking needs espeak-ng, which is not installed", FIX)
    return exe


def speak(text: str, wav: str | Path, voice: str = "en", words_per_minute: int = 165) -> Path:
    """Write `text` spoken by espeak-ng to the WAV file `wav`; returns its path."""
    exe = check_available()
    text = text.strip()
    if not text:
        raise InvalidInputError("there is no text to speak", "ask a question that gets an answer")
    out = Path(wav).expanduser()
    if out.is_dir():
        raise InvalidInputError(f"{wav} is a folder", "pass a file name such as answer.wav")
    if not out.parent.exists():
        raise InvalidInputError(f"the folder of {wav} does not exist", "create it first")
    fd, tmp = tempfile.mkstemp(suffix=".wav", dir=out.parent)
    os.close(fd)
    try:
        # Text on stdin, so an answer that starts with "-" is not read as an option.
        run = subprocess.run(
            [exe, "-v", voice, "-s", str(words_per_minute), "-w", tmp, "--stdin"],
            input=text.encode(),
            capture_output=True,
            check=False,
        )
        if run.returncode != 0 or os.path.getsize(tmp) <= 44:  # 44 bytes: a WAV header alone
            error = run.stderr.decode(errors="replace").strip() or "no audio written"
            raise InvalidInputError(
                f"espeak-ng failed: {error}",
                f"check the voice {voice!r} exists (espeak-ng --voices)",
            )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
