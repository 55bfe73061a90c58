"""`lmforge tune` for a vision-language model: LoRA on the language model's attention.

The text trainer packs token rows and scores them with its own span-aware attention; images
expand into a model-specific number of tokens inside the processor, so they cannot be packed
the same way. This is a focused loop of its own, reached from `tune()` when the base is a
VLM, that shares `TuneConfig`, the learning-rate schedule and the store's adapter artifacts.

Data: chat JSONL whose user turns hold image parts, paths relative to the JSONL file:

    {"messages": [{"role": "user", "content": [{"type": "image", "image": "cat.png"},
                                               {"type": "text", "text": "What is it?"}]},
                  {"role": "assistant", "content": "A cat."}]}

Only the last (assistant) turn is supervised. Each batch goes through the model's processor.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch

from lmforge.errors import InvalidInputError, LmforgeError
from lmforge.io import read_jsonl
from lmforge.models.vlm import prepare, read_vlm
from lmforge.tune.config import TuneConfig

METHODS = ("lora", "dora")
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
LANGUAGE = ("language_model", "text_model")  # where VLMs keep their decoder


def read_rows(path: str | Path) -> list[tuple[list[dict], list]]:
    """(messages in the processor's format, their images) for every JSONL line; checked."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidInputError(f"no data file {path}", "pass --data FILE.jsonl")
    rows = []
    for n, obj in read_jsonl(path, 'one {"messages": [...]} object a line'):
        where = f"{path}:{n}"
        try:
            chat, images = prepare(obj.get("messages"), base=path.parent)
        except LmforgeError as e:
            raise InvalidInputError(f"{where}: {e.problem}", e.fix) from e
        if chat[-1]["role"] != "assistant" or len(chat) < 2:
            raise InvalidInputError(f"{where}: the last message must be the assistant's reply",
                                    "end each conversation with the answer to learn")  # fmt: skip
        if not images:
            raise InvalidInputError(f"{where} has no image",
                                    "give every example an image part, or tune a text model")  # fmt: skip
        rows.append((chat, [im.image for im in images]))
    if not rows:
        raise InvalidInputError(f"{path} holds no examples", "add chat lines")
    return rows


def collate(processor, rows: list[tuple[list[dict], list]]) -> dict:
    """Processor tensors for `rows` with `labels`: -100 except the reply's tokens."""
    full = [processor.apply_chat_template(chat, tokenize=False) for chat, _ in rows]
    prompts = [processor.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)
               for chat, _ in rows]  # fmt: skip
    images = [imgs for _, imgs in rows]
    processor.tokenizer.padding_side = "right"  # the reply's positions start where the prompt ends
    batch = processor(text=full, images=images, return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()  # (B, T)
    labels[batch["attention_mask"] == 0] = -100
    for i, (prompt, imgs) in enumerate(zip(prompts, images, strict=True)):
        n = processor(text=[prompt], images=[imgs], return_tensors="pt")["input_ids"].shape[1]
        labels[i, :n] = -100  # the prompt, with its image tokens
    batch["labels"] = labels
    return dict(batch)


def attention_modules(model, requested: list[str] | None) -> list[str]:
    """Full paths of the language model's attention projections (or `requested` names)."""
    names = set(requested or ATTENTION)
    found = [
        path
        for path, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and path.rsplit(".", 1)[-1] in names
        and any(part in path for part in LANGUAGE)
        and "vision" not in path
    ]
    if not found:
        raise InvalidInputError(
            f"no {', '.join(sorted(names))} layers in this model's language model",
            "pass --target-modules with names of its linear layers",
        )
    return found


def tune_vlm(folder: Path, base_name: str, base_art, config: TuneConfig, store, console):
    """Train a LoRA adapter of the VLM in `folder` on `config.data`; the new artifact."""
    from peft import LoraConfig, get_peft_model

    from lmforge.tune.trainer import lr_at

    if config.method not in METHODS:
        raise InvalidInputError(
            f"a vision-language model is tuned with lora or dora, not {config.method}",
            "pass --method lora",
        )
    if config.fsdp:
        raise InvalidInputError("--fsdp is not built for vision-language models", "drop --fsdp")
    rows = read_rows(config.data)  # bad data fails before the model loads
    model, processor = read_vlm(folder)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    n_held = int(len(rows) * config.eval_fraction) if len(rows) >= 10 else 0
    order = list(range(len(rows)))
    rng.shuffle(order)
    held, train = [rows[i] for i in order[:n_held]], [rows[i] for i in order[n_held:]]
    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=attention_modules(model, config.target_modules),
        use_dora=config.method == "dora",
    )  # fmt: skip
    model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.peak_lr, weight_decay=config.weight_decay)
    per_step = config.micro_batch * config.grad_accum
    total = config.max_steps or math.ceil(len(train) / per_step) * config.epochs
    trainable = sum(p.numel() for p in params)
    console.print(
        f"tune {base_name} -> {config.out} ({config.method}, vision-language): {len(train)} "
        f"examples, {trainable:,} trainable parameters, {total} steps at lr {config.peak_lr:g}"
    )

    def eval_loss() -> float | None:
        if not held:
            return None
        model.eval()
        with torch.no_grad():
            losses = [model(**collate(processor, held[i : i + config.micro_batch])).loss.item()
                      for i in range(0, len(held), config.micro_batch)]  # fmt: skip
        model.train()
        return round(sum(losses) / len(losses), 5)

    history, started, cursor, stream = [], time.perf_counter(), 0, []
    before = eval_loss()
    model.train()
    for step in range(total):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, config.peak_lr, config.warmup)
        optimizer.zero_grad()
        losses = []
        for _ in range(config.grad_accum):
            if cursor + config.micro_batch > len(stream):  # next epoch, reshuffled
                stream = stream[cursor:] + rng.sample(train, len(train))
                cursor = 0
            batch = stream[cursor : cursor + config.micro_batch]
            cursor += config.micro_batch
            loss = model(**collate(processor, batch)).loss
            if not torch.isfinite(loss):
                raise LmforgeError(f"the loss is {loss.item()} at step {step + 1}",
                                   "lower --lr and check the data")  # fmt: skip
            (loss / config.grad_accum).backward()
            losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        history.append({"step": step + 1, "loss": round(sum(losses) / len(losses), 5),
                        "lr": optimizer.param_groups[0]["lr"]})  # fmt: skip
    seconds = round(time.perf_counter() - started, 3)
    after = eval_loss()
    from lmforge.tune.checkpoint import file_digest

    digest = file_digest(config.data)
    # a base given as a path is recorded as its absolute path, so the adapter reloads from it
    parent = base_name if base_art is not None else str(Path(folder).resolve())
    meta_config = {**asdict(config), "data_sha256": digest, "vision": True}
    with store.create(config.out, kind="adapter", step="tune", parent=parent,
                      config=meta_config, overwrite=store.exists(config.out)) as draft:  # fmt: skip
        model.save_pretrained(draft.path / "adapter", safe_serialization=True)
        processor.save_pretrained(draft.path / "adapter")
        draft.meta.update(
            data={"path": str(config.data), "sha256": digest, "examples": len(rows)},
            metrics={"steps": total, "seconds": seconds, "train_loss": history[-1]["loss"],
                     "eval_loss_before": before, "eval_loss": after},
            history=history,
        )  # fmt: skip
        draft.meta["timings"]["train_s"] = seconds
    console.print(f"wrote {config.out}: loss {history[-1]['loss']}, {seconds:.0f} s")
    return store.get(config.out)
