"""Multiple-choice scoring speed and agreement: lmforge vs lm-evaluation-harness, side by side.

    python benchmarks/eval_mc.py [--limit 200] [--repeats 1] [--batch-size 16] [--out path]

One four-choice task, written from the core suite into a temporary folder in both task
formats (an lm-eval YAML and an lmforge YAML over the same JSONL), is scored on the default
model (fp32) by lmforge's `Scorer` and by lm-evaluation-harness (`simple_evaluate`, `hf`
model on the same folder). Every item gets the same prompt, "Question: ...\\nAnswer:", so
both score identical strings. Writes JSON (see benchmarks/README.md).
"""

from __future__ import annotations

import os

# Before anything imports datasets / transformers / huggingface_hub: never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import importlib.util
import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import yaml
from common import machine_info as common_machine_info
from common import summary, write_json  # benchmarks/common.py (the script folder is on sys.path)
from rich.console import Console
from rich.table import Table

import lmforge
from lmforge.evaluate.scorer import Scorer, split_encode
from lmforge.evaluate.suites.core import build
from lmforge.evaluate.task import Item, build_items, load_task

LMF, LME = "lmforge", "lm_eval_hf"
TASK = "lmforge_core_mc"
PROMPT = "Question: {{question}}\nAnswer:"
TARGETS = {"throughput_ratio": 3.0, "acc_equal_to_3_decimals": True}
INSTALL_HINT = "pip install 'lmforge[bench]'"
console = Console()


# -- the task, in both formats ------------------------------------------------------------


def pick_items(n: int) -> list[dict]:
    """n core items spread evenly over the whole suite (its head is all one task)."""
    rows = build()
    if n >= len(rows):
        return rows
    return [rows[i * len(rows) // n] for i in range(n)]


def write_task(folder: Path, rows: list[dict]) -> tuple[Path, Path]:
    """The JSONL, an lm-eval task YAML and the equivalent lmforge task YAML over it."""
    for sub in ("data", "lm_eval", "lmforge"):  # lm-eval reads every YAML under its folder
        (folder / sub).mkdir()
    data = folder / "data" / "items.jsonl"
    with data.open("w") as f:
        for row in rows:
            keep = {k: row[k] for k in ("id", "question", "choices", "target")}
            f.write(json.dumps(keep, ensure_ascii=False) + "\n")
    lm_eval_yaml = folder / "lm_eval" / f"{TASK}.yaml"
    lm_eval_yaml.write_text(
        yaml.safe_dump(
            {
                "task": TASK,
                "dataset_path": "json",
                # cache_dir: the datasets cache of this file stays in the temporary folder
                "dataset_kwargs": {
                    "data_files": {"test": str(data)},
                    "cache_dir": str(folder / "hf_cache"),
                },
                "test_split": "test",
                "output_type": "multiple_choice",
                "doc_to_text": PROMPT,
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "target",
                "metric_list": [
                    {"metric": "acc"},
                    {"metric": "acc_norm"},
                    {"metric": "acc_bytes"},
                ],
            },
            sort_keys=False,
        )
    )
    ours = folder / "lmforge" / f"{TASK}.yaml"
    ours.write_text(
        yaml.safe_dump(
            {
                "name": TASK,
                "kind": "multiple_choice",
                "data": {"path": str(data)},
                "prompt": PROMPT,
                "choices": "choices",
                "target": "target",
                "metrics": ["accuracy"],
            },
            sort_keys=False,
        )
    )
    return lm_eval_yaml, ours


# -- scoring ------------------------------------------------------------------------------


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # first of equals, as np.argmax


def accuracies(items: list[Item], lls: list[list[float]]) -> dict[str, float]:
    """acc, acc_norm (per character of the choice) and acc_bytes, exactly as lm-eval."""
    hits = {"acc": 0, "acc_norm": 0, "acc_bytes": 0}
    for item, ll in zip(items, lls, strict=True):
        chars = [v / len(c) for v, c in zip(ll, item.choices, strict=True)]
        nbytes = [v / len(c.encode()) for v, c in zip(ll, item.choices, strict=True)]
        hits["acc"] += _argmax(ll) == item.target
        hits["acc_norm"] += _argmax(chars) == item.target
        hits["acc_bytes"] += _argmax(nbytes) == item.target
    return {k: v / len(items) for k, v in hits.items()}


def requests_of(items: list[Item]) -> list[tuple[str, list[str]]]:
    return [(item.context, [" " + c for c in item.choices]) for item in items]


def run_lmforge(task_yaml: Path, batch_size: int, limit: int | None = None) -> dict:
    """Load the model and our task, score, compute accuracies; times of each part."""
    t0 = time.perf_counter()
    model = lmforge.load(None, dtype="fp32")
    items = build_items(load_task(task_yaml))[:limit]
    scorer = Scorer(model.decoder, model.tokenizer, batch_size=batch_size)
    t1 = time.perf_counter()
    scores = scorer.score(requests_of(items))
    t2 = time.perf_counter()
    lls = [[c.logprob for c in conts] for conts in scores]
    acc = accuracies(items, lls)
    return {"score_s": t2 - t1, "total_s": time.perf_counter() - t0, "lls": lls, **acc}


class LoglikelihoodClock:
    """Wraps HFLM.loglikelihood while active: the time inside it, and the last model."""

    def __init__(self) -> None:
        from lm_eval.models.huggingface import HFLM

        self.cls, self.orig = HFLM, HFLM.loglikelihood
        self.seconds, self.lm = 0.0, None

    def __enter__(self) -> LoglikelihoodClock:
        orig = self.orig

        def timed(lm, *args, **kwargs):
            start = time.perf_counter()
            try:
                return orig(lm, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.lm = lm

        self.cls.loglikelihood = timed
        return self

    def __exit__(self, *exc) -> None:
        self.cls.loglikelihood = self.orig


def run_lm_eval(
    task_dir: Path, model_dir: Path, batch_size: int, limit: int | None = None, keep_lm=False
) -> dict:
    """simple_evaluate on the hf model; per-item log-likelihoods from the logged samples."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    with LoglikelihoodClock() as clock:
        t0 = time.perf_counter()
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={model_dir},dtype=float32",
            tasks=[TASK],
            batch_size=batch_size,
            device="cpu",
            limit=limit,
            log_samples=True,
            task_manager=TaskManager(include_path=str(task_dir)),
        )
        total = time.perf_counter() - t0
    metrics = out["results"][TASK]
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    result = {
        "score_s": clock.seconds,
        "total_s": total,
        "lls": [[float(r[0]) for r in s["filtered_resps"]] for s in samples],
        "requests": [[_request_pair(a) for a in s["arguments"]] for s in samples],
        **{m: float(metrics[f"{m},none"]) for m in ("acc", "acc_norm", "acc_bytes")},
    }
    if keep_lm:
        result["lm"] = clock.lm
    return result


def _request_pair(arguments) -> tuple[str, str]:
    """(context, continuation) of one logged lm-eval request (a tuple, or a dict of args)."""
    if isinstance(arguments, dict):
        arguments = next(iter(arguments.values()))
        if isinstance(arguments, dict):
            arguments = list(arguments.values())
    return str(arguments[0]), str(arguments[1])


# -- comparison ---------------------------------------------------------------------------


def agreement(items: list[Item], ours: dict, theirs: dict, lm, tokenizer) -> dict:
    """Same strings, same tokens, same scores: the proof behind the accuracy comparison."""
    mine = requests_of(items)
    string_diff = sum(
        [(ctx, c) for c in conts] != pairs
        for (ctx, conts), pairs in zip(mine, theirs["requests"], strict=True)
    )
    token_diff = None
    if lm is not None:  # lm-eval's own encoder on the same strings vs our split_encode
        token_diff = sum(
            any(
                tuple(map(list, lm._encode_pair(ctx, c))) != split_encode(tokenizer, ctx, c)
                for c in conts
            )
            for ctx, conts in mine
        )
    diffs = [
        abs(a - b)
        for la, lb in zip(ours["lls"], theirs["lls"], strict=True)
        for a, b in zip(la, lb, strict=True)
    ]

    def differs(norm) -> int:
        return sum(
            _argmax(norm(la, item)) != _argmax(norm(lb, item))
            for item, la, lb in zip(items, ours["lls"], theirs["lls"], strict=True)
        )

    return {
        "items_with_different_request_strings": string_diff,
        "items_with_different_token_ids": token_diff,
        "max_abs_logprob_diff": max(diffs),
        "mean_abs_logprob_diff": statistics.fmean(diffs),
        "items_argmax_differs": differs(lambda ll, item: ll),
        "items_argmax_norm_differs": differs(
            lambda ll, item: [v / len(c) for v, c in zip(ll, item.choices, strict=True)]
        ),
        **{f"{m}_diff": ours[m] - theirs[m] for m in ("acc", "acc_norm", "acc_bytes")},
    }


# -- report -------------------------------------------------------------------------------


def machine_info() -> dict:
    return common_machine_info(
        lm_eval=metadata.version("lm-eval"), datasets=metadata.version("datasets")
    )


def measure(
    n_items: int, repeats: int, warmup: int, run: dict[str, Callable[..., dict]]
) -> tuple[dict, dict]:
    """Warm-up on a few items, then `repeats` rounds over both engines in turn.

    Returns per-engine timing lists and the first timed round's full results.
    """
    times: dict[str, dict[str, list[float]]] = {e: {"score": [], "total": []} for e in run}
    first: dict[str, dict] = {}
    if warmup:
        for engine, fn in run.items():
            with console.status(f"warm-up: {engine} on {warmup} items"):
                fn(limit=warmup, first=False)
    for rep in range(1, repeats + 1):
        for engine, fn in run.items():
            with console.status(f"{engine}: {n_items} items, run {rep}/{repeats}"):
                result = fn(limit=None, first=rep == 1)
            times[engine]["score"].append(n_items / result["score_s"])
            times[engine]["total"].append(n_items / result["total_s"])
            first.setdefault(engine, result)
            console.print(
                f"{engine} run {rep}: scoring {result['score_s']:.1f} s, "
                f"end to end {result['total_s']:.1f} s",
                markup=False,
            )
    return times, first


def print_report(engines: dict, ratios: dict, agree: dict, met: dict, title: str) -> None:
    table = Table(title=f"eval_mc, {title}")
    table.add_column("engine")
    table.add_column("scoring items/s median (min)", justify="right")
    table.add_column("end-to-end items/s", justify="right")
    table.add_column("acc", justify="right")
    table.add_column("acc_norm", justify="right")
    for name, e in engines.items():
        s, t = e["score_items_s"], e["total_items_s"]
        table.add_row(
            name,
            f"{s['median']:.2f} ({s['min']:.2f})",
            f"{t['median']:.2f}",
            f"{e['acc']:.4f}",
            f"{e['acc_norm']:.4f}",
        )
    console.print(table)
    for name, ratio in ratios.items():
        console.print(f"{name}: {ratio:.2f}x", markup=False)
    console.print(
        f"max |logprob diff| {agree['max_abs_logprob_diff']:.2e}; argmax differs on "
        f"{agree['items_argmax_differs']} item(s) (norm: {agree['items_argmax_norm_differs']}); "
        f"request strings differ on {agree['items_with_different_request_strings']}, "
        f"token ids on {agree['items_with_different_token_ids']}",
        markup=False,
    )
    for name, target in TARGETS.items():
        state = "met" if met[name] else "NOT met"
        console.print(f"target {name} ({target}): {state}", markup=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="items (spread over the suite)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per engine")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of both engines")
    parser.add_argument("--warmup", type=int, default=8, help="items per warm-up run (0: none)")
    default_out = Path(__file__).parent / "results" / "eval_mc.json"
    parser.add_argument("--out", type=Path, default=default_out, help="where to write the JSON")
    args = parser.parse_args()
    if args.limit < 1 or args.repeats < 1 or args.batch_size < 1 or args.warmup < 0:
        parser.error("--limit, --repeats and --batch-size must be >= 1, --warmup >= 0")
    if importlib.util.find_spec("lm_eval") is None:
        parser.error(f"lm-evaluation-harness is not installed; {INSTALL_HINT}")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # chat-template and metric notes

    with console.status("loading the default model (converted once into the store)"):
        base = lmforge.load(None, dtype="fp32")
    model_dir, tokenizer = base.artifact.model_dir, base.tokenizer
    del base

    with tempfile.TemporaryDirectory(prefix="lmforge-eval-mc-") as tmp:
        folder = Path(tmp)
        lm_eval_yaml, ours_yaml = write_task(folder, pick_items(args.limit))
        items = build_items(load_task(ours_yaml))
        # both formats, read by lmforge, give the very same items
        same = [(i.context, i.choices, i.target) for i in build_items(load_task(lm_eval_yaml))]
        assert same == [(i.context, i.choices, i.target) for i in items], "formats disagree"
        n = len(items)
        keep: dict = {}

        def lmf(limit, first):
            return run_lmforge(ours_yaml, args.batch_size, limit)

        def lme(limit, first):
            result = run_lm_eval(
                lm_eval_yaml.parent, model_dir, args.batch_size, limit, keep_lm=first
            )
            if first:
                keep["lm"] = result.pop("lm")
            return result

        times, first = measure(n, args.repeats, args.warmup, {LMF: lmf, LME: lme})
        with console.status("comparing per-item scores and tokens"):
            agree = agreement(items, first[LMF], first[LME], keep.pop("lm", None), tokenizer)

    engines = {
        e: {
            "score_items_s": summary(times[e]["score"]),
            "total_items_s": summary(times[e]["total"]),
            **{m: round(first[e][m], 6) for m in ("acc", "acc_norm", "acc_bytes")},
        }
        for e in (LMF, LME)
    }

    def ratio(key: str) -> float:
        return round(engines[LMF][key]["median"] / engines[LME][key]["median"], 3)

    ratios = {
        "scoring_items_s": ratio("score_items_s"),
        "end_to_end_items_s": ratio("total_items_s"),
    }
    acc_equal = all(
        math.isclose(round(first[LMF][m], 3), round(first[LME][m], 3)) for m in ("acc", "acc_norm")
    )
    met = {
        "throughput_ratio": ratios["scoring_items_s"] >= TARGETS["throughput_ratio"],
        "acc_equal_to_3_decimals": acc_equal,
    }
    write_json(
        args.out,
        {
            "benchmark": "eval_mc",
            "machine": machine_info(),
            "model": "SmolLM2-135M-Instruct (default artifact, fp32)",
            "task": {
                "source": "lmforge core suite, items spread evenly over it",
                "items": n,
                "choices_per_item": 4,
                "prompt": PROMPT,
            },
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "warmup_items": args.warmup,
            "engines": engines,
            "ratios": ratios,
            "agreement": agree,
            "targets": TARGETS,
            "targets_met": met,
        },
    )
    title = f"{n} four-choice items, batch {args.batch_size}"
    print_report(engines, ratios, agree, met, title)
    console.print(f"wrote {args.out}", markup=False)


if __name__ == "__main__":
    main()
