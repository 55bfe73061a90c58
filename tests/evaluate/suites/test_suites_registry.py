"""Loading bundled suites by name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lmforge.errors import InvalidInputError
from lmforge.evaluate.suites import SUITES, bias, core, load_suite


def test_known_suites():
    assert set(SUITES) == {"core", "bias", "toxicity", "privacy", "quickstart"}
    assert load_suite("core") == core.build()
    assert load_suite("bias") == bias.build()


def test_unknown_suite():
    with pytest.raises(InvalidInputError) as err:
        load_suite("mmlu")
    assert err.value.problem == "unknown suite 'mmlu'"
    assert err.value.fix == "use one of: core, bias, toxicity, privacy, quickstart"


def test_import_is_light():
    code = "import sys, lmforge.evaluate.suites; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
