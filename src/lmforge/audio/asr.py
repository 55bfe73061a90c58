"""Speech in: turn a WAV file into text with a recogniser whose model is already on the machine.

The default engine is CMU PocketSphinx: the PyPI wheel `pocketsphinx` ships its US-English
acoustic model, language model and dictionary, so it runs offline
(`pip install 'lmforge[audio]'`). It is small and fast, and makes mistakes on free speech
("total" may come out as "toll"). A better local model can be named with `model=` (the
CLI's `--asr-model PATH`): a Vosk model folder (needs `pip install vosk`) or a PocketSphinx
model folder (an acoustic-model folder, a `.lm.bin` and a `.dict`).
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lmforge.errors import InvalidInputError, NotFoundError

EXTRA_FIX = (
    "install the offline recogniser with: pip install 'lmforge[audio]' "
    "(pocketsphinx ships its English model), or pass --asr-model PATH to a local Vosk model"
)
RATE = 16000  # both engines take 16 kHz mono 16-bit PCM
SILENCE_RMS = 50  # int16 units: about -56 dBFS, far below speech at any sane recording level


@dataclass(frozen=True)
class Transcript:
    text: str
    engine: str  # "pocketsphinx 5.1.1"
    seconds: float  # length of the audio


def transcribe(path: str | Path, model: str | Path | None = None) -> Transcript:
    """The words spoken in the WAV file `path`; `model` a local Vosk/PocketSphinx folder."""
    folder = None if model is None else Path(model).expanduser()
    if folder is not None and not folder.is_dir():
        raise NotFoundError(
            f"ASR model folder {model} does not exist", "pass a Vosk or PocketSphinx model folder"
        )
    samples, seconds = read_wav(path)
    rms = float((samples.astype("float64") ** 2).mean() ** 0.5)
    if rms < SILENCE_RMS:  # the decoder "hears" a word or two in pure silence
        raise InvalidInputError(
            f"{path} is silent", "record the question again, closer to the microphone"
        )
    if folder is not None:
        if (folder / "am" / "final.mdl").exists() or (folder / "conf" / "model.conf").exists():
            text, engine = _vosk(samples, folder)
        else:
            text, engine = _pocketsphinx(samples, folder)
    else:
        text, engine = _pocketsphinx(samples, None)
    text = " ".join(text.split())
    if not text:
        raise InvalidInputError(
            f"no speech was recognised in {path}",
            "record the question again, closer to the microphone",
        )
    return Transcript(text=text, engine=engine, seconds=seconds)


def read_wav(path: str | Path):
    """16 kHz mono int16 samples (a numpy array) of a PCM WAV file, and its length in seconds."""
    import numpy as np

    path = Path(path).expanduser()
    if not path.exists():
        raise NotFoundError(f"audio file {path} does not exist", "check the path")
    fix = "convert it to WAV, e.g. ffmpeg -i in.mp3 -ac 1 -ar 16000 out.wav"
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        reason = str(e) or "it ends too early"
        raise InvalidInputError(f"{path} is not a PCM WAV file ({reason})", fix) from e
    if width not in (1, 2, 4) or rate <= 0:
        raise InvalidInputError(
            f"{path} has {8 * width}-bit samples at {rate} Hz, which is not read", fix
        )
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    x = np.frombuffer(raw[: len(raw) // (width * channels) * width * channels], dtype=dtype)
    x = x.astype(np.float64)
    if width == 1:
        x = (x - 128) * 256
    elif width == 4:
        x = x / 65536
    x = x.reshape(-1, channels).mean(axis=1)  # (frames,) mono
    if len(x) == 0:
        raise InvalidInputError(f"{path} holds no audio", "record the question again")
    seconds = len(x) / rate
    if rate != RATE:  # linear interpolation is enough for speech recognition
        n = max(1, round(len(x) * RATE / rate))
        x = np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x)
    return np.clip(x, -32768, 32767).astype(np.int16), seconds


def _pocketsphinx(samples, folder: Path | None) -> tuple[str, str]:
    try:
        from pocketsphinx import Decoder
    except ImportError as e:
        raise InvalidInputError("no offline speech recogniser is installed", EXTRA_FIX) from e
    options = {"samprate": RATE, "loglevel": "FATAL"}
    if folder is not None:
        hmm = [p for p in folder.iterdir() if p.is_dir() and (p / "mdef").exists()]
        # a word language model, not the phone one (en-us-phone.lm.bin) that may sit beside it
        lms = sorted(folder.glob("*.lm.bin"), key=lambda p: ("phone" in p.name, p.name))
        dicts = sorted(folder.glob("*.dict"))
        if (folder / "mdef").exists():
            hmm = [folder]
        if not hmm:
            raise InvalidInputError(
                f"{folder} is neither a Vosk nor a PocketSphinx model folder",
                "pass a folder with am/final.mdl (Vosk) or an acoustic model, *.lm.bin and *.dict",
            )
        options["hmm"] = str(hmm[0])
        if lms:
            options["lm"] = str(lms[0])
        if dicts:
            options["dict"] = str(dicts[0])
    decoder = Decoder(**options)
    decoder.start_utt()
    decoder.process_raw(samples.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return (hyp.hypstr if hyp else ""), f"pocketsphinx {metadata.version('pocketsphinx')}"


def _vosk(samples, folder: Path) -> tuple[str, str]:
    try:
        import vosk
    except ImportError as e:
        raise InvalidInputError(
            f"{folder} is a Vosk model, but vosk is not installed", "pip install vosk"
        ) from e
    vosk.SetLogLevel(-1)
    recogniser = vosk.KaldiRecognizer(vosk.Model(str(folder)), RATE)
    recogniser.AcceptWaveform(samples.tobytes())
    text = json.loads(recogniser.FinalResult()).get("text", "")
    return text, f"vosk {metadata.version('vosk')} ({folder.name})"
