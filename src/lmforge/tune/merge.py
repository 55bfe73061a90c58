"""Adapters at load time and `lmforge merge`: fold an adapter into its base's weights."""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import InvalidInputError
from lmforge.store import Artifact, Store

MERGEABLE = ("LORA", "IA3")  # DoRA is LoRA with use_dora; prompt/prefix add tokens instead


def adapter_dir(artifact: Artifact) -> Path:
    return artifact.path / "adapter"


def apply_adapter(artifact: Artifact, store: Store, merge: bool = True):
    """(model, tokenizer) of an adapter artifact: its base's weights with the adapter on.

    LoRA, DoRA and IA3 fold into the weights (`merge_and_unload`), so the native engine runs
    the result at base speed. Prompt and prefix tuning cannot fold into weights; their
    model stays a `PeftModel`.
    """
    import json

    from peft import PeftModel

    from lmforge.models.convert import read_hf
    from lmforge.models.loader import resolve

    if not artifact.parent:
        raise InvalidInputError(f"adapter {artifact.name} records no base", "re-run the tune")
    folder, _, _ = resolve(artifact.parent, store)
    base, tok = read_hf(folder, "hf")
    config = json.loads((adapter_dir(artifact) / "adapter_config.json").read_text())
    model = PeftModel.from_pretrained(base, str(adapter_dir(artifact)))
    if config.get("peft_type") in MERGEABLE and merge:
        model = model.merge_and_unload()
    return model.eval(), tok


def merge(adapter: str, out: str, store: Store | None = None) -> Artifact:
    """Write a full model artifact: the adapter's base with the adapter folded in."""
    store = store or Store()
    art = store.get(adapter)
    if art.kind != "adapter":
        raise InvalidInputError(f"{adapter} is not an adapter", "pass an artifact made by tune")
    import json

    peft_type = json.loads((adapter_dir(art) / "adapter_config.json").read_text())["peft_type"]
    if peft_type not in MERGEABLE:
        raise InvalidInputError(
            f"a {peft_type.lower()} adapter adds virtual tokens and cannot fold into weights",
            "load the adapter artifact itself (lmforge chat NAME), or tune with lora/dora/ia3",
        )
    model, tok = apply_adapter(art, store)
    with store.create(out, step="merge", parent=adapter, config={"peft_type": peft_type}) as d:
        model.save_pretrained(d.model_dir, safe_serialization=True)
        tok.save_pretrained(d.model_dir)
    return store.get(out)
