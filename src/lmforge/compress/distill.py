"""`lmforge distill`: a smaller student trained on its teacher's next-token distributions.

The student (see `compress.student`) is cut from the teacher (K of its layers, evenly
spaced, first and last kept, plus its embeddings, norms and LM head) or given as a config or
model folder with the teacher's tokenizer. It is a real smaller model: it saves, loads with
`lmforge.load` and decodes in the native engine, faster for every layer dropped.

Training reuses `lmforge tune`'s pieces: reading, masking and packing the data (`tune.data`),
the optimizer step with its lr schedule and NaN stop (`tune.trainer.Trainer`), span-by-span
packed attention and the progress bar; only the loss (`student.DistillLoss`) is new.

With `prompts`, the teacher first writes the training text with lmforge's own engine: each
prompt and the teacher's completion become an instruction record (a chat record for chat
prompts), so the loss falls on the teacher's own words.

Every check on the input (the config, names, files, the student's tokenizer) runs before any
weights load. This module imports no torch at the top, so the CLI can read `DistillConfig`.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmforge import quickstart
from lmforge.energy import EnergyMeter
from lmforge.errors import InvalidInputError, LmforgeError, NotFoundError, check_known
from lmforge.store import Artifact, Store, check_name

_GEN_BATCH = 8  # prompts the teacher answers at once


@dataclass
class DistillConfig:
    """Every knob of a distillation run."""

    student_layers: int | None = field(
        default=None, metadata={"help": "Decoder layers K of a student cut from the teacher."}
    )
    student: str | None = field(
        default=None,
        metadata={"help": "A student config.json or model folder (instead of K layers)."},
    )
    layers: list[int] | None = field(
        default=None,
        metadata={"help": "Teacher layers that seed the student (default: evenly spaced)."},
    )
    data: str | None = field(
        default=None,
        metadata={"help": "Training text: chat/instruction/text JSONL, .txt, quickstart."},
    )
    prompts: str | None = field(
        default=None,
        metadata={"help": "Prompts the teacher answers to make the training text (.txt/JSONL)."},
    )
    format: str = field(
        default="auto", metadata={"help": "--data format: chat|instruction|text|auto."}
    )
    max_new_tokens: int = field(default=128, metadata={"help": "--prompts: tokens per answer."})
    sample_temperature: float = field(
        default=0.0, metadata={"help": "--prompts: 0 answers greedily, else samples."}
    )
    temperature: float = field(default=2.0, metadata={"help": "Softening temperature T of the KL."})
    alpha: float = field(
        default=0.5, metadata={"help": "Weight of the KL; 1 - alpha weights the cross-entropy."}
    )
    steps: int | None = field(default=None, metadata={"help": "Optimizer steps (default: epochs)."})
    epochs: int = field(default=1, metadata={"help": "Passes over the data."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    warmup: float = field(default=0.05, metadata={"help": "Warmup, as a share of the steps."})
    batch: int = field(default=4, metadata={"help": "Packed rows per optimizer step."})
    seq_len: int = field(default=512, metadata={"help": "Tokens per packed row."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of data held out to measure KL before and after."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order, sampling and init."})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DistillConfig:
        """A validated config from a mapping (flags, a recipe); unknown keys are errors."""
        check_known(values, cls, "distill")
        return cls(**values).validate()

    def validate(self) -> DistillConfig:
        """Check kinds and ranges; raises InvalidInputError before any work."""
        if (self.student_layers is None) == (self.student is None):
            raise InvalidInputError(
                "give the student as --student-layers K or as --student CONFIG, exactly one",
                "e.g. --student-layers 15 for half of a 30-layer teacher",
            )
        if (self.data is None) == (self.prompts is None):
            raise InvalidInputError(
                "give --data FILE (text to train on) or --prompts FILE (the teacher answers "
                "them), exactly one",
                "e.g. --data quickstart",
            )
        if isinstance(self.layers, str):  # "0,5,9" from a flag
            try:
                self.layers = [int(x) for x in self.layers.split(",") if x.strip()]
            except ValueError:
                raise InvalidInputError(
                    f"layers must be comma-separated integers, got {self.layers!r}",
                    "e.g. --layers 0,4,9",
                ) from None
        if self.layers is not None and self.student is not None:
            raise InvalidInputError(
                "--layers picks teacher layers for --student-layers", "drop --layers"
            )
        _check_int(self, "student_layers", 1, optional=True)
        for name in ("max_new_tokens", "epochs", "batch"):
            _check_int(self, name, 1)
        _check_int(self, "seq_len", 2)
        _check_int(self, "steps", 1, optional=True)
        _check_int(self, "seed", 0)
        _check_float(self, "sample_temperature", 0, 5, "between 0 and 5 (0 = greedy)")
        _check_float(self, "alpha", 0, 1, "between 0 (cross-entropy only) and 1 (KL only)")
        _check_float(self, "warmup", 0, 1, "between 0 and 1")
        _check_float(self, "eval_fraction", 0, 0.99, "in [0, 1), e.g. 0.1")
        for name, example in (("temperature", "2.0"), ("lr", "1e-4")):
            _check_float(self, name, 0, float("inf"), f"positive, e.g. {example}")
            if getattr(self, name) == 0:
                raise InvalidInputError(f"{name} must be positive", f"use e.g. {example}")
        if self.format not in ("auto", "chat", "instruction", "text"):
            raise InvalidInputError(
                f"unknown data format {self.format!r}", "use auto, chat, instruction or text"
            )
        if self.layers is not None and len(self.layers) != self.student_layers:
            raise InvalidInputError(
                f"--layers names {len(self.layers)} layers for a {self.student_layers}-layer student",
                "give exactly --student-layers teacher layers",
            )
        return self


def _check_int(config, name: str, low: int, optional: bool = False) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(
            f"{name} must be an integer >= {low}, got {value!r}", f"fix --{name.replace('_', '-')}"
        )


def _check_float(config, name: str, low: float, high: float, want: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInputError(f"invalid {name}={value!r}", f"{name} must be {want}")


# -- training text ---------------------------------------------------------------------------


def read_prompts(path: str | Path) -> list[str] | list[list[dict]]:
    """Prompts from a .txt file (blank-line-separated) or JSONL of {"prompt"} or {"messages"}."""
    from lmforge.models.model import check_messages
    from lmforge.tune.data import _records, text_field

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such file", "check the path to the prompts")
    prompts, kinds = [], set()
    for line, obj in _records(path):
        where = f"{path}:{line}"
        if "messages" in obj:
            try:
                prompts.append(check_messages(obj["messages"]))
            except InvalidInputError as e:
                raise InvalidInputError(f"{where}: {e.problem}", e.fix) from None
            kinds.add("chat")
        else:
            key = "text" if path.suffix == ".txt" else "prompt"
            prompts.append(text_field(obj, key, where, 'write {"prompt": "..."} per line'))
            kinds.add("raw")
    if len(kinds) > 1:
        raise InvalidInputError(
            f"{path}: both prompt and messages records", "keep one kind per file"
        )
    if not prompts:
        raise InvalidInputError(f"{path}: no prompts", "add at least one prompt")
    return prompts


def teacher_writes(
    model, prompts: list, out: Path, config: DistillConfig, advance=None
) -> tuple[Path, int]:
    """Answer every prompt with the teacher (lmforge's engine); write the records as JSONL.

    Returns (file, records written); empty answers are left out. `advance(n)` is called
    after each batch of n prompts (a progress bar).
    """
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    sampling = {"max_tokens": config.max_new_tokens, "temperature": config.sample_temperature}
    if config.sample_temperature > 0:
        sampling["seed"] = config.seed
    with tmp.open("w") as f:
        for at in range(0, len(prompts), _GEN_BATCH):
            chunk = prompts[at : at + _GEN_BATCH]
            ids = [model.encode(p) if isinstance(p, str) else model.chat_prompt(p) for p in chunk]
            for prompt, done in zip(chunk, model.complete(ids, **sampling), strict=True):
                if not done.text.strip():
                    continue
                if isinstance(prompt, str):
                    record = {"prompt": prompt, "completion": done.text}
                else:
                    record = {"messages": [*prompt, {"role": "assistant", "content": done.text}]}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
            if advance is not None:
                advance(len(chunk))
    if not written:
        raise InvalidInputError(
            "the teacher's answers to every prompt were empty", "give other prompts, or --data"
        )
    tmp.replace(out)
    return out, written


# -- the step --------------------------------------------------------------------------------


def distill(
    teacher: str | None,
    out: str,
    config: DistillConfig,
    store: Store | None = None,
    *,
    quiet: bool = False,
) -> Artifact:
    """Train a smaller student on `teacher`'s distributions; write it as the model artifact `out`.

    `teacher` is a store name, a path, or None for the default model. Every check on the
    input (config, names, tokenizers, files) runs before any weights load.
    """
    import torch
    from rich.console import Console
    from transformers import AutoConfig, AutoTokenizer

    from lmforge.compress import student as st
    from lmforge.models.convert import read_hf
    from lmforge.models.model import Model
    from lmforge.models.sources import resolve
    from lmforge.tune import data as tdata
    from lmforge.tune.attention import using_packed_attention
    from lmforge.tune.checkpoint import file_digest, run_dir
    from lmforge.tune.config import TuneConfig
    from lmforge.tune.trainer import Trainer, _bar

    config.validate()
    console = Console(quiet=quiet)
    store = store or Store()
    check_name(out)
    if store.exists(out):
        raise InvalidInputError(
            f"an artifact named {out!r} already exists", "choose another --out, or remove it"
        )
    folder, teacher_name, teacher_art = resolve(teacher, store)
    if teacher_art is not None and teacher_art.kind == "adapter":
        raise InvalidInputError(
            f"{teacher_name} is an adapter",
            f"run `lmforge merge {teacher_name} --out NAME` and distill that",
        )
    teacher_cfg = AutoConfig.from_pretrained(str(folder))
    tok = AutoTokenizer.from_pretrained(str(folder))
    n_teacher = getattr(teacher_cfg, "num_hidden_layers", None)
    layers = None
    if config.student_layers is not None:
        if not n_teacher:
            raise InvalidInputError(
                f"cannot count the layers of {teacher_name}", "pass --student CONFIG"
            )
        layers = st.check_layers(
            config.layers or st.spaced_layers(n_teacher, config.student_layers), n_teacher
        )
    else:
        student_path, student_weights = st.check_student(config.student, teacher_cfg, tok, store)
    prompts, data = None, config.data
    if config.prompts is not None:
        prompts = read_prompts(config.prompts)
    elif data == "quickstart":  # the bundled fictional-product chat set
        data = str(quickstart.write(run_dir(out) / "quickstart")[0])
    else:
        tdata.detect_format(Path(data))  # a missing or malformed file stops here

    # -- the work starts: weights load ---------------------------------------------------------
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    teacher_hf, tok = read_hf(folder, "hf")
    student = (
        st.make_student(teacher_hf, layers)
        if layers
        else st.load_student(student_path, student_weights)
    )
    generated = None
    if prompts is not None:
        engine = Model(teacher_hf, tok, name=teacher_name)
        target = run_dir(out) / "generated.jsonl"
        with _bar(console) as bar:
            task = bar.add_task("teacher writes", total=len(prompts), info="")
            path, n = teacher_writes(
                engine, prompts, target, config, lambda k: bar.advance(task, k)
            )
        del engine
        data, generated = str(path), n
    examples, stats = tdata.read_examples(data, tok, config.seq_len, config.format)
    train, held = tdata.split(examples, config.eval_fraction, config.seed)
    train_groups = tdata.pack(train, config.seq_len)
    eval_groups = tdata.pack(held, config.seq_len) if held else train_groups[: 4 * config.batch]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    knobs = TuneConfig(
        data=data,
        method="full",
        seq_len=config.seq_len,
        micro_batch=config.batch,
        epochs=config.epochs,
        max_steps=config.steps,
        lr=config.lr,
        warmup=config.warmup,
        eval_fraction=config.eval_fraction,
        seed=config.seed,
    ).validate()
    loss = st.DistillLoss(student, teacher_hf.eval(), config.temperature, config.alpha)
    trainer = Trainer(student.train(), knobs, train_groups, eval_groups, pad_id, loss=loss)
    params = (_params(teacher_hf), _params(student))
    console.print(
        f"distill {teacher_name} ({n_teacher} layers, {params[0] / 1e6:.1f}M) -> {out} "
        f"({student.config.num_hidden_layers} layers, {params[1] / 1e6:.1f}M): "
        f"{stats.examples} {stats.format} examples, {trainer.total_steps} steps, "
        f"T={config.temperature:g}, alpha={config.alpha:g}, lr {config.lr:g}"
    )

    history, tokens_seen = [], 0
    with contextlib.ExitStack() as attention:  # span-by-span attention for both models
        attention.enter_context(using_packed_attention(student))
        attention.enter_context(using_packed_attention(teacher_hf))
        trainer.eval_loss()
        before = trainer.eval_metrics
        train_started = time.perf_counter()
        with EnergyMeter() as energy, _bar(console) as bar:
            handle = bar.add_task(out, total=trainer.total_steps, info="")
            while trainer.state.step < trainer.total_steps:
                try:
                    loss_value, tokens = trainer.train_step()
                except FloatingPointError as e:
                    raise LmforgeError(
                        f"{e}: distillation stopped",
                        "lower --lr or --temperature, or check the data",
                    ) from e
                tokens_seen += tokens
                history.append(
                    {"step": trainer.state.step, "loss": round(loss_value, 5), **trainer.metrics}
                )
                rate = tokens_seen / max(time.perf_counter() - train_started, 1e-9)
                info = f"loss {loss_value:.3f}  kl {trainer.metrics.get('kl', 0):.3f}  {rate:,.0f} tok/s"
                bar.update(handle, completed=trainer.state.step, info=info)
        train_s = time.perf_counter() - train_started
        trainer.eval_loss()
        after = trainer.eval_metrics
    student.eval()

    metrics = {
        "teacher_layers": n_teacher,
        "student_layers": student.config.num_hidden_layers,
        "teacher_parameters": params[0],
        "student_parameters": params[1],
        "steps": trainer.state.step,
        "train_kl": history[-1].get("kl") if history else None,
        "train_ce": history[-1].get("ce") if history else None,
        "kl_before": before.get("eval_kl"),
        "kl_after": after.get("eval_kl"),
        "ce_before": before.get("eval_ce"),
        "ce_after": after.get("eval_ce"),
        "measured_on": "held-out rows" if held else "training rows (nothing held out)",
        "tokens": tokens_seen,
        "seconds": round(train_s, 3),
        "tokens_per_s": round(tokens_seen / max(train_s, 1e-9), 2),
    }
    digest = file_digest(data)
    meta_config = {**asdict(config), "layers": layers, "teacher": teacher_name}
    with store.create(out, step="distill", parent=teacher_name, config=meta_config) as draft:
        student.save_pretrained(draft.model_dir, safe_serialization=True)
        tok.save_pretrained(draft.model_dir)
        draft.meta.update(
            data={"path": data, "sha256": digest, "generated": generated, **asdict(stats)},
            metrics=metrics,
            history=history,
            energy=energy.result,
            model={
                "model_type": student.config.model_type,
                "parameters": params[1],
                "layers": student.config.num_hidden_layers,
                "context": getattr(student.config, "max_position_embeddings", None),
            },
        )
        draft.meta["timings"].update(
            train_s=round(train_s, 3), total_s=round(time.perf_counter() - started, 3)
        )
    return store.get(out)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def print_summary(artifact: Artifact, console=None) -> None:
    """A small table of a distilled artifact: layers, parameters, KL, size, time."""
    from rich.console import Console
    from rich.table import Table

    m = artifact.meta.get("metrics", {})
    energy = artifact.meta.get("energy") or {}
    kl = "-" if m.get("kl_after") is None else f"{m['kl_before']:.4f} -> {m['kl_after']:.4f}"
    table = Table(title=f"distilled {artifact.parent} -> {artifact.name}", show_header=False)
    rows = [
        ("layers", f"{m.get('teacher_layers')} -> {m.get('student_layers')}"),
        (
            "parameters",
            f"{m['teacher_parameters'] / 1e6:.1f}M -> {m['student_parameters'] / 1e6:.1f}M",
        ),
        (f"KL to teacher ({m.get('measured_on')})", kl),
        ("size on disk", f"{artifact.size_bytes() / 2**20:.1f} MB"),
        (
            "training",
            f"{m.get('steps')} steps, {m.get('tokens', 0):,} tokens, {m.get('seconds', 0):.1f} s",
        ),
    ]
    if energy.get("joules") is not None:
        rows.append(("energy", f"{energy['joules']:.0f} J ({energy.get('method')})"))
    for k, v in rows:
        table.add_row(k, v)
    (console or Console()).print(table)
