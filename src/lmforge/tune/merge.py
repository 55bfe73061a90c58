"""`lmforge merge`: fold an adapter into its base's weights, as a new full model artifact."""

from __future__ import annotations

import json

from lmforge.errors import InvalidInputError
from lmforge.models.adapters import MERGEABLE, adapter_dir, apply_adapter
from lmforge.store import Artifact, Store


def merge(adapter: str, out: str, store: Store | None = None) -> Artifact:
    """Write a full model artifact: the adapter's base with the adapter folded in."""
    store = store or Store()
    art = store.get(adapter)
    if art.kind != "adapter":
        raise InvalidInputError(f"{adapter} is not an adapter", "pass an artifact made by tune")
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
