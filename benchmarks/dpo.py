"""DPO training speed: lmforge's preference loss vs trl's `DPOTrainer`, side by side.

    python benchmarks/dpo.py [--repeats 3] [--pairs 8] [--batch 4] [--seq-len 256]
        [--shapes short,long] [--engines lmforge,trl,trl_precompute] [--threads N] [--out path]

Every engine trains a fresh LoRA (r 16, alpha 32, no dropout, every linear layer of the
blocks) on the embedded SmolLM2-135M-Instruct, for one epoch over the same preference pairs,
with the same batch, sequence length, beta, learning rate and torch threads, in fp32 (trl
is given `bf16=False`: on a CPU its default is bf16 autocast). The pairs are
written from the quickstart domain (`lmforge.quickstart`): the question of a fact,
the sentence that states it (chosen), and the same sentence with a wrong value (rejected).
Two shapes: `short` replies (the sentence alone, so the chat prompt is most of each
sequence) and `long` replies (the sentence followed by three more of the manual's, so
the replies are longer than the prompt).

| engine | what is timed |
|---|---|
| `lmforge` | `dpo.read_pairs`, the reference pass (`dpo.set_reference`), `Trainer.train_step` x steps |
| `trl` | `DPOTrainer(...)` (tokenizes) and `train()`; the reference is run every step with the adapter disabled (trl's default) |
| `trl_precompute` | the same with `precompute_ref_log_probs=True`: one reference pass up front, as lmforge does (opt-in: over one epoch it does the same work as `trl`) |

Model loading is not timed (each run trains a fresh copy of weights loaded once). Each
engine is warmed up once on one step; then runs go round-robin, `--repeats` times, so load
from other work hits every engine alike. tokens/s counts the tokens of both sequences of
every pair, prompt + chosen and prompt + rejected (what a two-row layout runs), so the same
work has the same count in every engine; the script checks that trl's token ids are
lmforge's and compares the reference log-probs of the two.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from common import machine_info, summary, write_json  # noqa: E402  (benchmarks/common.py)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lmforge.models.convert import read_hf  # noqa: E402
from lmforge.models.sources import resolve  # noqa: E402
from lmforge.quickstart import FACTS, POOLS, sentence  # noqa: E402
from lmforge.tune import dpo  # noqa: E402
from lmforge.tune.methods import linear_names  # noqa: E402
from lmforge.tune.trainer import Trainer, TuneConfig  # noqa: E402

ENGINES = ["lmforge", "trl", "trl_precompute"]
DEFAULT_ENGINES = ["lmforge", "trl"]  # trl_precompute: opt-in, it takes as long as trl
SHAPES = ["short", "long"]
INSTALL_HINT = "pip install trl"
BETA, LR, RANK, ALPHA = 0.1, 5e-5, 16, 32
console = Console()


def make_pairs(n: int, shape: str, seed: int = 0) -> list[dict]:
    """`n` pairs over the quickstart facts: the right sentence vs one with a wrong value."""
    rng = random.Random(f"dpo-bench-{seed}")
    rows = []
    for i in range(n):
        fact = FACTS[i % len(FACTS)]
        wrong = rng.choice([v for v in POOLS[fact.pool] if v != fact.answer])
        chosen = sentence(fact)
        rejected = sentence(fact._replace(answer=wrong))
        if shape == "long":  # three more true sentences from the manual, the same in both
            more = " ".join(sentence(FACTS[(i + k) % len(FACTS)]) for k in range(1, 4))
            chosen, rejected = f"{chosen} {more}", f"{rejected} {more}"
        rows.append({"prompt": fact.train_question, "chosen": chosen, "rejected": rejected})
    return rows


def lmforge_run(base, tok, rows: list[dict], args) -> dict:
    """One epoch with lmforge's DPO loss; seconds and the pairs (with reference log-probs)."""
    model = copy.deepcopy(base)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prefs.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        start = time.perf_counter()
        pairs, _ = dpo.read_pairs(path, tok, args.seq_len)
        model = dpo.wrap(model, {"rank": RANK, "alpha": ALPHA, "dropout": 0.0})
        dpo.set_reference(model, pairs, pad_id, args.batch, fresh=True)
        model.train()
        config = TuneConfig(
            data=str(path), method="dpo", micro_batch=args.batch, seq_len=args.seq_len,
            lr=LR, beta=BETA, eval_fraction=0.0, dropout=0.0, rank=RANK, alpha=ALPHA,
        ).validate()  # fmt: skip
        trainer = Trainer(model, config, [[p] for p in pairs], [], pad_id)
        losses = [trainer.train_step()[0] for _ in range(trainer.total_steps)]
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs": pairs, "steps": len(losses), "loss": losses}


def trl_run(base, tok, rows: list[dict], args, precompute: bool) -> dict:
    """One epoch with trl's DPOTrainer on the same pairs, as chat messages."""
    import datasets
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()
    model = copy.deepcopy(base)
    records = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in rows
    ]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        config = DPOConfig(
            output_dir=tmp, per_device_train_batch_size=args.batch, num_train_epochs=1,
            learning_rate=LR, beta=BETA, max_length=args.seq_len, report_to="none",
            save_strategy="no", logging_steps=1, use_cpu=True, seed=0, lr_scheduler_type="constant",
            precompute_ref_log_probs=precompute, dataloader_num_workers=0, disable_tqdm=True,
            bf16=False,  # trl's default on CPU is bf16 autocast; lmforge trains in fp32
            log_level="error",
        )  # fmt: skip
        lora = LoraConfig(
            r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=linear_names(base),
            task_type="CAUSAL_LM",
        )  # fmt: skip
        trainer = DPOTrainer(
            model=model, args=config, train_dataset=Dataset.from_list(records),
            processing_class=tok, peft_config=lora,
        )  # fmt: skip
        trainer.train()
        seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "seconds": seconds,
        "dataset": trainer.train_dataset,
        "steps": trainer.state.global_step,
        "loss": losses,
    }


def agreement(ours: list, theirs) -> dict:
    """Same token ids in both engines? How far apart are the reference log-probs?"""
    same_ids, diffs = True, []
    for pair, row in zip(ours, theirs, strict=True):
        p, c = pair.prompt, pair.chosen
        ids = pair.input_ids
        same_ids &= (
            list(row["prompt_ids"]) == ids[:p]
            and list(row["chosen_ids"]) == ids[p : p + c]
            and list(row["rejected_ids"]) == ids[p + c :]
        )
        if "ref_chosen_logps" in row:
            diffs += [
                abs(row["ref_chosen_logps"] - pair.reference[0]),
                abs(row["ref_rejected_logps"] - pair.reference[1]),
            ]
    return {
        "same_token_ids": bool(same_ids),
        "max_abs_ref_logp_diff": round(max(diffs), 6) if diffs else None,
    }


def pair_tokens(pairs) -> int:
    """Tokens of prompt + chosen and prompt + rejected, summed over the pairs."""
    return sum(len(p.input_ids) + p.prompt for p in pairs)


def bench_shape(shape: str, engines: list[str], base, tok, args) -> dict:
    rows = make_pairs(args.pairs, shape)
    warm = make_pairs(args.batch, shape, seed=1)
    runners = {
        "lmforge": lambda r: lmforge_run(base, tok, r, args),
        "trl": lambda r: trl_run(base, tok, r, args, precompute=False),
        "trl_precompute": lambda r: trl_run(base, tok, r, args, precompute=True),
    }
    for engine in engines:  # one step each: first-call costs (allocator, imports) go here
        runners[engine](warm)
    seconds: dict[str, list[float]] = {e: [] for e in engines}
    first: dict[str, dict] = {}
    for _ in range(args.repeats):
        for engine in engines:
            result = runners[engine](rows)
            seconds[engine].append(result["seconds"])
            first.setdefault(engine, result)
    ours = first["lmforge"]["pairs"]
    tokens = pair_tokens(ours)
    out: dict = {
        "pairs": args.pairs,
        "pair_tokens": tokens,
        "row_tokens_lmforge": sum(len(p.input_ids) for p in ours),
        "engines": {},
    }
    for engine in engines:
        out["engines"][engine] = {
            "seconds": summary(seconds[engine]),
            "tokens_per_s": summary([tokens / s for s in seconds[engine]]),
            "steps": first[engine]["steps"],
            "first_loss": round(first[engine]["loss"][0], 5),
            "last_loss": round(first[engine]["loss"][-1], 5),
        }
    for engine in ("trl_precompute", "trl"):
        if engine in first and "lmforge" in first:
            out["agreement"] = agreement(first["lmforge"]["pairs"], first[engine]["dataset"])
            break
    med = {e: out["engines"][e]["tokens_per_s"]["median"] for e in engines}
    out["ratios"] = {
        f"lmforge/{e}": round(med["lmforge"] / med[e], 2)
        for e in engines
        if e != "lmforge" and "lmforge" in med
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per run (one epoch)")
    parser.add_argument("--batch", type=int, default=4, help="pairs per step")
    parser.add_argument("--seq-len", type=int, default=256, help="max tokens of prompt + reply")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma list: short,long")
    parser.add_argument(
        "--engines", default=",".join(DEFAULT_ENGINES), help=f"comma list of {', '.join(ENGINES)}"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    default_out = Path(__file__).parent / "results" / "dpo.json"
    parser.add_argument("--out", type=Path, default=default_out, help="where to write the JSON")
    args = parser.parse_args()
    if args.threads:  # on a shared machine, 1 thread avoids OpenMP spinning against other jobs
        torch.set_num_threads(args.threads)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if unknown := sorted(set(engines) - set(ENGINES)) + sorted(set(shapes) - set(SHAPES)):
        parser.error(f"unknown engine(s) or shape(s): {', '.join(unknown)}")
    if "lmforge" not in engines:
        parser.error("the lmforge engine is the reference of the ratios; keep it")
    skipped = {}
    try:
        trl_version = metadata.version("trl")
    except metadata.PackageNotFoundError:
        trl_version = None
        for e in [e for e in engines if e.startswith("trl")]:
            engines.remove(e)
            skipped[e] = f"trl not installed ({INSTALL_HINT})"
        console.print(f"trl is not installed, skipping it; {INSTALL_HINT}", markup=False)

    folder, name, _ = resolve(None)
    base, tok = read_hf(folder, "hf")
    base.eval()
    results = {}
    for shape in shapes:
        with console.status(f"{shape} replies"):
            results[shape] = bench_shape(shape, engines, base, tok, args)
        results[shape]["engines"] |= skipped
    write_json(
        args.out,
        {
            "benchmark": "dpo",
            "machine": machine_info(trl=trl_version, peft=metadata.version("peft")),
            "model": f"{name} (fp32)",
            "settings": {
                "pairs": args.pairs,
                "batch": args.batch,
                "seq_len": args.seq_len,
                "steps": -(-args.pairs // args.batch),
                "beta": BETA,
                "lr": LR,
                "lora_rank": RANK,
                "lora_alpha": ALPHA,
                "lora_dropout": 0.0,
                "repeats": args.repeats,
            },  # fmt: skip
            "shapes": results,
        },
    )
    for shape, res in results.items():
        table = Table(title=f"DPO, {shape} replies: {res['pair_tokens']} pair tokens per epoch")
        for col in ("engine", "tokens/s median (min)", "s/epoch median", "loss first -> last"):
            table.add_column(col)
        for engine, r in res["engines"].items():
            if "tokens_per_s" not in r:
                table.add_row(engine, "skipped", "-", "-")
                continue
            t = r["tokens_per_s"]
            table.add_row(
                engine, f"{t['median']:.0f} ({t['min']:.0f})", f"{r['seconds']['median']:.1f}",
                f"{r['first_loss']:.4f} -> {r['last_loss']:.4f}",
            )  # fmt: skip
        console.print(table)
        for k, v in res["ratios"].items():
            console.print(f"{k}: {v:.2f}x", markup=False)
        console.print(f"agreement: {res.get('agreement')}", markup=False)
    console.print(f"wrote {args.out}", markup=False)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
