"""Speech out: espeak-ng writes the answer to a WAV file; the CLI's --audio and --speak."""

import shutil
import subprocess
import wave

import pytest

from lmforge.audio import tts
from lmforge.audio.tts import speak
from lmforge.cli import main
from lmforge.errors import InvalidInputError


def test_speak_writes_a_valid_wav_or_says_how_to_install(tmp_path):
    out = tmp_path / "answer.wav"
    if shutil.which("espeak-ng") is None:  # scripts/setup.sh installs it; without it: the error
        with pytest.raises(InvalidInputError, match="apt-get install espeak-ng"):
            speak("The total is 6.75.", out)
        return
    assert speak("-The total is 6.75.", out) == out  # a leading "-" is text, not an option
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        assert 0.8 < w.getnframes() / w.getframerate() < 5
    assert [p.name for p in tmp_path.iterdir()] == ["answer.wav"]  # no temporary file left


def test_speak_errors(tmp_path, monkeypatch):
    with pytest.raises(InvalidInputError, match="no text to speak"):
        speak("   ", tmp_path / "a.wav")
    with pytest.raises(InvalidInputError, match="does not exist"):
        speak("hi", tmp_path / "no" / "a.wav")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InvalidInputError) as e:
        speak("hi", tmp_path / "a.wav")
    assert str(e.value) == f"speaking needs espeak-ng, which is not installed — {tts.FIX}"


def test_cli_audio_question_and_spoken_answer(tiny_model_dir, tmp_path, capsys):
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run scripts/setup.sh (apt-get install espeak-ng)")
    question, answer = tmp_path / "q.wav", tmp_path / "a.wav"
    subprocess.run(["espeak-ng", "-w", str(question), "what is the weather today"], check=True)
    main(
        [
            "chat",
            str(tiny_model_dir),
            "--audio",
            str(question),
            "--speak",
            str(answer),
            "--max-tokens",
            "8",
        ]
    )
    err = capsys.readouterr().err
    assert "heard (pocketsphinx " in err and "): what is the" in err
    # the random tiny model may answer with only spaces; then --speak says so in one line
    assert answer.exists() or "no text to speak" in err


def test_cli_speak_without_espeak_fails_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as e:
        main(["chat", "no-such-model", "-p", "hi", "--speak", str(tmp_path / "a.wav")])
    assert e.value.code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: speaking needs espeak-ng, which is not installed — {tts.FIX}"
    )
