import types

import lmforge


def test_exported_members_are_exactly_the_public_ones():
    # what the module itself defines (submodules appear once imported; they are not API)
    defined = {
        n
        for n, v in vars(lmforge).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert defined <= set(lmforge.__all__)
    assert set(dir(lmforge)) == set(lmforge.__all__)
    assert lmforge.__all__ == sorted(lmforge.__all__)
    for name in lmforge.__all__:
        assert not isinstance(getattr(lmforge, name), types.ModuleType)


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, lmforge; lmforge.SamplingParams; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_explain_is_the_subpackage_and_its_config_is_exported():
    # `explain` the function would clash with the subpackage `lmforge.explain` (as `tune`
    # does), so the top level offers ExplainConfig and the function stays in the package
    import lmforge.explain

    assert "explain" not in lmforge.__all__
    assert lmforge.ExplainConfig is lmforge.explain.ExplainConfig
    assert callable(lmforge.explain.explain)
