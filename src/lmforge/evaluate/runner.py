"""`lmforge eval`: score a model on a suite and write `evals/<suite>.json` into its artifact."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from lmforge.energy import EnergyMeter
from lmforge.errors import InvalidInputError
from lmforge.evaluate.task import Item, Task, build_items, load_task

FAMILIES = (
    "accuracy",
    "calibration",
    "robustness",
    "fairness",
    "bias",
    "toxicity",
    "privacy",
    "perplexity",
    "efficiency",
)


@dataclass
class EvalConfig:
    """What to evaluate and how; stored verbatim in the result file."""

    suite: str = field(
        default="core",
        metadata={"help": "Bundled suite (core, bias), a task YAML or a folder of them."},
    )
    limit: int | None = field(default=None, metadata={"help": "At most this many items per task."})
    metrics: list[str] | None = field(
        default=None, metadata={"help": "Metric families (default: the tasks')."}
    )
    batch_size: int = field(
        default=16, metadata={"help": "Requests scored together (results do not depend on it)."}
    )
    chat_template: bool = field(
        default=False, metadata={"help": "Wrap each prompt in the model's chat template."}
    )
    seed: int = field(
        default=0, metadata={"help": "Seed for perturbations and bootstrap intervals."}
    )
    dtype: str | None = field(
        default=None, metadata={"help": "Weight type (default: fp32, or a quantized model's own)."}
    )
    decode_tokens: int = field(
        default=64,
        metadata={"help": "Tokens per decode-speed run (3 runs, greedy); 0 skips it."},
    )
    endpoint: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible base URL: run generate tasks there."}
    )
    endpoint_model: str = field(
        default="default", metadata={"help": "Model name sent to the endpoint."}
    )

    def __post_init__(self) -> None:
        # limit 0 once meant "everything" and a negative one silently dropped items
        for name, low in (("limit", 1), ("batch_size", 1), ("decode_tokens", 0)):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise InvalidInputError(
                    f"invalid {name}={value!r}",
                    f"use a whole number >= {low}"
                    + (" (or leave it out for every item)" if name == "limit" else ""),
                )


OPEN_ENDED = {"toxicity": "toxicity", "privacy": "privacy"}  # suite -> its metric family


def suite_tasks(suite: str, seed: int = 0) -> list[Task]:
    """The tasks of a bundled suite, a task YAML, or every YAML in a folder."""
    path = Path(suite)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return [load_task(path)]
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise InvalidInputError(f"no task YAML files in {path}", "put *.yaml task files there")
        return [load_task(f) for f in files]
    from lmforge.evaluate.suites import load_suite

    rows = load_suite(suite)
    if suite in OPEN_ENDED:  # continuations of openings, judged by a classifier
        return [
            Task(
                name=suite,
                kind="generate",
                prompt="{{ prompt }}",
                docs=rows,
                metrics=[OPEN_ENDED[suite], "efficiency"],
                max_tokens=32,
                stop=["\n"],
                source=f"suite:{suite}",
            )
        ]
    if suite == "bias":
        return [
            Task(
                name="bias",
                kind="loglikelihood",
                target="anti_stereotype",
                docs=rows,
                metrics=["bias"],
                source="suite:bias",
            )
        ]
    tasks: dict[str, list[dict]] = {}
    for row in rows:
        tasks.setdefault(row["task"], []).append(row)
    prompt = (
        "{% if format == 'qa' %}Question: {{ question }}\nAnswer:"
        "{% elif format == 'fill' %}Fill in the blank: {{ question }}\nAnswer:"
        "{% else %}{{ question }}{% endif %}"
    )
    return [
        Task(
            name=name,
            kind="multiple_choice",
            prompt=prompt,
            choices="choices",
            target="target",
            docs=docs,
            metrics=["accuracy", "calibration", "robustness", "fairness", "efficiency"],
            source=f"suite:{suite}/{name}",
        )
        for name, docs in tasks.items()
    ]


class Evaluator:
    """Runs tasks on one model with one scorer, producing per-item records."""

    def __init__(self, model, config: EvalConfig):
        from lmforge.evaluate.scorer import Scorer

        self.model = model
        self.config = config
        self.scorer = (
            None
            if model is None
            else Scorer(model.decoder, model.tokenizer, batch_size=config.batch_size)
        )
        self.endpoint = None
        if config.endpoint:
            from lmforge.evaluate.endpoint import EndpointGenerator

            self.endpoint = EndpointGenerator(config.endpoint, model=config.endpoint_model)

    def wrap(self, context: str) -> str:
        """The exact text scored: the prompt alone, or inside the chat template."""
        if not self.config.chat_template:
            return context
        tok = self.model.tokenizer
        return tok.apply_chat_template(
            [{"role": "user", "content": context}], tokenize=False, add_generation_prompt=True
        )

    def variants(self, item: Item, families: set[str]) -> dict[str, str]:
        """The item's context under each perturbation / counterfactual asked for."""
        out = {"original": item.context}
        if "robustness" in families:
            from lmforge.evaluate.perturb import PERTURBATIONS, perturb

            for name in PERTURBATIONS:
                out[name] = perturb(item.context, name, self.config.seed)
        if "fairness" in families:
            from lmforge.evaluate.counterfactual import counterfactuals

            for axis, text in counterfactuals(item.context).items():
                out[axis] = text
        return out

    def score_multiple_choice(
        self, task: Task, items: list[Item], families: set[str], progress
    ) -> list[dict]:
        requests, keys = [], []
        for item in items:
            for variant, context in self.variants(item, families).items():
                ctx = self.wrap(context)
                requests.append((ctx, [task.target_delimiter + c for c in item.choices]))
                keys.append((item, variant, ctx))
        latency = [0.0] * len(requests)

        def on_batch(batch) -> None:
            right = counted = 0
            for i, conts in zip(batch.indices, batch.scores, strict=True):
                latency[i] = batch.seconds  # a request waits for its whole batch
                item, variant, _ = keys[i]
                if variant == "original":
                    counted += 1
                    right += _argmax([c.logprob for c in conts]) == item.target
            progress(len(batch.indices), right, counted)

        scores = self.scorer.score(requests, progress=on_batch)
        records = []
        for (item, variant, ctx), conts in zip(keys, scores, strict=True):
            raw = [c.logprob for c in conts]
            norm = [
                c.logprob / max(len(ch.encode()), 1)
                for c, ch in zip(conts, item.choices, strict=True)
            ]
            pred, pred_norm = _argmax(raw), _argmax(norm)
            records.append(
                {
                    "task": task.name,
                    "item": item.id,
                    "variant": variant,
                    "prompt": ctx,
                    "choices": item.choices,
                    "target": item.target,
                    "scores": raw,
                    "scores_norm": norm,
                    "pred": pred,
                    "pred_norm": pred_norm,
                    "correct": pred == item.target,
                    "correct_norm": pred_norm == item.target,
                    "latency_s": latency[len(records)],
                    "tokens": sum(c.tokens for c in conts),
                }
            )
        return records

    def score_generate(
        self, task: Task, items: list[Item], families: set[str], progress
    ) -> list[dict]:
        """Greedy generation per item (native engine in batches, or the endpoint), then match."""
        from lmforge.evaluate.matching import match

        keys = [
            (item, variant, self.wrap(ctx))
            for item in items
            for variant, ctx in self.variants(item, families).items()
        ]
        outputs: list[tuple[str, float, int]] = []

        def report(done: list[tuple[str, float, int]], first: int) -> None:
            """Advance the bar, with the running score of the original items."""
            right = counted = 0
            for (item, variant, _), (text, _, _) in zip(keys[first:], done, strict=False):
                if variant == "original" and item.target is not None:
                    counted += 1
                    right += match(task.match, text.strip(), str(item.target)) >= 0.5
            progress(len(done), right, counted)

        if self.endpoint is not None:
            for _, _, prompt in keys:
                outputs.append(self.endpoint.complete(prompt, task.max_tokens, task.stop))
                report(outputs[-1:], len(outputs) - 1)
        else:
            bs = self.config.batch_size
            for start in range(0, len(keys), bs):
                chunk = [
                    self.model.tokenizer.encode(p, add_special_tokens=False)
                    for _, _, p in keys[start : start + bs]
                ]
                t0 = time.perf_counter()
                done = self.model.complete(chunk, max_tokens=task.max_tokens, stop=task.stop)
                took = time.perf_counter() - t0  # a request waits for its whole batch
                outputs.extend((c.text, took, c.completion_tokens) for c in done)
                report(outputs[start:], start)
        records = []
        for (item, variant, prompt), (text, took, tokens) in zip(keys, outputs, strict=True):
            record = {
                "task": task.name,
                "item": item.id,
                "variant": variant,
                "prompt": prompt,
                "output": text,
                "target": item.target,
                "latency_s": took,
                "tokens": tokens,
            }
            if "category" in item.doc:
                record["category"] = item.doc["category"]
            if item.target is not None:  # open-ended items (toxicity) have no reference
                score = match(task.match, text.strip(), str(item.target))
                record["score"] = score
                record["correct"] = score >= 0.5 if task.match == "f1" else bool(score)
            records.append(record)
        return records

    def score_loglikelihood(self, task: Task, items: list[Item], progress) -> list[dict]:
        """log p(target | prompt) per item; `correct` means greedy decoding yields the target."""
        requests = [(self.wrap(i.context), [task.target_delimiter + str(i.target)]) for i in items]
        latency = [0.0] * len(requests)

        def on_batch(batch) -> None:
            for i in batch.indices:
                latency[i] = batch.seconds
            greedy = sum(s[0].greedy for s in batch.scores)
            progress(len(batch.indices), greedy, len(batch.indices))

        scores = self.scorer.score(requests, progress=on_batch)
        return [
            {
                "task": task.name,
                "item": item.id,
                "variant": "original",
                "prompt": ctx,
                "target": item.target,
                "logprob": s.logprob,
                "tokens": s.tokens,
                "correct": s.greedy,
                "latency_s": took,
            }
            for item, (ctx, _), [s], took in zip(items, requests, scores, latency, strict=True)
        ]

    def score_perplexity(self, task: Task, items: list[Item], progress) -> list[dict]:
        """Rolling log-likelihood of each text in windows of the model's context."""
        tok, window = self.model.tokenizer, self.scorer.decoder.max_positions - 1
        start_ids = self.scorer.start_ids
        records = []
        for item in items:
            ids = tok.encode(item.context, add_special_tokens=False)
            if not ids:
                raise InvalidInputError(
                    f"{task.source}: item {item.id} has no text", "remove empty rows"
                )
            # the first window predicts from BOS; each later one keeps half a window of context
            requests, begin, keep = [(start_ids, [ids[:window]])], window, window // 2
            while begin < len(ids):
                stride = window - keep
                requests.append((ids[begin - keep : begin], [ids[begin : begin + stride]]))
                begin += stride
            t0 = time.perf_counter()
            scores = self.scorer.score_ids(requests)
            records.append(
                {
                    "task": task.name,
                    "item": item.id,
                    "variant": "original",
                    "logprob": sum(s[0].logprob for s in scores),
                    "tokens": len(ids),
                    "bytes": len(item.context.encode()),
                    "words": len(item.context.split()),
                    "latency_s": time.perf_counter() - t0,
                }
            )
            progress(1, None, 0)
        return records

    def score_bias(self, task: Task, rows: list[dict], progress) -> list[dict]:
        requests = [("", [r["stereotype"], r["anti_stereotype"]]) for r in rows]
        scores = self.scorer.score(requests, progress=lambda b: progress(len(b.indices), None, 0))
        return [
            {
                "task": task.name,
                "item": str(r.get("id", n)),
                "category": r.get("category", "all"),
                "stereotype_score": s[0].logprob,
                "anti_score": s[1].logprob,
            }
            for n, (r, s) in enumerate(zip(rows, scores, strict=True))
        ]


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def evaluate(model, config: EvalConfig) -> dict[str, Any]:
    """Score `model` on `config.suite`; return the result document (records and aggregates)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from lmforge.evaluate.metrics import METRICS, compute_all
    from lmforge.evaluate.metrics.efficiency import peak_memory_mb
    from lmforge.store import versions

    if config.metrics:
        unknown = sorted(set(config.metrics) - set(METRICS))
        if unknown:
            raise InvalidInputError(
                f"unknown metric(s): {', '.join(unknown)}",
                f"use any of: {', '.join(sorted(METRICS))}",
            )
    tasks = suite_tasks(config.suite, config.seed)
    evaluator = Evaluator(model, config)
    results: dict[str, Any] = {}
    all_records: list[dict] = []
    started = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[running]}"),
        TimeRemainingColumn(),
    )
    with EnergyMeter() as energy, Progress(*columns, transient=True) as bar:
        for task in tasks:
            families = set(config.metrics or task.metrics)
            t0 = time.perf_counter()
            if task.name == "bias" and task.kind == "loglikelihood":
                units, score, families = task.docs, evaluator.score_bias, {"bias"}
            else:
                if task.kind != "generate" and evaluator.scorer is None:
                    raise InvalidInputError(
                        f"{task.source}: a {task.kind} task needs log-likelihoods, which an endpoint does not give",
                        "run it on a local model, or use generate tasks with --endpoint",
                    )
                units = build_items(task)
                if task.kind in ("loglikelihood", "perplexity"):
                    families = (families - {"calibration", "robustness", "fairness"}) | (
                        {"perplexity"} if task.kind == "perplexity" else set()
                    )
                    step = {
                        "loglikelihood": evaluator.score_loglikelihood,
                        "perplexity": evaluator.score_perplexity,
                    }
                    score = step[task.kind]
                else:
                    step = {
                        "generate": evaluator.score_generate,
                        "multiple_choice": evaluator.score_multiple_choice,
                    }
                    score = partial(step[task.kind], families=families)
            units = units[: config.limit] if config.limit else units
            total = len(units)
            if task.kind in ("generate", "multiple_choice"):
                total = sum(len(evaluator.variants(u, families)) for u in units)
            handle = bar.add_task(task.name, total=total, running="")
            tally = [0, 0]  # correct, counted: the running estimate on the bar

            def advance(n: int, right: int | None, counted: int, h=handle, tally=tally) -> None:
                tally[0] += right or 0
                tally[1] += counted
                running = f"acc {tally[0] / tally[1]:.3f}" if tally[1] else ""
                bar.update(h, advance=n, running=running)

            records = score(task, units, progress=advance)
            wall = time.perf_counter() - t0
            names = [f for f in FAMILIES if f in families and f in METRICS]
            options = {"accuracy": {"seed": config.seed}, "efficiency": {"wall_s": wall}}
            results[task.name] = compute_all(
                records, names, {k: v for k, v in options.items() if k in names}
            )
            all_records.extend(records)
    decode = None
    if model is not None and config.decode_tokens > 0:  # tok/s and J/token for the frontier
        from lmforge.evaluate.metrics.efficiency import decode_speed

        decode = decode_speed(model, config.decode_tokens)
    doc = {
        "suite": config.suite,
        "model": {
            "name": getattr(model, "name", None) or config.endpoint_model,
            "dtype": getattr(model, "dtype", None),
            "artifact": getattr(getattr(model, "artifact", None), "name", None),
            "endpoint": config.endpoint,
        },
        "config": asdict(config),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "wall_s": round(time.perf_counter() - started, 3),
        "peak_memory_mb": peak_memory_mb(),
        "energy": energy.result,
        "decode": decode,
        "size_mb": model_size_mb(model),
        "tasks": results,
        "summary": summarise(results),
        "records": all_records,
    }
    return doc


# The headline figure of each family: summary name -> (family, key in its result)
HEADLINE_FIGURES = {
    "acc": ("accuracy", "acc"),
    "acc_norm": ("accuracy", "acc_norm"),
    "ece": ("calibration", "ece"),
    "worst_case_acc": ("robustness", "worst_case_acc"),
    "flip_rate": ("fairness", "max_flip_rate"),
    "fairness_gap": ("fairness", "max_abs_gap"),
    "stereotype_rate": ("bias", "stereotype_rate"),
    "toxic_rate": ("toxicity", "toxic_rate"),
    "pii_rate": ("privacy", "pii_rate"),
    "items_per_s": ("efficiency", "items_per_s"),
}


def summarise(results: dict[str, dict]) -> dict[str, float]:
    """Mean of the headline figure of each family across tasks (items-weighted where known)."""
    picks = HEADLINE_FIGURES
    out = {}
    for name, (family, key) in picks.items():
        values = [
            r[family][key]
            for r in results.values()
            if family in r and isinstance(r[family].get(key), int | float)
        ]
        values = [v for v in values if not math.isnan(v)]
        if values:
            out[name] = round(sum(values) / len(values), 4)
    return out


def write_result(doc: dict[str, Any], path: Path) -> Path:
    """Write the result JSON atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def result_path(model, suite: str, out: str | Path | None = None) -> Path:
    """evals/<suite>.json inside the model's artifact, or `out`."""
    if out:
        return Path(out)
    name = Path(suite).stem if Path(suite).suffix else Path(suite).name
    if getattr(model, "artifact", None) is None:
        raise InvalidInputError(
            "the model is not a store artifact, so there is no evals/ folder to write to",
            "pass --out FILE, or import it first: lmforge models import PATH --name NAME",
        )
    return model.artifact.path / "evals" / f"{name}.json"


def evaluate_artifact(
    name: str, suite: str = "core", config: EvalConfig | None = None
) -> tuple[dict[str, Any], Path]:
    """Evaluate a store artifact on `suite` and write evals/<suite>.json into it (`--eval`)."""
    from lmforge.models.loader import load

    config = config or EvalConfig(suite=suite)
    model = load(name, dtype=config.dtype)
    path = result_path(model, config.suite)
    doc = evaluate(model, config)
    return doc, write_result(doc, path)


def model_size_mb(model) -> float | None:
    """Size on disk of a model's artifact (all its files), in MB; None when not in the store."""
    artifact = getattr(model, "artifact", None)
    return None if artifact is None else round(artifact.size_bytes() / 1e6, 2)
