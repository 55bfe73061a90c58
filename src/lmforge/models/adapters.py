"""Adapters stored by `lmforge tune`: a peft folder on top of its base, applied at load time."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.errors import InvalidInputError
from lmforge.models.convert import read_hf
from lmforge.models.sources import resolve
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
    from peft import PeftModel  # heavy (torch, transformers): only when an adapter loads

    if not artifact.parent:
        raise InvalidInputError(f"adapter {artifact.name} records no base", "re-run the tune")
    folder, _, _ = resolve(artifact.parent, store)
    base, tok = read_hf(folder, "hf")
    config = json.loads((adapter_dir(artifact) / "adapter_config.json").read_text())
    model = PeftModel.from_pretrained(base, str(adapter_dir(artifact)))
    if config.get("peft_type") in MERGEABLE and merge:
        model = model.merge_and_unload()
    return model.eval(), tok
