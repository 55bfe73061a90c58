"""Speech in: PocketSphinx (its English model ships in the wheel) on speech made by espeak-ng."""

import builtins
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from lmforge.audio import asr
from lmforge.audio.asr import read_wav, transcribe
from lmforge.errors import InvalidInputError, NotFoundError


def write_wav(path, samples, rate=16000, width=2, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture
def spoken(tmp_path):
    """A WAV of espeak-ng saying a sentence (22050 Hz; scripts/setup.sh installs espeak-ng)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run scripts/setup.sh (apt-get install espeak-ng)")
    path = tmp_path / "q.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "what is the weather today"], check=True)
    return path


def test_pocketsphinx_recognises_espeak_speech(spoken):
    heard = transcribe(spoken)
    assert heard.engine.startswith("pocketsphinx ")
    assert 1.0 < heard.seconds < 4.0
    # PocketSphinx's small model is not exact: "what is the weather today" -> "what is the day"
    assert heard.text.startswith("what is the")


def test_a_local_pocketsphinx_model_folder_is_used(spoken):
    folder = Path(__import__("pocketsphinx").__file__).parent / "model" / "en-us"
    assert "what" in transcribe(spoken, model=folder).text


def test_read_wav_resamples_and_mixes_down(tmp_path):
    t = np.arange(8000) / 8000
    tone = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    stereo = np.stack([tone, tone], axis=1)  # (frames, 2)
    samples, seconds = read_wav(write_wav(tmp_path / "s.wav", stereo, rate=8000, channels=2))
    assert seconds == pytest.approx(1.0) and len(samples) == 16000 and samples.dtype == np.int16
    assert abs(int(samples.max()) - 10000) < 200


def spoken_like(path):
    """A loud enough noise burst: past the silence check, into the recogniser."""
    noise = np.random.default_rng(0).normal(0, 2000, 16000).astype(np.int16)
    return write_wav(path, noise)


def test_bad_audio_is_one_clear_error(tmp_path):
    with pytest.raises(NotFoundError):
        transcribe(tmp_path / "missing.wav")
    mp3 = tmp_path / "q.mp3"
    mp3.write_bytes(b"ID3\x03\x00" + b"\x00" * 100)
    with pytest.raises(InvalidInputError, match="is not a PCM WAV file .* ffmpeg"):
        transcribe(mp3)
    with pytest.raises(InvalidInputError, match="holds no audio"):
        transcribe(write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16)))
    with pytest.raises(InvalidInputError, match="is silent"):
        transcribe(write_wav(tmp_path / "silence.wav", np.zeros(16000, np.int16)))
    with pytest.raises(NotFoundError, match="ASR model folder"):
        transcribe(write_wav(tmp_path / "s.wav", np.zeros(160, np.int16)), model=tmp_path / "none")
    with pytest.raises(InvalidInputError, match="neither a Vosk nor a PocketSphinx model"):
        transcribe(spoken_like(tmp_path / "s.wav"), model=tmp_path)


def test_without_a_recogniser_the_error_says_how_to_add_one(spoken, monkeypatch):
    real_import = builtins.__import__

    def no_pocketsphinx(name, *args, **kwargs):
        if name == "pocketsphinx":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pocketsphinx)
    with pytest.raises(InvalidInputError) as e:
        transcribe(spoken)
    message = str(e.value)
    assert message.startswith("no offline speech recogniser is installed")
    assert "pip install 'lmforge[audio]'" in message and "--asr-model PATH" in message
    assert asr.EXTRA_FIX in message
