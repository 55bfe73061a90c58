"""LoRA fine-tuning speed and memory: lmforge vs the Hugging Face `Trainer` + `peft`, side by side.

    python benchmarks/tune.py [--steps 10] [--batch 8] [--seq-len 256] [--repeats 1]
                              [--precision fp32|bf16] [--out path]

The same LoRA run (rank 16, alpha 32, dropout 0.05, every linear layer of the decoder
blocks, lr 2e-4 cosine; fp32, or with --precision bf16 the frozen base in bf16 for both:
lmforge's `--precision bf16`, and HF with the model loaded in bf16 plus `bf16=True`) trains the default model on the quickstart chat set, once
through `lmforge.tune.trainer.tune()` (packed rows, its defaults) and once through
`transformers.Trainer` on a `peft` model (one example per row, `DataCollatorForSeq2Seq`,
the usual recipe). Both read the very same tokens and loss masks
(`lmforge.tune.data.read_examples`). Each engine runs in a subprocess of its own, so its
peak memory is its alone. Writes JSON (see benchmarks/README.md).
"""

from __future__ import annotations

import os

# Before anything imports datasets / transformers / huggingface_hub: never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from common import machine_info as common_machine_info
from common import summary, write_json  # benchmarks/common.py (the script folder is on sys.path)

from lmforge.tune.preflight import proc_status_mb, reset_peak_memory

LMF, HF = "lmforge", "hf_trainer_peft"
ENGINES = (LMF, HF)
LORA = {"rank": 16, "alpha": 32, "dropout": 0.05}
LR = 2e-4
WARMUP_SHARE = 0.05  # of the steps: lmforge's default, and HF's warmup_steps as a ratio
SEED = 0
TARGETS = {"tokens_per_s_ratio": 1.5, "peak_memory_ratio_max": 1.0}
INSTALL_HINT = "pip install 'lmforge[bench]'"


READY = "@@lmforge-bench-worker-ready@@"  # a worker prints it when it waits for "go"


def _gate() -> None:
    """Tell the parent this worker is at a step, and wait for its go (lock-step runs)."""
    sys.stdout.write(f"\n{READY}\n")
    sys.stdout.flush()
    if not sys.stdin.readline():  # the parent is gone
        sys.exit(1)


def _finish(spec: dict, step_s: list[float], tokens: list[int], extra: dict) -> dict:
    """The figures of the timed steps (those after the warm-up), and the rest of a run."""
    w = spec["warmup"]
    seconds, timed_tokens = sum(step_s[w:]), sum(tokens[w:])
    return {
        "timed_steps": len(step_s) - w,
        "seconds": seconds,
        "tokens": timed_tokens,
        "tokens_per_s": timed_tokens / seconds,
        "step_tokens_per_s": [n / t for n, t in zip(tokens, step_s, strict=True)],
        "step_s": step_s,
        "tokens_per_step": tokens,
        **extra,
    }


def worker_lmforge(spec: dict) -> dict:
    """`lmforge.tune.trainer.tune()` itself, with each `Trainer.train_step` call timed.

    A step's time is its `train_step` call (collation, forward, backward, optimizer step);
    the loop's bookkeeping around it (progress bar, checkpoint) is left out, as HF's logging
    is. Peak memory is reset at the first step, after the preflight.
    """
    import torch

    torch.set_num_threads(spec["threads"])
    from lmforge.tune.trainer import Trainer, TuneConfig, tune

    step_s: list[float] = []
    tokens: list[int] = []
    losses: list[float] = []
    seen: list[list] = []  # the micro-batches (lists of packed groups) of every step
    info: dict = {}
    train_step = Trainer.train_step
    step_batches = getattr(Trainer, "_step_batches", None)

    def timed_step(self, *args, **kwargs):
        if not step_s:  # the first step: the preflight is over, the training starts here
            params = list(self.model.parameters())
            info["trainable_params"] = sum(p.numel() for p in params if p.requires_grad)
            info["target_modules"] = sorted(self.model.peft_config["default"].target_modules)
            info["setup_peak_mb"] = proc_status_mb("VmHWM")
            info["measured"] = reset_peak_memory()
        _gate()
        start = time.perf_counter()
        loss, n = train_step(self, *args, **kwargs)
        step_s.append(time.perf_counter() - start)
        tokens.append(n)
        losses.append(loss)
        return loss, n

    def recording(self, *args, **kwargs):
        micro = step_batches(self, *args, **kwargs)
        seen.append(micro)
        return micro

    Trainer.train_step = timed_step
    if step_batches is not None:
        Trainer._step_batches = recording
    config = TuneConfig(
        data=spec["data"],
        method="lora",
        out=f"bench-tune-{os.getpid()}",  # a new name per repeat
        max_steps=spec["warmup"] + spec["steps"],
        micro_batch=spec["rows"],
        grad_accum=spec["grad_accum"],
        seq_len=spec["seq_len"],
        eval_fraction=0.0,
        lr=LR,
        warmup=WARMUP_SHARE,
        seed=SEED,
        precision=spec["precision"],
        **LORA,
    ).validate()
    artifact = tune(None, config, quiet=True)  # the default model, from the isolated home
    train_peak = proc_status_mb("VmHWM") if info.pop("measured") else None
    plan = artifact.meta["config"].get("plan", {})
    rows = [g for step in seen for micro in step for g in micro]
    return _finish(
        spec,
        step_s,
        tokens,
        {
            "losses": losses,
            "examples_per_step": [sum(len(g) for m in step for g in m) for step in seen],
            "rows_per_step": plan.get("micro_batch", spec["rows"])
            * plan.get("grad_accum", spec["grad_accum"]),
            "row_tokens_mean": (
                statistics.fmean(sum(len(e.input_ids) for e in g) for g in rows) if rows else None
            ),
            "plan": plan,
            "tune_reported_tokens_per_s": artifact.meta["metrics"].get("tokens_per_s"),
            **info,
            "train_peak_mb": train_peak,
        },
    )


def worker_hf(spec: dict) -> dict:
    """`transformers.Trainer` on a `peft` LoRA model: one example per row, padded per batch.

    A step's time runs from `on_step_begin` to `on_step_end` (forward, backward, optimizer
    step), plus the collation of its batches, which HF does before `on_step_begin`.
    """
    import torch

    torch.set_num_threads(spec["threads"])
    import datasets
    import transformers
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from lmforge.tune.data import read_examples
    from lmforge.tune.methods import target_modules

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    folder = spec["model_dir"]
    tok = AutoTokenizer.from_pretrained(folder)
    # bf16: the base loaded in bf16 (peft keeps the adapter fp32) and the Trainer's bf16
    # autocast on top, its fastest mixed-precision setting on a CPU
    dtype = torch.bfloat16 if spec["hf_precision"] == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    examples, _ = read_examples(spec["data"], tok, spec["seq_len"])  # lmforge's tokens and masks
    dataset = datasets.Dataset.from_list(
        [
            {"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids), "labels": e.labels}
            for e in examples
        ]
    )
    torch.manual_seed(SEED)
    random.seed(SEED)
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=LORA["rank"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=target_modules(model, "lora"),
    )
    model = get_peft_model(model, lora)

    collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    batches: list[tuple[int, int, int, float]] = []  # (real tokens, examples, slots, seconds)

    def counting(features):
        start = time.perf_counter()
        out = collator(features)
        mask = out["attention_mask"]
        took = time.perf_counter() - start
        batches.append((int(mask.sum()), int(mask.shape[0]), int(mask.numel()), took))
        return out

    began: list[float] = []
    ended: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            _gate()
            began.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            ended.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory(prefix="lmforge-bench-hf-") as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            per_device_train_batch_size=spec["batch"],
            gradient_accumulation_steps=spec["grad_accum"],
            max_steps=spec["warmup"] + spec["steps"],
            learning_rate=LR,
            lr_scheduler_type="cosine",
            warmup_steps=WARMUP_SHARE,  # transformers 5: a float < 1 is a share of the steps
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=SEED,
            disable_tqdm=True,
            label_names=["labels"],
            bf16=spec["hf_precision"] == "bf16",
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=counting,
            callbacks=[Clock()],
        )
        setup_peak = proc_status_mb("VmHWM")
        measured = reset_peak_memory()
        trainer.train()
        train_peak = proc_status_mb("VmHWM") if measured else None
    ga = spec["grad_accum"]
    per_step = [batches[k * ga : (k + 1) * ga] for k in range(len(ended))]  # in order
    step_s = [e - b + sum(x[3] for x in s) for b, e, s in zip(began, ended, per_step, strict=True)]
    return _finish(
        spec,
        step_s,
        [sum(x[0] for x in s) for s in per_step],
        {
            "losses": losses,
            "examples_per_step": [sum(x[1] for x in s) for s in per_step],
            "padded_tokens_per_step": [sum(x[2] for x in s) for s in per_step],
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "target_modules": sorted(model.peft_config["default"].target_modules),
            "setup_peak_mb": setup_peak,
            "train_peak_mb": train_peak,
        },
    )


class Worker:
    """One engine in a fresh interpreter, in the isolated lmforge home, stepped by the parent."""

    def __init__(self, engine: str, spec: dict, folder: Path):
        self.engine = engine
        spec_path = folder / f"{engine}-spec.json"
        spec_path.write_text(json.dumps(spec))
        self.result = folder / f"{engine}-result.json"
        self.result.unlink(missing_ok=True)
        self.log = folder / f"{engine}-stderr.txt"
        cmd = [sys.executable, __file__, "--worker", engine, str(spec_path), str(self.result)]
        env = {**os.environ, "LMFORGE_HOME": spec["home"]}
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env
            )

    def wait_ready(self) -> None:
        """Until the worker is at its next step; stop if it failed."""
        tail: list[str] = []
        while line := self.proc.stdout.readline():
            if line.strip() == READY:
                return
            tail = [*tail[-20:], line]
        self.fail("".join(tail))

    def step(self, last: bool = False) -> dict | None:
        """Let the worker do one step and wait until it is at the next one; after its last
        step, until it has exited (so its teardown never overlaps the other's step)."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        if not last:
            self.wait_ready()
            return None
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        if self.proc.wait() != 0 or not self.result.is_file():
            self.fail(out[-4000:])
        return json.loads(self.result.read_text())

    def fail(self, out: str) -> None:
        self.proc.kill()
        sys.stderr.write(out + self.log.read_text()[-8000:])
        sys.exit(f"the {self.engine} run failed (exit status {self.proc.wait()})")


def run_lockstep(spec: dict, folder: Path) -> dict[str, dict]:
    """Both engines at once, set up side by side, then stepping in turn (never together).

    Step i of one engine runs right before or after step i of the other, the order swapped
    every step, so a burst of load from other work hits both alike. Each engine is a process
    of its own, so the peak memory of one is not the other's.
    """
    workers = {e: Worker(e, spec, folder) for e in ENGINES}
    for w in workers.values():
        w.wait_ready()  # set up, at the first step
    total, results = spec["warmup"] + spec["steps"], {}
    for i in range(total):
        for e in ENGINES if i % 2 == 0 else ENGINES[::-1]:
            results[e] = workers[e].step(last=i == total - 1)
    return {e: results[e] for e in ENGINES}


# -- the run and its report ------------------------------------------------------------------


def prepare(folder: Path, seq_len: int, batch: int, rows: int | None) -> dict:
    """The default model, an isolated lmforge home that holds it, the data, lmforge's rows.

    The home's store gets a link to the default artifact (converted once into the usual
    store if it is not there yet), so `tune()` finds it and writes its adapter, run folder
    and checkpoints only into the temporary folder. lmforge packs examples into rows of up
    to seq_len tokens; its micro-batch gets the number of rows that holds about as many
    tokens as `batch` examples, so both engines put about the same tokens through a pass.
    """
    from transformers import AutoTokenizer

    from lmforge.models.sources import resolve
    from lmforge.quickstart import build_train
    from lmforge.tune import data as tdata

    model_dir, name, artifact = resolve(None)
    home = folder / "home"
    (home / "store").mkdir(parents=True)
    (home / "store" / name).symlink_to(artifact.path, target_is_directory=True)
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in build_train()))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    examples, stats = tdata.read_examples(data, tok, seq_len)
    groups = tdata.pack(examples, seq_len)
    example_mean = stats.tokens / stats.examples
    row_mean = stats.tokens / len(groups)
    if rows is None:
        rows = max(1, round(batch * example_mean / row_mean))
    return {
        "home": str(home),
        "model_dir": str(model_dir),
        "model": name,
        "data": str(data),
        "rows": rows,
        "dataset": {
            "source": "lmforge.quickstart.build_train() (chat)",
            "examples": stats.examples,
            "tokens": stats.tokens,
            "supervised_tokens": stats.supervised,
            "truncated": stats.truncated,
            "example_tokens_mean": round(example_mean, 2),
            "packed_rows": len(groups),
            "packed_row_tokens_mean": round(row_mean, 2),
        },
    }


def machine_info(threads: int) -> dict:
    info = common_machine_info(
        peft=metadata.version("peft"),
        accelerate=metadata.version("accelerate"),
        datasets=metadata.version("datasets"),
    )
    info["torch_threads"] = threads  # what both subprocesses set
    info["lmforge_commit"] = lmforge_commit()
    return info


def lmforge_commit() -> str | None:
    """The git commit of the lmforge that ran (+dirty if its src/ differs), where known."""
    import lmforge

    src = Path(lmforge.__file__).resolve().parent
    try:
        git = ["git", "-C", str(src)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return None


def _window(losses: list[float]) -> int:
    """How many steps the start and end loss figures average: a quarter, at least one."""
    return max(1, len(losses) // 4)


def engine_summary(runs: list[dict]) -> dict:
    """Medians over the runs; losses and per-step sizes from the timed steps of the runs."""
    first = runs[0]

    def timed_mean(key: str) -> float | None:
        values = [v for r in runs if r.get(key) for v in r[key][-r["timed_steps"] :]]
        return round(statistics.fmean(values), 2) if values else None

    def peaks(pick) -> dict | None:
        values = [pick(r) for r in runs if r["train_peak_mb"] is not None]
        return summary(values) if values else None

    losses, k = first["losses"], _window(first["losses"])
    out = {
        "tokens_per_s": summary([r["tokens_per_s"] for r in runs]),
        "seconds_per_step": summary(
            [statistics.median(r["step_s"][-r["timed_steps"] :]) for r in runs]
        ),
        "real_tokens_per_step": timed_mean("tokens_per_step"),
        "examples_per_step": timed_mean("examples_per_step"),
        "process_peak_mb": peaks(lambda r: max(r["setup_peak_mb"], r["train_peak_mb"])),
        "train_peak_mb": peaks(lambda r: r["train_peak_mb"]),
        "loss_start": round(statistics.fmean(losses[:k]), 4),
        "loss_end": round(statistics.fmean(losses[-k:]), 4),
        "loss_final": round(losses[-1], 4),
        "losses": [round(v, 4) for v in losses],
        "step_s": [round(v, 2) for v in first["step_s"]],
        "trainable_params": first["trainable_params"],
        "target_modules": first["target_modules"],
    }
    for key in ("padded_tokens_per_step",):
        if key in first:
            out[key] = timed_mean(key)
    for key in ("rows_per_step", "row_tokens_mean", "plan", "tune_reported_tokens_per_s"):
        if key in first:
            value = first[key]
            out[key] = round(value, 2) if isinstance(value, float) else value
    return out


def paired_ratio(ours: list[dict], theirs: list[dict]) -> float:
    """Median over the timed steps of (lmforge's step i tok/s) / (HF's step i tok/s).

    Step i of the two engines ran side by side (lock-step), so each pair shares the load of
    its moment; a burst that hits a few steps moves this median little. Median over repeats.
    """
    per_run = []
    for a, b in zip(ours, theirs, strict=True):
        w = len(a["step_s"]) - a["timed_steps"]
        pairs = zip(a["step_tokens_per_s"][w:], b["step_tokens_per_s"][w:], strict=True)
        per_run.append(statistics.median(x / y for x, y in pairs))
    return round(statistics.median(per_run), 3)


def print_report(console, engines: dict, ratios: dict, met: dict, title: str) -> None:
    from rich.table import Table

    def mib(figure: dict | None) -> str:
        return "-" if figure is None else f"{figure['median']:.0f}"

    table = Table(title=f"tune (LoRA), {title}")
    for name in ("engine", "tok/s med (min)", "s/step", "tok/step", "ex/step", "peak MiB"):
        table.add_column(name, justify="left" if name == "engine" else "right")
    table.add_column("train peak", justify="right")
    table.add_column("loss start→end", justify="right")
    for name, e in engines.items():
        t = e["tokens_per_s"]
        table.add_row(
            name,
            f"{t['median']:.1f} ({t['min']:.1f})",
            f"{e['seconds_per_step']['median']:.2f}",
            f"{e['real_tokens_per_step']:.0f}",
            f"{e['examples_per_step']:.1f}" if e["examples_per_step"] else "-",
            mib(e["process_peak_mb"]),
            mib(e["train_peak_mb"]),
            f"{e['loss_start']:.3f}→{e['loss_end']:.3f}",
        )
    console.print(table)
    for name, ratio in ratios.items():
        console.print(f"{name} (lmforge / HF): {ratio}", markup=False)
    for name, target in TARGETS.items():
        state = "met" if met[name] else "NOT met"
        console.print(f"target {name} ({target}): {state}", markup=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--batch", type=int, default=8, help="HF examples per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    parser.add_argument("--seq-len", type=int, default=256, help="max tokens per row")
    parser.add_argument(
        "--rows", type=int, default=None, help="lmforge packed rows per micro-batch "
        "(default: the rows that hold about as many tokens as --batch examples)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per engine")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="lmforge: fp32, or the frozen base in bf16 with an fp32 adapter",
    )
    parser.add_argument(
        "--hf-precision",
        choices=("fp32", "bf16"),
        default=None,
        help="the HF Trainer's (default: the same as --precision)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)  # engine spec result
    args = parser.parse_args()
    results_dir = Path(__file__).parent / "results"
    args.hf_precision = args.hf_precision or args.precision
    if args.out is None:
        tag = "" if args.precision == args.hf_precision == "fp32" else f"_{args.precision}"
        if args.hf_precision != args.precision:
            tag += f"_vs_hf_{args.hf_precision}"
        args.out = results_dir / f"tune{tag}.json"
    if args.worker:
        engine, spec_path, result_path = args.worker
        spec = json.loads(Path(spec_path).read_text())
        result = (worker_lmforge if engine == LMF else worker_hf)(spec)
        Path(result_path).write_text(json.dumps(result))
        return
    if min(args.steps, args.batch, args.grad_accum, args.repeats) < 1 or args.warmup < 0:
        parser.error("--steps, --batch, --grad-accum and --repeats must be >= 1, --warmup >= 0")
    if args.seq_len < 2 or (args.rows is not None and args.rows < 1):
        parser.error("--seq-len must be >= 2 and --rows >= 1")
    for module in ("peft", "datasets", "accelerate"):
        if importlib.util.find_spec(module) is None:
            parser.error(f"{module} is not installed; {INSTALL_HINT}")

    import torch
    from rich.console import Console

    console = Console() if sys.stdout.isatty() else Console(width=120)
    threads = args.threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="lmforge-bench-tune-") as tmp:
        folder = Path(tmp)
        with console.status("the default model (converted once into the store) and the data"):
            prep = prepare(folder, args.seq_len, args.batch, args.rows)
        spec = {
            "home": prep["home"],
            "model_dir": prep["model_dir"],
            "data": prep["data"],
            "seq_len": args.seq_len,
            "batch": args.batch,
            "rows": prep["rows"],
            "grad_accum": args.grad_accum,
            "steps": args.steps,
            "warmup": args.warmup,
            "threads": threads,
            "precision": args.precision,
            "hf_precision": args.hf_precision,
        }
        runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
        for rep in range(1, args.repeats + 1):
            with console.status(f"both engines, {args.warmup}+{args.steps} steps, run {rep}"):
                results = run_lockstep(spec, folder)
            for engine, result in results.items():
                runs[engine].append(result)
                console.print(
                    f"{engine} run {rep}: {result['tokens_per_s']:.1f} tokens/s, "
                    f"{statistics.median(result['step_s'][args.warmup :]):.2f} s/step, "
                    f"train peak {result['train_peak_mb'] or 0:.0f} MiB, losses "
                    + " ".join(f"{v:.3f}" for v in result["losses"]),
                    markup=False,
                )

    engines = {e: engine_summary(runs[e]) for e in ENGINES}
    lmf, hf = engines[LMF], engines[HF]
    assert lmf["trainable_params"] == hf["trainable_params"], "the LoRA adapters differ"
    assert lmf["target_modules"] == hf["target_modules"], "the LoRA targets differ"

    def ratio(key: str) -> float | None:
        if lmf[key] is None or hf[key] is None:
            return None
        return round(lmf[key]["median"] / hf[key]["median"], 3)

    ratios = {k: ratio(k) for k in ("tokens_per_s", "process_peak_mb", "train_peak_mb")}
    ratios["paired_step_tokens_per_s"] = paired_ratio(runs[LMF], runs[HF])
    met = {
        "tokens_per_s_ratio": ratios["tokens_per_s"] >= TARGETS["tokens_per_s_ratio"],
        "peak_memory_ratio_max": ratios["process_peak_mb"] is not None
        and ratios["process_peak_mb"] <= TARGETS["peak_memory_ratio_max"],
    }
    sanity = {f"{e}_loss_falls": engines[e]["loss_end"] < engines[e]["loss_start"] for e in ENGINES}
    write_json(
        args.out,
        {
            "benchmark": "tune",
            "machine": machine_info(threads),
            "model": f"{prep['model']} (default artifact)",
            "dataset": prep["dataset"],
            "settings": {
                "method": "lora",
                **LORA,
                "target_modules": lmf["target_modules"],
                "lr": LR,
                "schedule": f"cosine, warm-up {WARMUP_SHARE:g} of the steps",
                "seq_len": args.seq_len,
                "hf_examples_per_micro_batch": args.batch,
                "lmforge_rows_per_micro_batch": prep["rows"],
                "grad_accum": args.grad_accum,
                "warmup_steps": args.warmup,
                "timed_steps": args.steps,
                "repeats": args.repeats,
                "lmforge_precision": args.precision,
                "hf_precision": args.hf_precision,
            },
            "engines": engines,
            "ratios": ratios,
            "targets": TARGETS,
            "targets_met": met,
            "sanity": sanity,
        },
    )
    title = (
        f"{args.steps} timed steps after {args.warmup}; per micro-batch HF {args.batch} "
        f"examples, lmforge {prep['rows']} packed rows of <= {args.seq_len} tokens"
    )
    print_report(console, engines, ratios, met, title)
    if not all(sanity.values()):
        console.print(f"sanity: a loss did not fall: {sanity}", markup=False)
    console.print(f"wrote {args.out}", markup=False)


if __name__ == "__main__":
    main()
