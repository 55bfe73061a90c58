#!/usr/bin/env bash
# Create .venv in the repository and install lmforge with its dev tools.
#   bash scripts/setup.sh            # lmforge + pytest/ruff
#   EXTRAS=bench bash scripts/setup.sh
# PyTorch is installed first and pinned, so that pip never swaps in another build:
# on this kind of machine `torch==2.13.0` resolves to the CPU wheel shipped on disk; on a
# machine without it, set PIP_INDEX_URL/PIP_EXTRA_INDEX_URL to PyTorch's CPU wheel index
# for a CPU-only box, or leave it to get the CUDA build on a GPU box.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install --quiet "torch==${TORCH_VERSION:-2.13.0}"
fi
$PIP install --quiet -e ".[dev${EXTRAS:+,$EXTRAS}]"
# The web chat's browser test drives Debian's Chromium through Playwright (Playwright's own
# browser download cannot reach its CDN here), so install the system package if it is missing.
# Optional system tools never fail the setup: a failed install prints what it costs, and goes on.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  echo "installing Debian's chromium with apt-get (the web chat's browser tests drive it) ..."
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "warning: could not install Debian's chromium; tests/serve/test_webchat.py needs it" >&2
fi
# `lmforge chat --speak` writes spoken answers with Debian's espeak-ng; tesseract-ocr is the
# second OCR engine for images (the first, rapidocr, comes from PyPI with the vision extra).
if { ! command -v espeak-ng || ! command -v tesseract; } >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  echo "installing Debian's espeak-ng and tesseract-ocr with apt-get (spoken answers, a second OCR engine) ..."
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng tesseract-ocr; } \
    >/dev/null 2>&1 || echo "warning: could not install Debian's espeak-ng/tesseract-ocr; tests/audio and tests/vision need them" >&2
fi
.venv/bin/python -c "import torch, lmforge; print('lmforge ready: torch', torch.__version__, '| cuda:', torch.cuda.is_available())"
